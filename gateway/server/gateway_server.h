// Assembles a running gateway from its configuration: TLS, the policy in force, the decision
// log, the endpoint channels and the gRPC services.
//
// Guarantees: Start() fails (with the reason, and nothing listening) when any part of the
// configuration is broken — the gateway never runs on a partial config. The server accepts
// only mutual-TLS connections whose client certificate chains to the configured CAs.
#ifndef KNOOPPUNT_GATEWAY_SERVER_GATEWAY_SERVER_H_
#define KNOOPPUNT_GATEWAY_SERVER_GATEWAY_SERVER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/audit/decision_log.h"
#include "gateway/exchange/exchange_service.h"
#include "gateway/forward/endpoint_channels.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/policy/policy_store.h"
#include "grpcpp/server.h"
#include "knooppunt/config/v1/gateway_config.pb.h"

namespace knooppunt::server {

class GatewayServer {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayServer>> Start(
      const config::v1::GatewayConfig& config);
  ~GatewayServer();

  int port() const { return port_; }
  const policy::PolicyStore& policy() const { return *policy_; }

  // Stops accepting, lets in-flight calls finish until `grace` has passed, then cancels them.
  void Shutdown(absl::Duration grace);
  void Wait();

 private:
  GatewayServer() = default;

  std::unique_ptr<policy::PolicyStore> policy_;
  std::unique_ptr<identity::PeerAuthenticator> authenticator_;
  std::unique_ptr<audit::DecisionLog> decision_log_;
  std::unique_ptr<forward::EndpointChannels> endpoints_;
  std::unique_ptr<exchange::ExchangeService> exchange_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

}  // namespace knooppunt::server

#endif  // KNOOPPUNT_GATEWAY_SERVER_GATEWAY_SERVER_H_
