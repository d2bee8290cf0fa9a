#include "gateway/client/endpoint_service.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/tls/credentials.h"
#include "grpcpp/server_builder.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::client {
namespace {

std::string Metadata(const grpc::CallbackServerContext& context, absl::string_view key) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(grpc::string_ref(key.data(), key.size()));
  return it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
}

grpc::Status ToGrpc(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

}  // namespace

absl::StatusOr<exchange::v1::Envelope> EndpointService::Answer(const IncomingCall&,
                                                               const exchange::v1::Envelope&) {
  return absl::UnimplementedError("this endpoint answers no bevragingen");
}

absl::Status EndpointService::Deliver(const IncomingCall&, const exchange::v1::Envelope&) {
  return absl::UnimplementedError("this endpoint receives no meldingen");
}

void EndpointService::AnswerAsync(const IncomingCall& call, const exchange::v1::Envelope& request,
                                  AnswerDone done) {
  done(Answer(call, request));
}

void EndpointService::DeliverAsync(const IncomingCall& call, const exchange::v1::Envelope& melding,
                                   DeliverDone done) {
  done(Deliver(call, melding));
}

exchange::v1::Envelope ReplyWith(const google::protobuf::Message& payload) {
  exchange::v1::Envelope reply;
  reply.mutable_payload()->PackFrom(payload);
  return reply;
}

// The gRPC side: authenticates the caller as the gateway, then hands the call to the
// EndpointService and finishes the call's default reactor with what it answers.
class EndpointServer::Service final : public exchange::v1::Endpoint::CallbackService {
 public:
  Service(EndpointService* handlers, std::string gateway_oin)
      : handlers_(handlers), gateway_oin_(std::move(gateway_oin)) {}

  grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* context,
                                   const exchange::v1::Envelope* request,
                                   exchange::v1::Envelope* reply) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::StatusOr<IncomingCall> call = Identify(*context);
    if (!call.ok()) {
      reactor->Finish(ToGrpc(call.status()));
      return reactor;
    }
    // `request` and `reply` live until Finish, which `done` calls exactly once.
    handlers_->AnswerAsync(*call, *request,
                           [reactor, reply](absl::StatusOr<exchange::v1::Envelope> answer) {
                             if (!answer.ok()) return reactor->Finish(ToGrpc(answer.status()));
                             *reply = std::move(*answer);
                             reactor->Finish(grpc::Status::OK);
                           });
    return reactor;
  }

  grpc::ServerUnaryReactor* Deliver(grpc::CallbackServerContext* context,
                                    const exchange::v1::Envelope* request,
                                    exchange::v1::DeliverResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    absl::StatusOr<IncomingCall> call = Identify(*context);
    if (!call.ok()) {
      reactor->Finish(ToGrpc(call.status()));
      return reactor;
    }
    handlers_->DeliverAsync(*call, *request,
                            [reactor](absl::Status stored) { reactor->Finish(ToGrpc(stored)); });
    return reactor;
  }

 private:
  // Only the gateway may call an endpoint: the agreements are checked there, not here.
  absl::StatusOr<IncomingCall> Identify(const grpc::CallbackServerContext& context) const {
    std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    absl::StatusOr<std::string> caller =
        auth == nullptr ? absl::UnauthenticatedError("no client certificate")
                        : authenticator_.Authenticate(*auth);
    if (!caller.ok() || *caller != gateway_oin_) {
      return absl::PermissionDeniedError(
          absl::StrCat("only the Knooppunt gateway (OIN ", gateway_oin_, ") may call this endpoint"));
    }
    IncomingCall call;
    call.agreement_id = Metadata(context, "knooppunt-agreement-id");
    call.sender_oin = Metadata(context, "knooppunt-sender-oin");
    call.traceparent = Metadata(context, "traceparent");
    call.caller_oin = *caller;
    const auto deadline = context.deadline();
    call.deadline = deadline == std::chrono::system_clock::time_point::max()
                        ? absl::InfiniteFuture()
                        : absl::FromChrono(deadline);
    return call;
  }

  EndpointService* const handlers_;
  const std::string gateway_oin_;
  identity::PeerAuthenticator authenticator_;
};

absl::StatusOr<std::unique_ptr<EndpointServer>> EndpointServer::Start(
    const EndpointServerOptions& options, EndpointService* service) {
  if (service == nullptr) return absl::InvalidArgumentError("EndpointServer needs a service");
  if (options.gateway_oin.empty()) {
    return absl::InvalidArgumentError(
        "EndpointServerOptions.gateway_oin is empty: the endpoint accepts only the gateway");
  }
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tls::MutualTlsServerCredentials({options.cert_file, options.key_file, options.ca_file,
                                       options.crl_directory, options.refresh_interval});
  if (!credentials.ok()) return credentials.status();
  std::unique_ptr<EndpointServer> server(new EndpointServer());
  server->grpc_service_ = std::make_unique<Service>(service, options.gateway_oin);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address, *credentials, &server->port_);
  builder.RegisterService(server->grpc_service_.get());
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("the endpoint cannot listen on ", options.listen_address));
  }
  return server;
}

EndpointServer::~EndpointServer() { Shutdown(absl::Seconds(5)); }

void EndpointServer::Shutdown(absl::Duration grace) {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  server_->Shutdown(absl::ToChronoTime(absl::Now() + grace));
  server_->Wait();
}

}  // namespace knooppunt::client
