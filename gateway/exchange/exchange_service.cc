#include "gateway/exchange/exchange_service.h"

#include <openssl/evp.h>

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/ids.h"
#include "gateway/exchange/envelope_check.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::exchange {
namespace {

using audit::v1::DecisionRecord;

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), len));
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

}  // namespace

// One bevraging, from arrival to reply. Owns the upstream call's context; deletes itself when
// gRPC reports the server call done.
class BevragingCall final : public grpc::ServerUnaryReactor {
 public:
  BevragingCall(const ExchangeService& service, grpc::CallbackServerContext* context,
                const v1::Envelope* request, v1::Envelope* reply)
      : service_(service), context_(context), request_(*request), reply_(*reply),
        started_(absl::Now()) {}

  void Start() {
    policy_ = service_.deps_.policy->Current();  // this call's policy, even across a reload
    trace_ = ContinueTrace(request_.trace().traceparent());
    FillRecordHeader();

    // authenticate
    absl::StatusOr<std::string> oin =
        service_.deps_.authenticator->Authenticate(*context_->auth_context());
    if (!oin.ok()) return Deny(oin.status(), "authentication failed");
    record_.set_authenticated_oin(*oin);

    // accept: the envelope's shape
    absl::StatusOr<absl::string_view> type = CheckEnvelope(
        request_, service_.options_.max_payload_bytes, *service_.deps_.types);
    if (!type.ok()) return Deny(type.status(), "malformed envelope");
    record_.set_message_type(std::string(*type));
    if (request_.sender() != *oin) {
      return Deny(absl::PermissionDeniedError(absl::StrCat(
                      "envelope sender ", request_.sender(),
                      " does not match the client certificate's OIN ", *oin)),
                  "sender does not match certificate");
    }

    // decide
    absl::StatusOr<const policy::Organisation*> recipient =
        policy_->registry.ResolveRecipient(request_.recipient());
    if (!recipient.ok()) return Deny(recipient.status(), "unknown recipient");
    recipient_ = *recipient;
    record_.set_recipient_oin(recipient_->oin);
    const policy::Decision decision = policy_->agreements.Decide(
        {*oin, recipient_->oin, *type, request_.purpose(), config::v1::EXCHANGE_MODE_BEVRAGING,
         started_});
    if (!decision.allowed()) {
      return Deny(absl::PermissionDeniedError(decision.reason),
                  absl::StrCat("no agreement: ", policy::DeniedOnName(decision.denied_on)));
    }
    agreement_ = decision.agreement;
    record_.set_agreement_id(agreement_->id);
    if (recipient_->endpoint_address.empty()) {
      return Deny(absl::FailedPreconditionError(absl::StrCat(
                      "recipient ", recipient_->oin, " has no endpoint for bevragingen")),
                  "recipient has no endpoint");
    }

    // audit: the decision is on record before anything leaves the gateway (fail closed)
    record_.set_decision(audit::v1::DECISION_ALLOWED);
    record_.set_reason("agreement in force");
    record_.set_event("decision");
    absl::Status audited = service_.deps_.decision_log->Record(record_);
    if (!audited.ok()) {
      return Complete(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "the exchange cannot be audited; refused"));
    }

    // forward
    Forward();
  }

  void OnCancel() override { upstream_context_.TryCancel(); }
  void OnDone() override { delete this; }

 private:
  void FillRecordHeader() {
    *record_.mutable_time() = ToProto(started_);
    record_.set_instance_id(service_.options_.instance_id);
    record_.set_trace_id(trace_.trace_id);
    record_.set_span_id(trace_.span_id);
    record_.set_message_id(request_.message_id().substr(0, 64));
    record_.set_correlation_id(request_.correlation_id().substr(0, 64));
    record_.set_operation("Request");
    record_.set_sender(request_.sender().substr(0, 64));
    record_.set_recipient(request_.recipient().substr(0, 64));
    record_.set_purpose(request_.purpose().substr(0, 128));
    record_.set_payload_bytes(static_cast<int64_t>(request_.payload().value().size()));
    record_.set_payload_sha256(Sha256Hex(request_.payload().value()));
  }

  void Deny(const absl::Status& status, absl::string_view reason) {
    record_.set_decision(audit::v1::DECISION_DENIED);
    record_.set_reason(std::string(reason));
    record_.set_event("decision");
    // A denial is refused whether or not its record could be written.
    record_.set_grpc_status(static_cast<int>(status.code()));
    service_.deps_.decision_log->Record(record_).IgnoreError();
    Finish(ToGrpc(status));
  }

  void Forward() {
    const absl::Duration max = service_.options_.max_deadline;
    const auto caller_deadline = context_->deadline();
    const auto cap = std::chrono::system_clock::now() + absl::ToChronoNanoseconds(max);
    const bool caller_has_deadline =
        caller_deadline != std::chrono::system_clock::time_point::max();
    upstream_context_.set_deadline(
        caller_has_deadline
            ? std::min(caller_deadline, cap)
            : std::chrono::system_clock::now() +
                  absl::ToChronoNanoseconds(service_.options_.default_deadline));
    upstream_context_.AddMetadata("knooppunt-agreement-id", agreement_->id);
    upstream_context_.AddMetadata("knooppunt-sender-oin", record_.authenticated_oin());
    upstream_context_.AddMetadata("traceparent", FormatTraceparent(trace_));
    auto stub = service_.deps_.endpoints->StubFor(
        {recipient_->oin, recipient_->endpoint_address, recipient_->tls_server_name});
    // The endpoint writes its reply straight into the caller's reply message: no copy.
    stub->async()->Answer(&upstream_context_, &request_, &reply_,
                          [this, stub](grpc::Status status) { OnUpstreamDone(status); });
  }

  void OnUpstreamDone(const grpc::Status& upstream) {
    if (!upstream.ok()) return Complete(MapUpstreamError(upstream));
    const absl::string_view reply_type = MessageTypeOf(reply_.payload().type_url());
    if (reply_type != agreement_->reply_type) {
      reply_.Clear();
      return Complete(grpc::Status(
          grpc::StatusCode::INTERNAL,
          absl::StrCat("the recipient's endpoint replied with type '", reply_type,
                       "'; agreement ", agreement_->id, " requires ", agreement_->reply_type)));
    }
    if (reply_.payload().value().size() > service_.options_.max_payload_bytes) {
      reply_.Clear();
      return Complete(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "the recipient's reply exceeds the payload limit"));
    }
    // The gateway, not the endpoint, vouches for the reply's header.
    if (!IsValidUuid(reply_.message_id())) reply_.set_message_id(NewUuid());
    reply_.set_correlation_id(request_.message_id());
    reply_.set_sender(recipient_->oin);
    reply_.set_recipient(request_.sender());
    reply_.set_purpose(request_.purpose());
    reply_.set_agreement_id(agreement_->id);
    if (!reply_.has_created_at()) *reply_.mutable_created_at() = ToProto(absl::Now());
    reply_.mutable_trace()->set_traceparent(FormatTraceparent(trace_));
    reply_.mutable_trace()->set_tracestate(request_.trace().tracestate());
    Complete(grpc::Status::OK);
  }

  grpc::Status MapUpstreamError(const grpc::Status& upstream) {
    switch (upstream.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            absl::StrCat("the endpoint of ", recipient_->name, " (",
                                         recipient_->oin, ") is unavailable: ",
                                         upstream.error_message()));
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            absl::StrCat("no reply from ", recipient_->name,
                                         " before the deadline"));
      case grpc::StatusCode::CANCELLED:
        return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      default:
        // Application errors of the endpoint (e.g. NOT_FOUND for an unknown person) pass
        // through with their code, marked as the endpoint's.
        return grpc::Status(upstream.error_code(),
                            absl::StrCat("recipient endpoint: ", upstream.error_message()));
    }
  }

  void Complete(const grpc::Status& status) {
    record_.set_event("outcome");
    record_.set_grpc_status(status.error_code());
    record_.set_latency_us(absl::ToInt64Microseconds(absl::Now() - started_));
    service_.deps_.decision_log->Record(record_).IgnoreError();
    Finish(status);
  }

  const ExchangeService& service_;
  grpc::CallbackServerContext* const context_;
  const v1::Envelope& request_;
  v1::Envelope& reply_;
  const absl::Time started_;
  std::shared_ptr<const policy::PolicySnapshot> policy_;
  TraceIds trace_;
  DecisionRecord record_;
  const policy::Organisation* recipient_ = nullptr;
  const policy::CompiledAgreement* agreement_ = nullptr;
  grpc::ClientContext upstream_context_;
};

grpc::ServerUnaryReactor* ExchangeService::Request(grpc::CallbackServerContext* context,
                                                   const v1::Envelope* request,
                                                   v1::Envelope* reply) {
  auto* call = new BevragingCall(*this, context, request, reply);
  call->Start();
  return call;
}

}  // namespace knooppunt::exchange
