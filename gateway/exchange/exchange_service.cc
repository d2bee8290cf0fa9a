#include "gateway/exchange/exchange_service.h"

#include <chrono>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/ids.h"
#include "gateway/exchange/envelope_check.h"
#include "gateway/transform/field_filter.h"
#include "google/protobuf/util/time_util.h"
#include "knooppunt/exchange/v1/error_details.pb.h"

namespace knooppunt::exchange {
namespace {

// A status's RetryInfo payload becomes a google.rpc.Status detail (grpc-status-details-bin).
grpc::Status ToGrpc(const absl::Status& s) {
  const auto code = static_cast<grpc::StatusCode>(s.code());
  absl::optional<absl::Cord> retry = s.GetPayload(kRetryInfoTypeUrl);
  if (!retry.has_value()) return grpc::Status(code, std::string(s.message()));
  v1::RpcStatus details;
  details.set_code(static_cast<int32_t>(s.code()));
  details.set_message(std::string(s.message()));
  google::protobuf::Any* any = details.add_details();
  any->set_type_url(std::string(kRetryInfoTypeUrl));
  any->set_value(std::string(*retry));
  return grpc::Status(code, std::string(s.message()), details.SerializeAsString());
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
    service_.admitter_.Admit(*context_, request_, config::v1::EXCHANGE_MODE_BEVRAGING, "Request",
                             &admission_, [this](absl::Status admitted) { OnAdmitted(admitted); });
  }

  void OnCancel() override { upstream_context_.TryCancel(); }
  void OnDone() override { delete this; }

 private:
  void OnAdmitted(const absl::Status& admitted) {
    if (!admitted.ok()) return Finish(ToGrpc(admitted));
    if (admission_.recipient->endpoint_address.empty()) {
      return Complete(grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                                   absl::StrCat("recipient ", admission_.recipient->oin,
                                                " has no endpoint for bevragingen")));
    }
    Forward();
  }

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
    // Unfiltered, the caller's request goes as it is: no copy. The endpoint writes its reply
    // straight into the caller's reply message.
    const v1::Envelope* outgoing = &request_;
    if (admission_.payload_filtered) {
      filtered_request_ = request_;
      filtered_request_.mutable_payload()->set_value(std::move(admission_.filtered_payload));
      outgoing = &filtered_request_;
    }
    stub->async()->Answer(&upstream_context_, outgoing, &reply_,
                          [this, stub](grpc::Status status) { OnUpstreamDone(status); });
  }

  void OnUpstreamDone(const grpc::Status& upstream) {
    if (!upstream.ok()) {
      // Tells a caller apart the endpoint's own errors from the gateway's of the same code.
      context_->AddTrailingMetadata("knooppunt-error-source", "endpoint");
      return Complete(MapUpstreamError(upstream));
    }
    const policy::CompiledAgreement& agreement = *admission_.agreement;
    const absl::string_view reply_type = MessageTypeOf(reply_.payload().type_url());
    if (reply_type != agreement.reply_type) {
      // The message first: reply_type points into reply_, which Clear() frees.
      grpc::Status wrong_type(
          grpc::StatusCode::INTERNAL,
          absl::StrCat("the recipient's endpoint replied with type '", reply_type,
                       "'; agreement ", agreement.id, " requires ", agreement.reply_type));
      reply_.Clear();
      return Complete(wrong_type);
    }
    if (reply_.payload().value().size() > service_.options_.max_payload_bytes) {
      reply_.Clear();
      return Complete(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                                   "the recipient's reply exceeds the payload limit"));
    }
    // transform: only the agreed fields of the reply pass.
    std::vector<std::string> removed;
    absl::Status filtered = transform::Apply(agreement.reply_fields, /*check_bsn=*/false,
                                             reply_.mutable_payload()->mutable_value(), &removed);
    if (!filtered.ok()) {
      reply_.Clear();
      return Complete(grpc::Status(
          grpc::StatusCode::INTERNAL,
          absl::StrCat("the recipient's reply is not a valid ", agreement.reply_type)));
    }
    for (std::string& path : removed) {
      admission_.record.add_removed_paths(absl::StrCat("reply:", path));
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
        // A caller whose deadline passes resets the stream, which reaches us as a
        // cancellation slightly BEFORE our own copy of that deadline (ours was computed from
        // the grpc-timeout header on arrival). A cancellation that close to the deadline is
        // the deadline; a caller that really gives up does so well before it.
        if (std::chrono::system_clock::now() + std::chrono::milliseconds(250) >=
            context_->deadline()) {
          return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED,
                              absl::StrCat("no reply from ", to.name, " before the deadline"));
        }
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
  v1::Envelope filtered_request_;  // used only when the request's payload was filtered
  grpc::ClientContext upstream_context_;
};

grpc::ServerUnaryReactor* ExchangeService::Request(grpc::CallbackServerContext* context,
                                                   const v1::Envelope* request,
                                                   v1::Envelope* reply) {
  if (draining()) {
    grpc::ServerUnaryReactor* refused = context->DefaultReactor();
    refused->Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "draining"));
    return refused;
  }
  auto* call = new BevragingCall(*this, context, request, reply);
  call->Start();
  return call;
}

}  // namespace knooppunt::exchange
