// How the gateway process assembles its audit side from gateway.yaml: the decision log the
// exchange writes to, and the Auditor service.
//
// Guarantees: with an `audit:` section, the decision log is the tamper-evident AuditLog
// (keys read from the named files; any problem is an error and the gateway does not start),
// with `decision_log.path` as an extra JSON-lines copy when set. Without it, only the JSON
// lines log (not tamper-evident; a warning is logged). The Auditor service exists only with
// an `audit:` section.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_AUDIT_WIRING_H_
#define KNOOPPUNT_GATEWAY_AUDIT_AUDIT_WIRING_H_

#include <memory>

#include "absl/status/statusor.h"
#include "gateway/audit/auditor_service.h"
#include "gateway/audit/decision_log.h"
#include "gateway/observability/metrics_sink.h"
#include "knooppunt/config/v1/gateway_config.pb.h"

namespace knooppunt::audit {

// `metrics` (optional, not owned) is told the AuditLog's write latency per record.
absl::StatusOr<std::unique_ptr<DecisionLog>> OpenDecisionLog(
    const config::v1::GatewayConfig& config,
    observability::AuditMetricsSink* metrics = nullptr);

// nullptr without an `audit:` section.
absl::StatusOr<std::unique_ptr<AuditorService>> MakeAuditorService(
    const config::v1::GatewayConfig& config, const policy::PolicyStore* policy,
    const identity::PeerAuthenticator* authenticator);

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_AUDIT_WIRING_H_
