#include "gateway/server/gateway_config.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gateway/config/yaml_proto.h"

namespace knooppunt::server {
namespace {

void Resolve(const std::filesystem::path& base, std::string* path) {
  if (path->empty()) return;
  std::filesystem::path p(*path);
  if (p.is_relative()) *path = (base / p).lexically_normal().string();
}

}  // namespace

absl::StatusOr<config::v1::GatewayConfig> LoadGatewayConfig(const std::string& path) {
  config::v1::GatewayConfig cfg;
  absl::StatusOr<config::SourceMap> source = config::LoadYamlFile(path, &cfg);
  if (!source.ok()) return source.status();

  if (cfg.listen().empty()) return source->Error("listen", "listen (host:port) is required");
  if (cfg.tls().cert_file().empty() || cfg.tls().key_file().empty() ||
      cfg.tls().client_ca_file().empty()) {
    return source->Error("tls", "tls needs cert_file, key_file and client_ca_file");
  }
  if (cfg.upstream_tls().cert_file().empty() || cfg.upstream_tls().key_file().empty() ||
      cfg.upstream_tls().ca_file().empty()) {
    return source->Error("upstream_tls", "upstream_tls needs cert_file, key_file and ca_file");
  }
  if (cfg.registry_file().empty()) return source->Error("registry_file", "registry_file is required");
  if (cfg.agreement_files().empty() && cfg.agreement_dirs().empty()) {
    return source->Error("agreement_dirs", "name agreement_files or agreement_dirs");
  }

  const std::filesystem::path base =
      std::filesystem::absolute(std::filesystem::path(path)).parent_path();
  Resolve(base, cfg.mutable_tls()->mutable_cert_file());
  Resolve(base, cfg.mutable_tls()->mutable_key_file());
  Resolve(base, cfg.mutable_tls()->mutable_client_ca_file());
  Resolve(base, cfg.mutable_tls()->mutable_crl_directory());
  Resolve(base, cfg.mutable_upstream_tls()->mutable_cert_file());
  Resolve(base, cfg.mutable_upstream_tls()->mutable_key_file());
  Resolve(base, cfg.mutable_upstream_tls()->mutable_ca_file());
  Resolve(base, cfg.mutable_registry_file());
  for (std::string& f : *cfg.mutable_agreement_files()) Resolve(base, &f);
  for (std::string& d : *cfg.mutable_agreement_dirs()) Resolve(base, &d);
  Resolve(base, cfg.mutable_decision_log()->mutable_path());
  if (cfg.has_audit()) {  // the tamper-evident audit log (gateway/audit/audit_log.h)
    auto* audit = cfg.mutable_audit();
    if ((audit->db_path().empty() && !audit->has_postgres()) || audit->hmac_key_file().empty() ||
        audit->signing_key_file().empty()) {
      return source->Error("audit",
                           "audit needs db_path (or postgres), hmac_key_file and signing_key_file");
    }
    if (audit->has_postgres() && audit->postgres().conninfo().empty()) {
      return source->Error("audit", "audit.postgres needs conninfo");
    }
    if (audit->has_postgres_reader() && audit->postgres_reader().conninfo().empty()) {
      return source->Error("audit", "audit.postgres_reader needs conninfo");
    }
    if (!audit->db_path().empty()) Resolve(base, audit->mutable_db_path());
    if (!audit->postgres().password_file().empty()) {
      Resolve(base, audit->mutable_postgres()->mutable_password_file());
    }
    if (!audit->postgres_reader().password_file().empty()) {
      Resolve(base, audit->mutable_postgres_reader()->mutable_password_file());
    }
    Resolve(base, audit->mutable_hmac_key_file());
    Resolve(base, audit->mutable_signing_key_file());
    if (audit->checkpoint_every_records() == 0) audit->set_checkpoint_every_records(1000);
    if (!audit->has_checkpoint_every()) audit->mutable_checkpoint_every()->set_seconds(10);
  }
  if (cfg.melding().store_path().empty()) cfg.mutable_melding()->set_store_path("meldingen.db");
  Resolve(base, cfg.mutable_melding()->mutable_store_path());
  if (cfg.melding().has_postgres()) {  // replicas sharing one database (pg_message_store.h)
    if (cfg.melding().postgres().conninfo().empty()) {
      return source->Error("melding.postgres",
                           "melding.postgres needs conninfo (a libpq connection string)");
    }
    Resolve(base, cfg.mutable_melding()->mutable_postgres()->mutable_password_file());
  }
  for (std::string& f : *cfg.mutable_descriptor_set_files()) Resolve(base, &f);
  if (!cfg.has_policy_watch_interval()) cfg.mutable_policy_watch_interval()->set_seconds(2);
  if (!cfg.has_shutdown_grace()) cfg.mutable_shutdown_grace()->set_seconds(10);
  if (!cfg.has_max_connection_age()) cfg.mutable_max_connection_age()->set_seconds(300);
  if (!cfg.has_max_connection_age_grace()) cfg.mutable_max_connection_age_grace()->set_seconds(60);

  if (cfg.instance_id().empty()) cfg.set_instance_id("knooppunt-1");
  auto* limits = cfg.mutable_limits();
  if (limits->max_payload_bytes() == 0) limits->set_max_payload_bytes(4 << 20);
  if (!limits->has_default_deadline()) limits->mutable_default_deadline()->set_seconds(30);
  if (!limits->has_max_deadline()) limits->mutable_max_deadline()->set_seconds(120);
  if (!limits->has_handshake_timeout()) limits->mutable_handshake_timeout()->set_seconds(10);
  if (limits->max_concurrent_streams() == 0) limits->set_max_concurrent_streams(100);
  if (limits->max_metadata_bytes() == 0) limits->set_max_metadata_bytes(16 * 1024);
  if (!cfg.tls().has_refresh_interval()) cfg.mutable_tls()->mutable_refresh_interval()->set_seconds(5);
  return cfg;
}

policy::PolicySources PolicySourcesOf(const config::v1::GatewayConfig& cfg) {
  policy::PolicySources sources;
  sources.registry_file = cfg.registry_file();
  sources.agreement_files.assign(cfg.agreement_files().begin(), cfg.agreement_files().end());
  sources.agreement_dirs.assign(cfg.agreement_dirs().begin(), cfg.agreement_dirs().end());
  return sources;
}

}  // namespace knooppunt::server
