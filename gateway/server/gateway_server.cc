#include "gateway/server/gateway_server.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_wiring.h"
#include "gateway/common/log.h"
#include "gateway/server/gateway_config.h"
#include "gateway/server/message_types.h"
#include "gateway/tls/credentials.h"
#include "grpcpp/server_builder.h"

namespace knooppunt::server {
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
  gw->authenticator_ = std::make_unique<identity::PeerAuthenticator>();

  // The tamper-evident audit log (and/or JSON lines), per the audit: section (gateway/audit).
  absl::StatusOr<std::unique_ptr<audit::DecisionLog>> log = audit::OpenDecisionLog(config);
  if (!log.ok()) return log.status();
  gw->decision_log_ = *std::move(log);
  absl::StatusOr<std::unique_ptr<audit::AuditorService>> auditor =
      audit::MakeAuditorService(config, gw->policy_.get(), gw->authenticator_.get());
  if (!auditor.ok()) return auditor.status();
  gw->auditor_ = *std::move(auditor);

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
                                     gw->decision_log_.get(), &types, gw->rate_limits_.get()},
      gw->endpoints_.get(), options);

  absl::Status meldingen = StartMeldingen(
      config.melding(),
      {gw->policy_.get(), gw->endpoints_.get(), gw->exchange_.get(), gw->decision_log_.get(),
       &types, config.instance_id()},
      &gw->meldingen_);
  if (!meldingen.ok()) return meldingen;

  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      tls::MutualTlsServerCredentials(
          {config.tls().cert_file(), config.tls().key_file(), config.tls().client_ca_file(),
           config.tls().crl_directory(),
           absl::Seconds(std::max<int64_t>(1, config.tls().refresh_interval().seconds()))});
  if (!credentials.ok()) return credentials.status();

  grpc::ServerBuilder builder;
  builder.AddListeningPort(config.listen(), *credentials, &gw->port_);
  builder.RegisterService(gw->exchange_.get());
  if (gw->auditor_) builder.RegisterService(gw->auditor_.get());  // read-only, role-checked
  // Room for the envelope header around the largest payload; larger messages are refused by
  // gRPC itself with RESOURCE_EXHAUSTED before they are parsed.
  builder.SetMaxReceiveMessageSize(static_cast<int>(config.limits().max_payload_bytes()) + 64 * 1024);
  builder.SetMaxSendMessageSize(static_cast<int>(config.limits().max_payload_bytes()) + 64 * 1024);
  gw->server_ = builder.BuildAndStart();
  if (gw->server_ == nullptr || gw->port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", config.listen()));
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
  return absl::OkStatus();
}

void GatewayServer::WatchPolicy(absl::Duration interval) {
  while (!stop_watching_.WaitForNotificationWithTimeout(interval)) {
    // Files are compared by content (the version hash), so a touch without a change, or a
    // broken version already rejected, does not reload again.
    absl::StatusOr<std::string> version = policy::PolicyVersion(sources_);
    if (!version.ok() || *version == policy_->Current()->version) continue;
    {
      absl::MutexLock lock(&reload_mu_);
      if (*version == last_rejected_version_) continue;
    }
    ReloadPolicy("file_change").IgnoreError();
  }
}

GatewayServer::~GatewayServer() {
  stop_watching_.Notify();
  if (watcher_.joinable()) watcher_.join();
  if (server_) {
    if (meldingen_.delivery) meldingen_.delivery->Stop();
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
  }
  StopMeldingen(&meldingen_);  // after the server: every acknowledged Send is committed
}

void GatewayServer::Shutdown(absl::Duration grace) {
  // Receive streams end and deliveries in flight are cancelled (retried after restart), so
  // they do not hold up the drain; Sends in flight still complete and are stored.
  if (meldingen_.delivery) meldingen_.delivery->Stop();
  server_->Shutdown(std::chrono::system_clock::now() + absl::ToChronoNanoseconds(grace));
}

void GatewayServer::Wait() { server_->Wait(); }

}  // namespace knooppunt::server
