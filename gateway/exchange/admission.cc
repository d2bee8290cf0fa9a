#include "gateway/exchange/admission.h"

#include <openssl/evp.h>

#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gateway/exchange/envelope_check.h"
#include "gateway/transform/field_filter.h"
#include "google/protobuf/util/time_util.h"
#include "knooppunt/exchange/v1/error_details.pb.h"

namespace knooppunt::exchange {
namespace {

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), len));
}

// Header fields are recorded as stated, but bounded: a hostile envelope cannot bloat the log.
std::string Bounded(const std::string& s, size_t max) { return s.substr(0, max); }

}  // namespace

void Admitter::Admit(const grpc::CallbackServerContext& context, const v1::Envelope& envelope,
                     config::v1::ExchangeMode mode, absl::string_view operation, Admission* a,
                     std::function<void(absl::Status)> then) const {
  absl::Status decided = Decide(context, envelope, mode, operation, a);
  if (!decided.ok()) return then(std::move(decided));
  RecordDecision(*a, std::move(then));
}

void Admitter::RecordDecision(const Admission& a, std::function<void(absl::Status)> then) const {
  // audit: the decision is on record before anything leaves the gateway (fail closed); the
  // group commit calls back, so no request thread waits for the fsync.
  deps_.decision_log->RecordAsync(a.record, [then = std::move(then)](absl::Status written) {
    then(written.ok() ? absl::OkStatus()
                      : absl::UnavailableError("the exchange cannot be audited; refused"));
  });
}

absl::Status Admitter::Decide(const grpc::CallbackServerContext& context,
                             const v1::Envelope& envelope, config::v1::ExchangeMode mode,
                             absl::string_view operation, Admission* a) const {
  a->started = absl::Now();
  a->policy = deps_.policy->Current();
  a->trace = ContinueTrace(envelope.trace().traceparent());
  audit::v1::DecisionRecord& r = a->record;
  *r.mutable_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(a->started));
  r.set_instance_id(options_.instance_id);
  r.set_trace_id(a->trace.trace_id);
  r.set_span_id(a->trace.span_id);
  r.set_operation(std::string(operation));
  r.set_message_id(Bounded(envelope.message_id(), 64));
  r.set_correlation_id(Bounded(envelope.correlation_id(), 64));
  r.set_sender(Bounded(envelope.sender(), 64));
  r.set_recipient(Bounded(envelope.recipient(), 64));
  r.set_purpose(Bounded(envelope.purpose(), 128));
  r.set_payload_bytes(static_cast<int64_t>(envelope.payload().value().size()));
  r.set_payload_sha256(Sha256Hex(envelope.payload().value()));

  // authenticate
  absl::StatusOr<std::string> oin = deps_.authenticator->Authenticate(*context.auth_context());
  if (!oin.ok()) return Deny(a, oin.status(), "authentication failed");
  r.set_authenticated_oin(*oin);

  // accept: the envelope's shape
  absl::StatusOr<absl::string_view> type =
      CheckEnvelope(envelope, options_.max_payload_bytes, *deps_.types);
  if (!type.ok()) return Deny(a, type.status(), "malformed envelope");
  r.set_message_type(std::string(*type));
  // data subjects: pseudonyms of the payload's BSNs, also on denials (gateway/audit)
  deps_.decision_log->AddDataSubjects(deps_.types->FindMessageTypeByName(std::string(*type)),
                                      envelope.payload().value(), &r);
  if (envelope.sender() != *oin) {
    return Deny(a,
                absl::PermissionDeniedError(absl::StrCat(
                    "envelope sender ", envelope.sender(),
                    " does not match the client certificate's OIN ", *oin)),
                "sender does not match certificate");
  }

  // decide
  absl::StatusOr<const policy::Organisation*> recipient =
      a->policy->registry.ResolveRecipient(envelope.recipient());
  if (!recipient.ok()) return Deny(a, recipient.status(), "unknown recipient");
  a->recipient = *recipient;
  r.set_recipient_oin(a->recipient->oin);
  const policy::Decision decision = a->policy->agreements.Decide(
      {*oin, a->recipient->oin, *type, envelope.purpose(), mode, a->started});
  if (!decision.allowed()) {
    return Deny(a, absl::PermissionDeniedError(decision.reason),
                absl::StrCat("no agreement: ", policy::DeniedOnName(decision.denied_on)));
  }
  a->agreement = decision.agreement;
  r.set_agreement_id(a->agreement->id);
  absl::Status limited = CheckRate(a);
  if (!limited.ok()) return Deny(a, std::move(limited), "rate limit");

  // transform: only the agreed fields of the payload pass (gateway/transform)
  std::vector<std::string> removed;
  absl::StatusOr<bool> filtered =
      transform::Filter(a->agreement->fields, /*check_bsn=*/true, envelope.payload().value(),
                        &a->filtered_payload, &removed);
  if (!filtered.ok()) return Deny(a, filtered.status(), "invalid payload");
  a->payload_filtered = *filtered;
  for (std::string& path : removed) r.add_removed_paths(std::move(path));

  r.set_decision(audit::v1::DECISION_ALLOWED);
  r.set_reason("agreement in force");
  r.set_event("decision");
  return absl::OkStatus();
}

absl::Status Admitter::CheckRate(Admission* a) const {
  const policy::CompiledAgreement& agreement = *a->agreement;
  if (!agreement.has_rate || deps_.rate_limits == nullptr) return absl::OkStatus();
  const std::string key = agreement.rate_per_sender
                              ? absl::StrCat(agreement.id, "/", a->record.authenticated_oin())
                              : agreement.id;
  const absl::Duration wait = deps_.rate_limits->TryTake(key, agreement.rate, a->started);
  if (wait == absl::ZeroDuration()) return absl::OkStatus();
  const int64_t wait_ms = absl::ToInt64Milliseconds(wait);
  absl::Status status = absl::ResourceExhaustedError(absl::StrCat(
      "rate limit of agreement ", agreement.id, agreement.rate_per_sender ? " for this sender" : "",
      " reached (", agreement.rate.per_second, "/s); retry after ", wait_ms, "ms"));
  v1::RetryInfo retry;
  retry.mutable_retry_delay()->set_seconds(wait_ms / 1000);
  retry.mutable_retry_delay()->set_nanos(static_cast<int32_t>(wait_ms % 1000) * 1000000);
  status.SetPayload(kRetryInfoTypeUrl, absl::Cord(retry.SerializeAsString()));
  return status;
}

absl::Status Admitter::Deny(Admission* a, absl::Status status, absl::string_view reason) const {
  a->record.set_decision(audit::v1::DECISION_DENIED);
  a->record.set_reason(std::string(reason));
  a->record.set_event("decision");
  a->record.set_grpc_status(static_cast<int>(status.code()));
  const absl::Duration latency = absl::Now() - a->started;
  a->record.set_latency_us(absl::ToInt64Microseconds(latency));
  deps_.decision_log->RecordAsync(a->record, nullptr);  // best effort, does not wait
  if (deps_.metrics != nullptr) {
    deps_.metrics->OnExchange(a->record.operation(), a->record.message_type(), false,
                              static_cast<int>(status.code()), latency);
  }
  return status;
}

void Admitter::RecordOutcome(Admission* a, int grpc_code) const {
  a->record.set_event("outcome");
  a->record.set_grpc_status(grpc_code);
  const absl::Duration latency = absl::Now() - a->started;
  a->record.set_latency_us(absl::ToInt64Microseconds(latency));
  deps_.decision_log->RecordAsync(a->record, nullptr);  // best effort, does not wait
  if (deps_.metrics != nullptr) {
    deps_.metrics->OnExchange(a->record.operation(), a->record.message_type(), true, grpc_code,
                              latency);
  }
}

}  // namespace knooppunt::exchange
