#include "gateway/exchange/exchange_service.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/ids.h"
#include "gateway/exchange/envelope_check.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::exchange {
namespace {

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

}  // namespace

// One bevraging, from arrival to reply. Owns the upstream call's context; deletes itself when
// gRPC reports the server call done.
class BevragingCall final : public grpc::ServerUnaryReactor {
 public:
  BevragingCall(const ExchangeService& service, grpc::CallbackServerContext* context,
                const v1::Envelope* request, v1::Envelope* reply)
      : service_(service), context_(context), request_(*request), reply_(*reply) {}

  void Start() {
    absl::Status admitted = service_.admitter_.Admit(
        *context_, request_, config::v1::EXCHANGE_MODE_BEVRAGING, "Request", &admission_);
    if (!admitted.ok()) return Finish(ToGrpc(admitted));
    if (admission_.recipient->endpoint_address.empty()) {
      return Complete(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                   absl::StrCat("recipient ", admission_.recipient->oin,
                                                " has no endpoint for bevragingen")));
    }
    Forward();
  }

  void OnCancel() override { upstream_context_.TryCancel(); }
  void OnDone() override { delete this; }

 private:
  void Forward() {
    const auto now = std::chrono::system_clock::now();
    const auto caller_deadline = context_->deadline();
    const auto cap = now + absl::ToChronoNanoseconds(service_.options_.max_deadline);
    upstream_context_.set_deadline(
        caller_deadline == std::chrono::system_clock::time_point::max()
            ? now + absl::ToChronoNanoseconds(service_.options_.default_deadline)
            : std::min(caller_deadline, cap));
    upstream_context_.AddMetadata("knooppunt-agreement-id", admission_.agreement->id);
    upstream_context_.AddMetadata("knooppunt-sender-oin", admission_.record.authenticated_oin());
    upstream_context_.AddMetadata("traceparent", FormatTraceparent(admission_.trace));
    const policy::Organisation& to = *admission_.recipient;
    auto stub = service_.endpoints_->StubFor({to.oin, to.endpoint_address, to.tls_server_name});
    // The endpoint writes its reply straight into the caller's reply message: no copy.
    stub->async()->Answer(&upstream_context_, &request_, &reply_,
                          [this, stub](grpc::Status status) { OnUpstreamDone(status); });
  }

  void OnUpstreamDone(const grpc::Status& upstream) {
    if (!upstream.ok()) return Complete(MapUpstreamError(upstream));
    const policy::CompiledAgreement& agreement = *admission_.agreement;
    const absl::string_view reply_type = MessageTypeOf(reply_.payload().type_url());
    if (reply_type != agreement.reply_type) {
      reply_.Clear();
      return Complete(grpc::Status(
          grpc::StatusCode::INTERNAL,
          absl::StrCat("the recipient's endpoint replied with type '", reply_type,
                       "'; agreement ", agreement.id, " requires ", agreement.reply_type)));
    }
    if (reply_.payload().value().size() > service_.options_.max_payload_bytes) {
      reply_.Clear();
      return Complete(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "the recipient's reply exceeds the payload limit"));
    }
    // The gateway, not the endpoint, vouches for the reply's header.
    if (!IsValidUuid(reply_.message_id())) reply_.set_message_id(NewUuid());
    reply_.set_correlation_id(request_.message_id());
    reply_.set_sender(admission_.recipient->oin);
    reply_.set_recipient(request_.sender());
    reply_.set_purpose(request_.purpose());
    reply_.set_agreement_id(agreement.id);
    if (!reply_.has_created_at()) {
      *reply_.mutable_created_at() =
          google::protobuf::util::TimeUtil::NanosecondsToTimestamp(absl::GetCurrentTimeNanos());
    }
    reply_.mutable_trace()->set_traceparent(FormatTraceparent(admission_.trace));
    reply_.mutable_trace()->set_tracestate(request_.trace().tracestate());
    Complete(grpc::Status::OK);
  }

  grpc::Status MapUpstreamError(const grpc::Status& upstream) const {
    const policy::Organisation& to = *admission_.recipient;
    switch (upstream.error_code()) {
      case grpc::StatusCode::UNAVAILABLE:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                            absl::StrCat("the endpoint of ", to.name, " (", to.oin,
                                         ") is unavailable: ", upstream.error_message()));
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                            absl::StrCat("no reply from ", to.name, " before the deadline"));
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
    service_.admitter_.RecordOutcome(&admission_, status.error_code());
    Finish(status);
  }

  const ExchangeService& service_;
  grpc::CallbackServerContext* const context_;
  const v1::Envelope& request_;
  v1::Envelope& reply_;
  Admission admission_;
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
