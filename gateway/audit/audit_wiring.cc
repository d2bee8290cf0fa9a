#include "gateway/audit/audit_wiring.h"

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_log.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/common/log.h"
#include "gateway/common/pg_config.h"
#include "gateway/common/pg_util.h"

namespace knooppunt::audit {
namespace {
absl::Duration FromProto(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

absl::StatusOr<pg::ConnectOptions> ConnectOptions(const config::v1::PostgresConfig& c,
                                                  const std::string& instance_id) {
  return pg::ConnectOptionsFromConfig(c, absl::StrCat(instance_id, "/audit"));
}
}  // namespace

absl::StatusOr<std::unique_ptr<DecisionLog>> OpenDecisionLog(
    const config::v1::GatewayConfig& config, observability::AuditMetricsSink* metrics) {
  if (!config.has_audit()) {
    Log(LogLevel::kWarning, "audit_not_tamper_evident",
        {{"reason", "no audit: section in the configuration; decisions go to JSON lines only"}});
    absl::StatusOr<std::unique_ptr<JsonLinesDecisionLog>> json =
        JsonLinesDecisionLog::Open(config.decision_log().path());
    if (!json.ok()) return json.status();
    return std::unique_ptr<DecisionLog>(*std::move(json));
  }
  const config::v1::AuditConfig& a = config.audit();
  AuditLogOptions options;
  options.db_path = a.db_path();
  if (a.has_postgres()) {
    absl::StatusOr<pg::ConnectOptions> connect = ConnectOptions(a.postgres(), config.instance_id());
    if (!connect.ok()) return connect.status();
    options.postgres = *connect;
  }
  absl::StatusOr<std::string> key = ReadHmacKeyFile(a.hmac_key_file());
  if (!key.ok()) return key.status();
  options.hmac_key = *key;
  options.signing_key_file = a.signing_key_file();
  options.instance_id = config.instance_id();
  options.checkpoint_every_records = a.checkpoint_every_records();
  options.checkpoint_every = FromProto(a.checkpoint_every());
  options.retention = FromProto(a.retention());
  options.max_db_bytes = static_cast<int64_t>(a.max_db_bytes());
  options.metrics = metrics;
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(options);
  if (!log.ok()) return log.status();
  if (config.decision_log().path().empty()) return std::unique_ptr<DecisionLog>(*std::move(log));
  absl::StatusOr<std::unique_ptr<JsonLinesDecisionLog>> json =
      JsonLinesDecisionLog::Open(config.decision_log().path());
  if (!json.ok()) return json.status();
  return std::unique_ptr<DecisionLog>(
      std::make_unique<TeeDecisionLog>(*std::move(log), *std::move(json)));
}

absl::StatusOr<std::unique_ptr<AuditorService>> MakeAuditorService(
    const config::v1::GatewayConfig& config, const policy::PolicyStore* policy,
    const identity::PeerAuthenticator* authenticator) {
  if (!config.has_audit()) return std::unique_ptr<AuditorService>();
  absl::StatusOr<std::unique_ptr<SignatureVerifier>> key =
      SignatureVerifier::FromPemFile(config.audit().signing_key_file());
  if (!key.ok()) return key.status();
  const config::v1::AuditConfig& a = config.audit();
  if (!a.has_postgres()) {
    return std::make_unique<AuditorService>(a.db_path(), *std::move(key), policy, authenticator);
  }
  // Reads with the read-only role when configured; one connection per call (auditor calls
  // are rare, and a lost database then costs nothing until the next call).
  absl::StatusOr<pg::ConnectOptions> connect = ConnectOptions(
      a.has_postgres_reader() ? a.postgres_reader() : a.postgres(), config.instance_id());
  if (!connect.ok()) return connect.status();
  connect->application_name = absl::StrCat(config.instance_id(), "/auditor");
  return std::make_unique<AuditorService>(
      [connect = *connect]() { return AuditReader::OpenPostgres(connect); }, *std::move(key),
      policy, authenticator);
}

}  // namespace knooppunt::audit
