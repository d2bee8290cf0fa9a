// Steps 1–5 of a message's path, shared by every operation that carries an envelope
// (Request and Send):
//   accept (envelope shape) → authenticate (certificate OIN) → decide (agreements, rate
//   limit) → transform (the payload's field list, gateway/transform) → audit.
//
// Guarantees: Admit() reports OK (to its callback) only when the caller's certificate carries
// an OIN equal to the envelope's sender, the envelope is well-formed, the recipient is registered, an
// agreement in force allows the exchange in the given mode, its rate limit has a token, the
// payload is valid for the agreement's field list (parses, BSN fields pass the 11-proef, when
// it is parsed at all), AND the "decision" record — with the removed field paths — has been
// written. What passes on is then Admission::filtered_payload when payload_filtered is set,
// else the envelope's payload as it came. A rate-limited exchange is RESOURCE_EXHAUSTED with
// a RetryInfo payload (kRetryInfoTypeUrl) in the status. Every denial is recorded too (best
// effort: a denial stands even when its record cannot be written; denial and outcome records
// are queued without waiting). The caller then forwards or stores, and calls RecordOutcome().
#ifndef KNOOPPUNT_GATEWAY_EXCHANGE_ADMISSION_H_
#define KNOOPPUNT_GATEWAY_EXCHANGE_ADMISSION_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "gateway/audit/decision_log.h"
#include "gateway/common/ids.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/observability/metrics_sink.h"
#include "gateway/policy/policy_store.h"
#include "gateway/ratelimit/token_buckets.h"
#include "google/protobuf/descriptor.h"
#include "grpcpp/server_context.h"
#include "knooppunt/audit/v1/decision_record.pb.h"
#include "knooppunt/exchange/v1/envelope.pb.h"

namespace knooppunt::exchange {

// Type URL of the absl::Status payload (a serialised RetryInfo, error_details.proto) that a
// rate-limited Admit() carries; it goes to the caller as a google.rpc.RetryInfo detail.
inline constexpr absl::string_view kRetryInfoTypeUrl = "type.googleapis.com/google.rpc.RetryInfo";

struct ExchangeOptions {
  std::string instance_id;
  size_t max_payload_bytes = 4 << 20;
  absl::Duration default_deadline = absl::Seconds(30);
  absl::Duration max_deadline = absl::Seconds(120);
};

// Everything the exchange needs; not owned, must outlive it.
struct ExchangeDependencies {
  const policy::PolicyStore* policy = nullptr;
  const identity::PeerAuthenticator* authenticator = nullptr;
  audit::DecisionLog* decision_log = nullptr;
  const google::protobuf::DescriptorPool* types = nullptr;
  // Token buckets of the agreements' rate limits; kept across policy reloads.
  ratelimit::TokenBuckets* rate_limits = nullptr;
  // Optional: told how every exchange's decision ended (Prometheus metrics).
  observability::ExchangeMetricsSink* metrics = nullptr;
};

// What an admitted exchange carries on to its next steps.
struct Admission {
  absl::Time started;
  std::shared_ptr<const policy::PolicySnapshot> policy;  // kept for the whole exchange
  TraceIds trace;
  const policy::Organisation* recipient = nullptr;       // points into `policy`
  const policy::CompiledAgreement* agreement = nullptr;  // points into `policy`
  audit::v1::DecisionRecord record;
  // Set when the transform step rewrote the payload (fields removed).
  bool payload_filtered = false;
  std::string filtered_payload;
};

class Admitter {
 public:
  Admitter(const ExchangeDependencies& deps, const ExchangeOptions& options)
      : deps_(deps), options_(options) {}

  // Calls `then` exactly once: at once with the denial, or — for an admitted exchange — once
  // its decision record is written (OK) or could not be (UNAVAILABLE). Nothing here waits
  // for the disk: `then` may run on the audit log's completion thread, so it must not block.
  void Admit(const grpc::CallbackServerContext& context, const v1::Envelope& envelope,
             config::v1::ExchangeMode mode, absl::string_view operation, Admission* admission,
             std::function<void(absl::Status)> then) const;

  // Admit() in its two halves, for a caller that overlaps the decision record's commit with
  // its own durable work (a melding's store append): Decide() is everything up to the
  // decision record — authenticate, accept, decide, rate, transform — and records a denial
  // itself; RecordDecision() then writes the allowed decision and calls `then` as Admit()
  // does. The caller must not let the exchange leave the gateway before `then` reports OK.
  absl::Status Decide(const grpc::CallbackServerContext& context, const v1::Envelope& envelope,
                      config::v1::ExchangeMode mode, absl::string_view operation,
                      Admission* admission) const;
  void RecordDecision(const Admission& admission, std::function<void(absl::Status)> then) const;

  // Records how the exchange ended (status and latency).
  void RecordOutcome(Admission* admission, int grpc_code) const;

 private:
  absl::Status Deny(Admission* admission, absl::Status status, absl::string_view reason) const;
  absl::Status CheckRate(Admission* admission) const;

  const ExchangeDependencies& deps_;
  const ExchangeOptions& options_;
};

}  // namespace knooppunt::exchange

#endif  // KNOOPPUNT_GATEWAY_EXCHANGE_ADMISSION_H_
