// Assembles a running gateway from its configuration: TLS, the policy in force, the decision
// log, the endpoint channels and the gRPC services.
//
// Guarantees: Start() fails (with the reason, and nothing listening) when any part of the
// configuration is broken — the gateway never runs on a partial config. The server accepts
// only mutual-TLS connections whose client certificate chains to the configured CAs.
// Hot reload: ReloadPolicy() (on SIGHUP, and from a watcher when the policy files' contents
// change) loads and validates the registry and agreements whole and swaps them in atomically;
// requests in flight finish under the snapshot they started with; a broken new policy is
// rejected (logged with its file:line) and the old one stays in force.
#ifndef KNOOPPUNT_GATEWAY_SERVER_GATEWAY_SERVER_H_
#define KNOOPPUNT_GATEWAY_SERVER_GATEWAY_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gateway/admin/admin_service.h"
#include "gateway/audit/auditor_service.h"
#include "gateway/audit/decision_log.h"
#include "gateway/exchange/exchange_service.h"
#include "gateway/forward/endpoint_channels.h"
#include "gateway/identity/connection_registry.h"
#include "gateway/identity/crl_watcher.h"
#include "gateway/identity/peer_connection_limit.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/observability/certificate_watch.h"
#include "gateway/observability/health_monitor.h"
#include "gateway/observability/metrics.h"
#include "gateway/observability/peer_certificates.h"
#include "gateway/policy/policy_store.h"
#include "gateway/server/melding_wiring.h"
#include "gateway/ratelimit/token_buckets.h"
#include "grpcpp/server.h"
#include "knooppunt/config/v1/gateway_config.pb.h"

namespace knooppunt::server {

class GatewayServer {
 public:
  static absl::StatusOr<std::unique_ptr<GatewayServer>> Start(
      const config::v1::GatewayConfig& config);
  ~GatewayServer();

  int port() const { return port_; }
  int metrics_port() const { return metrics_->port(); }  // 0: no metrics listener
  const policy::PolicyStore& policy() const { return *policy_; }

  // Loads the policy files again; on success the new snapshot is in force. `trigger` is
  // logged ("sighup", "file_change"). Both outcomes are logged as JSON lines.
  absl::Status ReloadPolicy(absl::string_view trigger);

  // Drain (Admin.Drain): new exchanges are refused with UNAVAILABLE "draining", calls in
  // flight finish; one-way. Returns whether it was already draining. draining() is what a
  // health check reports as NOT_SERVING.
  bool Drain();
  bool draining() const { return exchange_ != nullptr && exchange_->draining(); }

  // Stops accepting, lets in-flight calls finish until `grace` has passed, then cancels them.
  void Shutdown(absl::Duration grace);
  void Wait();

 private:
  GatewayServer() = default;
  void WatchPolicy(absl::Duration interval);

  std::unique_ptr<google::protobuf::DescriptorPool> types_;
  policy::PolicySources sources_;
  absl::Mutex reload_mu_;
  std::string last_rejected_version_ ABSL_GUARDED_BY(reload_mu_);
  // The error of the last policy version check that could not read the files (a file
  // deleted or unreadable), so it is logged once, not at every watch interval.
  std::string last_unreadable_error_ ABSL_GUARDED_BY(reload_mu_);
  absl::Notification stop_watching_;
  std::thread watcher_;
  std::unique_ptr<ratelimit::TokenBuckets> rate_limits_;
  std::unique_ptr<observability::Metrics> metrics_;  // before exchange_, which reports to it
  std::unique_ptr<observability::CertificateWatch> certificates_;
  // Organisations' and endpoints' certificates seen (before authenticator_ and endpoints_,
  // which report to it).
  std::unique_ptr<observability::PeerCertificateExpiry> peer_certificates_;
  std::unique_ptr<policy::PolicyStore> policy_;
  std::unique_ptr<identity::CrlWatcher> crls_;  // only with tls.crl_directory
  // Shuts down connections of revoked clients (with crls_; after it, before server_).
  std::unique_ptr<identity::ConnectionRegistry> connections_;
  // limits.max_connections_per_peer (only when set; after metrics_, which it reports to).
  std::unique_ptr<identity::PeerConnectionLimit> peer_connection_limit_;
  std::unique_ptr<identity::PeerAuthenticator> authenticator_;
  std::unique_ptr<audit::DecisionLog> decision_log_;
  std::unique_ptr<audit::AuditorService> auditor_;  // only with an audit: section
  std::unique_ptr<forward::EndpointChannels> endpoints_;
  Meldingen meldingen_;  // store + delivery; stopped around the server (see .cc)
  std::unique_ptr<exchange::ExchangeService> exchange_;
  std::unique_ptr<admin::AdminService> admin_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<observability::HealthMonitor> health_;  // grpc.health.v1 status of server_
  int port_ = 0;
};

}  // namespace knooppunt::server

#endif  // KNOOPPUNT_GATEWAY_SERVER_GATEWAY_SERVER_H_
