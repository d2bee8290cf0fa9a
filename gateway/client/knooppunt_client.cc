#include "gateway/client/knooppunt_client.h"

#include <algorithm>
#include <random>

#include "gateway/identity/peer_identity.h"
#include "gateway/tls/credentials.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace knooppunt::client {
namespace {

// Backoff before attempt number `attempt` + 1 (attempt counts from 1), with up to 20% jitter
// so that many clients that failed together do not retry together.
absl::Duration Backoff(const RetryPolicy& policy, int attempt) {
  absl::Duration wait = policy.initial_backoff;
  for (int i = 1; i < attempt && wait < policy.max_backoff; ++i) wait = wait * policy.multiplier;
  wait = std::min(wait, policy.max_backoff);
  thread_local std::mt19937_64 random{std::random_device{}()};
  std::uniform_real_distribution<double> jitter(0.8, 1.0);
  return wait * jitter(random);
}

}  // namespace

absl::StatusOr<std::unique_ptr<KnooppuntClient>> KnooppuntClient::Connect(
    const ClientOptions& options) {
  if (options.gateway_address.empty()) {
    return absl::InvalidArgumentError("ClientOptions.gateway_address is empty");
  }
  if (options.gateway_oin.empty()) {
    return absl::InvalidArgumentError(
        "ClientOptions.gateway_oin is empty: the client accepts the gateway only by its OIN");
  }
  // Read every file once here so that a wrong path fails now, naming the file, instead of
  // as an opaque handshake failure later.
  absl::StatusOr<std::string> cert = tls::ReadPemFile(options.cert_file, "client certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = tls::ReadPemFile(options.key_file, "client private key");
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> ca = tls::ReadPemFile(options.ca_file, "CA certificate");
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> oin = identity::OinFromCertificatePem(*cert);
  if (!oin.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.cert_file, " carries no usable OIN: ", oin.status().message()));
  }

  std::unique_ptr<KnooppuntClient> client(new KnooppuntClient());
  client->options_ = options;
  client->oin_ = *oin;
  grpc::ChannelArguments args;
  if (!options.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(options.tls_server_name);
  }
  // Reconnect quickly after a gateway restart; a backoff of minutes would stall retries.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 5000);
  auto credentials = tls::MutualTlsChannelCredentials(
      tls::WatchCertificateFiles(options.key_file, options.cert_file, options.ca_file,
                                 options.refresh_interval),
      options.gateway_oin);
  client->channel_ = grpc::CreateCustomChannel(options.gateway_address, credentials, args);
  client->stub_ = exchange::v1::Exchange::NewStub(client->channel_);
  if (options.connect_timeout > absl::ZeroDuration() &&
      !client->channel_->WaitForConnected(
          absl::ToChronoTime(absl::Now() + options.connect_timeout))) {
    return absl::UnavailableError(absl::StrCat(
        "no mTLS connection to the gateway at ", options.gateway_address, " within ",
        absl::FormatDuration(options.connect_timeout),
        ": check the address, that the gateway's certificate chains to ", options.ca_file,
        " and carries OIN ", options.gateway_oin, ", and that the gateway trusts ",
        options.cert_file));
  }
  return client;
}

exchange::v1::Envelope KnooppuntClient::MakeEnvelope(const std::string& recipient,
                                                     const std::string& purpose,
                                                     const google::protobuf::Message& payload,
                                                     const CallOptions& call) const {
  exchange::v1::Envelope envelope = NewEnvelope(oin_, recipient, purpose, payload);
  if (!call.message_id.empty()) envelope.set_message_id(call.message_id);
  envelope.set_correlation_id(call.correlation_id);
  return envelope;
}

void KnooppuntClient::PrepareContext(grpc::ClientContext* context, absl::Duration timeout) const {
  const absl::Duration effective = timeout > absl::ZeroDuration() ? timeout : options_.call_timeout;
  context->set_deadline(absl::ToChronoTime(absl::Now() + effective));
}

absl::StatusOr<exchange::v1::Envelope> KnooppuntClient::RequestEnvelope(
    const exchange::v1::Envelope& envelope, const CallOptions& call) {
  grpc::ClientContext context;
  PrepareContext(&context, call.timeout);
  exchange::v1::Envelope reply;
  grpc::Status status = stub_->Request(&context, envelope, &reply);
  if (!status.ok()) return FromGrpcStatus(status, context.GetServerTrailingMetadata());
  return reply;
}

absl::StatusOr<exchange::v1::Receipt> KnooppuntClient::SendEnvelope(
    const exchange::v1::Envelope& envelope, const CallOptions& call) {
  const int attempts = std::max(1, options_.retry.max_attempts);
  absl::Status last;
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    grpc::ClientContext context;
    PrepareContext(&context, call.timeout);
    exchange::v1::Receipt receipt;
    grpc::Status status = stub_->Send(&context, envelope, &receipt);
    if (status.ok()) return receipt;
    last = FromGrpcStatus(status, context.GetServerTrailingMetadata());
    const ClientError error = DescribeError(last);
    if (!IsRetryable(error.kind) || attempt == attempts) break;
    // The same envelope goes again: the gateway deduplicates on sender + message_id, so a
    // Send whose Receipt was lost is stored once.
    absl::SleepFor(std::max(Backoff(options_.retry, attempt), error.retry_after));
  }
  return last;
}

absl::StatusOr<exchange::v1::Receipt> KnooppuntClient::Send(const std::string& recipient,
                                                            const std::string& purpose,
                                                            const google::protobuf::Message& payload,
                                                            const CallOptions& call) {
  return SendEnvelope(MakeEnvelope(recipient, purpose, payload, call), call);
}

absl::StatusOr<exchange::v1::DeliveryStatus> KnooppuntClient::GetStatus(
    const std::string& message_id, const std::string& sender) {
  grpc::ClientContext context;
  PrepareContext(&context, absl::ZeroDuration());
  exchange::v1::StatusRequest request;
  request.set_message_id(message_id);
  request.set_sender(sender);
  exchange::v1::DeliveryStatus reply;
  grpc::Status status = stub_->GetStatus(&context, request, &reply);
  if (!status.ok()) return FromGrpcStatus(status, context.GetServerTrailingMetadata());
  return reply;
}

absl::Status KnooppuntClient::ReadInbox(
    int max_messages, absl::Duration wait,
    const std::function<absl::Status(const exchange::v1::Envelope&)>& each) {
  if (max_messages <= 0) return absl::OkStatus();
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + wait));
  exchange::v1::ReceiveRequest request;
  // The gateway hands out no more than we will read; the rest stays in the inbox.
  request.set_max_unacknowledged(static_cast<uint32_t>(max_messages));
  std::unique_ptr<grpc::ClientReader<exchange::v1::Envelope>> reader =
      stub_->Receive(&context, request);
  exchange::v1::Envelope envelope;
  int read = 0;
  absl::Status stopped;
  while (read < max_messages && reader->Read(&envelope)) {
    ++read;
    stopped = each(envelope);
    if (!stopped.ok()) break;
  }
  const bool we_ended_it = read >= max_messages || !stopped.ok();
  if (we_ended_it) context.TryCancel();
  grpc::Status status = reader->Finish();
  if (!stopped.ok()) return stopped;
  // The stream ends by our own deadline or cancellation: that is the normal end of a wait.
  const bool normal_end = status.ok() ||
                          status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
                          (we_ended_it && status.error_code() == grpc::StatusCode::CANCELLED);
  if (!normal_end) return FromGrpcStatus(status, context.GetServerTrailingMetadata());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<exchange::v1::Envelope>> KnooppuntClient::Receive(int max_messages,
                                                                            absl::Duration wait) {
  std::vector<exchange::v1::Envelope> received;
  absl::Status read = ReadInbox(max_messages, wait, [&](const exchange::v1::Envelope& e) {
    received.push_back(e);
    return absl::OkStatus();
  });
  if (!read.ok()) return read;
  return received;
}

absl::Status KnooppuntClient::Ack(const std::string& sender, const std::string& message_id) {
  grpc::ClientContext context;
  PrepareContext(&context, absl::ZeroDuration());
  exchange::v1::AckRequest request;
  request.set_sender(sender);
  request.set_message_id(message_id);
  exchange::v1::AckResponse reply;
  grpc::Status status = stub_->Ack(&context, request, &reply);
  return FromGrpcStatus(status, context.GetServerTrailingMetadata());
}

absl::StatusOr<int> KnooppuntClient::ProcessInbox(
    const std::function<absl::Status(const exchange::v1::Envelope&)>& handle, int max_messages,
    absl::Duration wait) {
  int acknowledged = 0;
  // Each melding is handled and acknowledged as it arrives, well within the gateway's
  // visibility timeout (a batch acknowledged only at the end of `wait` would be handed out
  // again meanwhile).
  absl::Status read = ReadInbox(max_messages, wait, [&](const exchange::v1::Envelope& e) {
    if (!handle(e).ok()) return absl::OkStatus();  // stays in the inbox; handed out again later
    absl::Status acked = Ack(e.sender(), e.message_id());
    if (acked.ok()) ++acknowledged;
    return acked;
  });
  if (!read.ok()) return read;
  return acknowledged;
}

}  // namespace knooppunt::client
