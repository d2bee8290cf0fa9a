#include "gateway/server/gateway_server.h"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>

#include <openssl/sha.h>
#include <unistd.h>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_wiring.h"
#include "gateway/common/log.h"
#include "gateway/observability/certificate_watch.h"
#include "gateway/server/gateway_config.h"
#include "gateway/server/message_types.h"
#include "gateway/tls/credentials.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server_builder.h"

namespace knooppunt::server {
namespace {

absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

// Hex SHA-256 of the configuration (deterministic serialisation, after defaults and path
// resolution): what Admin.GetStatus reports as config_hash.
std::string ConfigHash(const config::v1::GatewayConfig& config) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream out(&bytes);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    config.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

// Health probe of a store file: it and its directory (journal/WAL files) are writable.
absl::Status Writable(const std::string& path) {
  const size_t slash = path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : path.substr(0, std::max<size_t>(slash, 1));
  if (access(path.c_str(), W_OK) != 0) {
    return absl::UnavailableError(absl::StrCat(path, " is not writable: ", std::strerror(errno)));
  }
  if (access(dir.c_str(), W_OK) != 0) {
    return absl::UnavailableError(absl::StrCat(dir, " is not writable: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<GatewayServer>> GatewayServer::Start(
    const config::v1::GatewayConfig& config) {
  std::unique_ptr<GatewayServer> gw(new GatewayServer());
  absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> pool =
      LoadMessageTypes({config.descriptor_set_files().begin(), config.descriptor_set_files().end()});
  if (!pool.ok()) return pool.status();
  gw->types_ = *std::move(pool);
  const google::protobuf::DescriptorPool& types = *gw->types_;
  gw->sources_ = PolicySourcesOf(config);
  gw->rate_limits_ = std::make_unique<ratelimit::TokenBuckets>();

  absl::StatusOr<std::shared_ptr<const policy::PolicySnapshot>> snapshot =
      policy::LoadPolicy(gw->sources_, types);
  if (!snapshot.ok()) return snapshot.status();
  gw->policy_ = std::make_unique<policy::PolicyStore>(*std::move(snapshot));

  // Prometheus metrics (gateway/observability): counted always, served when configured.
  absl::StatusOr<std::unique_ptr<observability::Metrics>> metrics =
      observability::Metrics::Start(config.metrics().listen());
  if (!metrics.ok()) return metrics.status();
  gw->metrics_ = *std::move(metrics);
  const absl::Duration expiry_warning = config.tls().has_expiry_warning()
                                            ? FromProto(config.tls().expiry_warning())
                                            : absl::Hours(24 * 30);
  // Expiry of the certificates organisations and endpoints present (once per certificate).
  gw->peer_certificates_ =
      std::make_unique<observability::PeerCertificateExpiry>(expiry_warning, gw->metrics_.get());

  gw->authenticator_ = std::make_unique<identity::PeerAuthenticator>();
  gw->authenticator_->SetCertificateSink(gw->peer_certificates_.get());
  // Revocation while running: CRLs re-read every second, consulted at every handshake and on
  // every call (gateway/identity/crl_watcher.h).
  if (!config.tls().crl_directory().empty()) {
    absl::StatusOr<std::unique_ptr<identity::CrlWatcher>> crls = identity::CrlWatcher::Start(
        config.tls().crl_directory(), config.tls().client_ca_file(), absl::Seconds(1));
    if (!crls.ok()) return crls.status();
    gw->crls_ = *std::move(crls);
    gw->authenticator_->SetRevocation(gw->crls_.get());
    // ...and the connections such a client already has are shut down
    // (gateway/identity/connection_registry.h).
    gw->connections_ = std::make_unique<identity::ConnectionRegistry>(gw->crls_.get());
    gw->crls_->SetOnChange([registry = gw->connections_.get()] { registry->CloseRevoked(); });
  }

  // The tamper-evident audit log (and/or JSON lines), per the audit: section (gateway/audit).
  absl::StatusOr<std::unique_ptr<audit::DecisionLog>> log =
      audit::OpenDecisionLog(config, gw->metrics_.get());
  if (!log.ok()) return log.status();
  gw->decision_log_ = *std::move(log);
  absl::StatusOr<std::unique_ptr<audit::AuditorService>> auditor =
      audit::MakeAuditorService(config, gw->policy_.get(), gw->authenticator_.get());
  if (!auditor.ok()) return auditor.status();
  gw->auditor_ = *std::move(auditor);

  forward::UpstreamIdentity upstream{config.upstream_tls().cert_file(),
                                     config.upstream_tls().key_file(),
                                     config.upstream_tls().ca_file()};
  upstream.certificates = gw->peer_certificates_.get();
  absl::StatusOr<std::unique_ptr<forward::EndpointChannels>> endpoints =
      forward::EndpointChannels::Create(upstream);
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
                                     gw->decision_log_.get(), &types, gw->rate_limits_.get(),
                                     gw->metrics_.get()},
      gw->endpoints_.get(), options);

  absl::Status meldingen = StartMeldingen(
      config.melding(),
      {gw->policy_.get(), gw->endpoints_.get(), gw->exchange_.get(), gw->decision_log_.get(),
       &types, config.instance_id(), gw->metrics_.get()},
      &gw->meldingen_);
  if (!meldingen.ok()) return meldingen;

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tls::MutualTlsServerCredentials(
          {config.tls().cert_file(), config.tls().key_file(), config.tls().client_ca_file(),
           config.tls().crl_directory(),
           absl::Seconds(std::max<int64_t>(1, config.tls().refresh_interval().seconds())),
           gw->crls_.get()});
  if (!credentials.ok()) return credentials.status();

  // The operator's Admin service (operator-role certificates only, gateway/admin).
  {
    GatewayServer* self = gw.get();
    admin::AdminHooks hooks;
    hooks.reload = [self] { return self->ReloadPolicy("admin"); };
    hooks.draining = [self] { return self->draining(); };
    hooks.drain = [self] { return self->Drain(); };
    hooks.queue = [self](admin::v1::QueueFigures* figures) {
      if (self->meldingen_.store == nullptr) return;
      const store::StoreStats stats = self->meldingen_.store->Stats();
      figures->set_pending_messages(stats.pending_messages);
      figures->set_pending_bytes(stats.pending_bytes);
      if (stats.oldest_pending_accepted_at != absl::InfiniteFuture()) {
        const int64_t age_ns = absl::ToInt64Nanoseconds(
            std::max(absl::ZeroDuration(), absl::Now() - stats.oldest_pending_accepted_at));
        figures->mutable_oldest_pending_age()->set_seconds(age_ns / 1000000000);
        figures->mutable_oldest_pending_age()->set_nanos(static_cast<int32_t>(age_ns % 1000000000));
      }
    };
    gw->admin_ = std::make_unique<admin::AdminService>(
        gw->policy_.get(), gw->authenticator_.get(),
        admin::AdminInfo{KNOOPPUNT_VERSION, ConfigHash(config), config.instance_id(), absl::Now()},
        std::move(hooks));
  }

  // grpc.health.v1.Health and server reflection, on the same mTLS port (gRPC's own
  // services; the health status is set by gw->health_ below).
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen(), *credentials, &gw->port_);
  builder.RegisterService(gw->exchange_.get());
  builder.RegisterService(gw->admin_.get());
  // Connections are closed (GOAWAY) after max_connection_age (+ grace for calls running on
  // them): bounds the life of a connection whose certificate was since revoked or replaced.
  const auto millis = [](const google::protobuf::Duration& d) {
    return static_cast<int>(std::clamp<int64_t>(absl::ToInt64Milliseconds(FromProto(d)), 0,
                                                std::numeric_limits<int>::max()));
  };
  if (millis(config.max_connection_age()) > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, millis(config.max_connection_age()));
    builder.AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                               millis(config.max_connection_age_grace()));
  }
  // Hostile or broken clients: a handshake that does not finish, a connection with many
  // streams that never send, oversized headers — each bounded before it costs much.
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             std::max(1, millis(config.limits().handshake_timeout())));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(config.limits().max_concurrent_streams()));
  builder.AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE,
                             static_cast<int>(config.limits().max_metadata_bytes()));
  if (gw->auditor_) builder.RegisterService(gw->auditor_.get());  // read-only, role-checked
  if (gw->connections_) {
    std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> creators;
    creators.push_back(gw->connections_->InterceptorFactory());
    builder.experimental().SetInterceptorCreators(std::move(creators));
  }
  // Room for the envelope header around the largest payload; larger messages are refused by
  // gRPC itself with RESOURCE_EXHAUSTED before they are parsed.
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_payload_bytes()) + 64 * 1024);
  builder.SetMaxSendMessageSize(static_cast<int>(config.limits().max_payload_bytes()) + 64 * 1024);
  gw->server_ = builder.BuildAndStart();
  if (gw->server_ == nullptr || gw->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen()));
  }
  if (gw->connections_) gw->connections_->SetListeningPort(gw->port_);
  // Connections per peer address: the newest above the limit are shut down, handshake done
  // or not (gateway/identity/peer_connection_limit.h).
  if (config.limits().max_connections_per_peer() > 0) {
    gw->peer_connection_limit_ = std::make_unique<identity::PeerConnectionLimit>(
        config.limits().max_connections_per_peer(),
        identity::PeerConnectionLimit::kDefaultInterval,
        [metrics = gw->metrics_.get()](int n) { metrics->OnPeerConnectionsLimited(n); });
    gw->peer_connection_limit_->SetListeningPort(gw->port_);
  }
  if (gw->metrics_->port() != 0) {
    Log(LogLevel::kInfo, "metrics_listening",
        {{"listen", config.metrics().listen()}, {"port", absl::StrCat(gw->metrics_->port())}});
  }
  {
    gw->certificates_ = std::make_unique<observability::CertificateWatch>(
        std::vector<observability::WatchedCertificate>{
            {"server", config.tls().cert_file(), true},
            {"server_ca", config.tls().client_ca_file(), false},
            {"upstream", config.upstream_tls().cert_file(), false},
            {"upstream_ca", config.upstream_tls().ca_file(), false}},
        expiry_warning, gw->metrics_.get());
    GatewayServer* self = gw.get();
    std::vector<observability::HealthProbe> probes;
    // Not a health condition: samples the queue gauges on the checker's tick (first, so it
    // runs whatever fails after it).
    probes.push_back({"queue_metrics", [self] {
                        if (self->meldingen_.store != nullptr) {
                          const store::StoreStats stats = self->meldingen_.store->Stats();
                          const absl::Duration oldest_age =
                              stats.oldest_pending_accepted_at == absl::InfiniteFuture()
                                  ? absl::ZeroDuration()
                                  : absl::Now() - stats.oldest_pending_accepted_at;
                          self->metrics_->SetQueue(stats.pending_messages, stats.pending_bytes,
                                                   oldest_age);
                        }
                        return absl::OkStatus();
                      }});
    // Not a health condition either: peers' certificate expiry gauges and warnings.
    probes.push_back({"peer_certificate_metrics", [self] {
                        self->peer_certificates_->Refresh(absl::Now());
                        return absl::OkStatus();
                      }});
    probes.push_back({"config", [self] {
                        return self->policy_->Current() != nullptr
                                   ? absl::OkStatus()
                                   : absl::FailedPreconditionError("no policy loaded");
                      }});
    probes.push_back({"drain", [self] {
                        return self->draining() ? absl::UnavailableError("draining")
                                                : absl::OkStatus();
                      }});
    probes.push_back({"certificates", [self] { return self->certificates_->Check(absl::Now()); }});
    if (config.has_audit() && !config.audit().has_postgres()) {  // PostgreSQL: fails closed itself
      probes.push_back({"audit_log", [path = config.audit().db_path()] { return Writable(path); }});
    }
    probes.push_back(
        {"melding_store", [path = config.melding().store_path()] { return Writable(path); }});
    gw->health_ = std::make_unique<observability::HealthMonitor>(
        gw->server_->GetHealthCheckService(),
        std::vector<std::string>{exchange::v1::Exchange::service_full_name()}, std::move(probes),
        gw->metrics_.get(),
        absl::Seconds(1));
  }
  const absl::Duration watch = absl::Seconds(config.policy_watch_interval().seconds()) +
                               absl::Nanoseconds(config.policy_watch_interval().nanos());
  if (watch > absl::ZeroDuration()) {
    GatewayServer* self = gw.get();
    gw->watcher_ = std::thread([self, watch] { self->WatchPolicy(watch); });
  }
  return gw;
}

absl::Status GatewayServer::ReloadPolicy(absl::string_view trigger) {
  absl::MutexLock lock(&reload_mu_);
  const std::string old_version = policy_->Current()->version;
  absl::StatusOr<std::shared_ptr<const policy::PolicySnapshot>> next =
      policy::LoadPolicy(sources_, *types_);
  if (!next.ok()) {
    absl::StatusOr<std::string> version = policy::PolicyVersion(sources_);
    last_rejected_version_ = version.ok() ? *version : "";
    Log(LogLevel::kError, "policy_reload_rejected",
        {{"trigger", std::string(trigger)},
         {"error", std::string(next.status().message())},
         {"policy_version", old_version}});
    metrics_->OnReload(false);
    return next.status();
  }
  const std::string new_version = (*next)->version;
  const size_t agreements = (*next)->agreements.agreements().size();
  policy_->Replace(*std::move(next));
  Log(LogLevel::kInfo, "policy_reloaded",
      {{"trigger", std::string(trigger)},
       {"policy_version", new_version},
       {"previous_version", old_version},
       {"agreements", absl::StrCat(agreements)}});
  metrics_->OnReload(true);
  return absl::OkStatus();
}

void GatewayServer::WatchPolicy(absl::Duration interval) {
  while (!stop_watching_.WaitForNotificationWithTimeout(interval)) {
    // Files are compared by content (the version hash), so a touch without a change, or a
    // broken version already rejected, does not reload again.
    absl::StatusOr<std::string> version = policy::PolicyVersion(sources_);
    if (!version.ok()) {
      // A file deleted or unreadable under the running gateway: the policy in force stays,
      // and the operator is told (once per distinct error), as for a broken version.
      const std::string error(version.status().message());
      absl::MutexLock lock(&reload_mu_);
      if (error == last_unreadable_error_) continue;
      last_unreadable_error_ = error;
      Log(LogLevel::kError, "policy_reload_rejected",
          {{"trigger", "file_change"},
           {"error", error},
           {"policy_version", policy_->Current()->version}});
      metrics_->OnReload(false);
      continue;
    }
    {
      absl::MutexLock lock(&reload_mu_);
      last_unreadable_error_.clear();
      if (*version == policy_->Current()->version || *version == last_rejected_version_) continue;
    }
    ReloadPolicy("file_change").IgnoreError();
  }
}

GatewayServer::~GatewayServer() {
  if (crls_) crls_->SetOnChange(nullptr);  // connections_ goes before crls_
  peer_connection_limit_.reset();  // no scan of the port while the server goes
  health_.reset();  // its thread sets the server's health status
  stop_watching_.Notify();
  if (watcher_.joinable()) watcher_.join();
  if (server_) {
    if (meldingen_.delivery) meldingen_.delivery->Stop();
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
  StopMeldingen(&meldingen_);  // after the server: every acknowledged Send is committed
}

bool GatewayServer::Drain() {
  const bool already = exchange_->draining();
  exchange_->SetDraining();
  if (!already) Log(LogLevel::kWarning, "drain_started");
  return already;
}

void GatewayServer::Shutdown(absl::Duration grace) {
  if (health_) health_->BeginShutdown();  // probes see NOT_SERVING while calls drain
  // Receive streams end and deliveries in flight are cancelled (retried after restart), so
  // they do not hold up the drain; Sends in flight still complete and are stored.
  if (meldingen_.delivery) meldingen_.delivery->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
}

void GatewayServer::Wait() { server_->Wait(); }

}  // namespace knooppunt::server
