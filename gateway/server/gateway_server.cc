#include "gateway/server/gateway_server.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/server/gateway_config.h"
#include "gateway/server/message_types.h"
#include "gateway/tls/credentials.h"
#include "grpcpp/server_builder.h"

namespace knooppunt::server {
absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(
    const config::v1::GatewayConfig& config) {
  std::unique_ptr<GatewayServer> gw(new GatewayServer());
  const google::protobuf::DescriptorPool& types = BuiltinMessageTypes();

  absl::StatusOr<std::shared_ptr<const policy::PolicySnapshot>> snapshot =
      policy::LoadPolicy(PolicySourcesOf(config), types);
  if (!snapshot.ok()) return snapshot.status();
  gw->policy_ = std::make_unique<policy::PolicyStore>(*std::move(snapshot));
  gw->authenticator_ = std::make_unique<identity::PeerAuthenticator>();

  absl::StatusOr<std::unique_ptr<audit::JsonLinesDecisionLog>> log =
      audit::JsonLinesDecisionLog::Open(config.decision_log().path());
  if (!log.ok()) return log.status();
  gw->decision_log_ = *std::move(log);

  absl::StatusOr<std::unique_ptr<forward::EndpointChannels>> endpoints =
      forward::EndpointChannels::Create({config.upstream_tls().cert_file(),
                                         config.upstream_tls().key_file(),
                                         config.upstream_tls().ca_file()});
  if (!endpoints.ok()) return endpoints.status();
  gw->endpoints_ = *std::move(endpoints);

  exchange::ExchangeOptions options;
  options.instance_id = config.instance_id();
  options.max_payload_bytes = config.limits().max_payload_bytes();
  options.default_deadline = absl::Seconds(config.limits().default_deadline().seconds()) +
                             absl::Nanoseconds(config.limits().default_deadline().nanos());
  options.max_deadline = absl::Seconds(config.limits().max_deadline().seconds()) +
                         absl::Nanoseconds(config.limits().max_deadline().nanos());
  gw->exchange_ = std::make_unique<exchange::ExchangeService>(
      exchange::ExchangeDependencies{gw->policy_.get(), gw->authenticator_.get(),
                                     gw->decision_log_.get(), &types},
      gw->endpoints_.get(), options);

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tls::MutualTlsServerCredentials(
          {config.tls().cert_file(), config.tls().key_file(), config.tls().client_ca_file(),
           config.tls().crl_directory(),
           absl::Seconds(std::max<int64_t>(1, config.tls().refresh_interval().seconds()))});
  if (!credentials.ok()) return credentials.status();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen(), *credentials, &gw->port_);
  builder.RegisterService(gw->exchange_.get());
  // Room for the envelope header around the largest payload; larger messages are refused by
  // gRPC itself with RESOURCE_EXHAUSTED before they are parsed.
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_payload_bytes()) + 64 * 1024);
  builder.SetMaxSendMessageSize(static_cast<int>(config.limits().max_payload_bytes()) + 64 * 1024);
  gw->server_ = builder.BuildAndStart();
  if (gw->server_ == nullptr || gw->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen()));
  }
  return gw;
}

GatewayServer::~GatewayServer() {
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
}

void GatewayServer::Shutdown(absl::Duration grace) {
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
}

void GatewayServer::Wait() { server_->Wait(); }

}  // namespace knooppunt::server
