#include "gateway/client/errors.h"

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "knooppunt/exchange/v1/error_details.pb.h"

namespace knooppunt::client {
namespace {

// absl::Status payload keys. Private to this library: DescribeError is how they are read.
constexpr absl::string_view kEndpointOriginPayload = "knooppunt.client/error-source-endpoint";
constexpr absl::string_view kRetryAfterPayload = "knooppunt.client/retry-after-nanos";
// The type URL of the gateway's RetryInfo detail (error_details.proto).
constexpr absl::string_view kRetryInfoTypeUrl = "type.googleapis.com/google.rpc.RetryInfo";

absl::Duration RetryDelayFromDetails(const std::string& details) {
  if (details.empty()) return absl::ZeroDuration();
  exchange::v1::RpcStatus rpc_status;
  if (!rpc_status.ParseFromString(details)) return absl::ZeroDuration();
  for (const google::protobuf::Any& detail : rpc_status.details()) {
    if (detail.type_url() != kRetryInfoTypeUrl) continue;
    exchange::v1::RetryInfo retry;
    if (!retry.ParseFromString(detail.value())) continue;
    return absl::Seconds(retry.retry_delay().seconds()) +
           absl::Nanoseconds(retry.retry_delay().nanos());
  }
  return absl::ZeroDuration();
}

}  // namespace

absl::string_view ErrorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::kNone: return "ok";
    case ErrorKind::kUnauthenticated: return "unauthenticated";
    case ErrorKind::kDenied: return "denied";
    case ErrorKind::kInvalid: return "invalid";
    case ErrorKind::kNotFound: return "not-found";
    case ErrorKind::kConflict: return "conflict";
    case ErrorKind::kPrecondition: return "precondition";
    case ErrorKind::kRetryLater: return "retry-later";
    case ErrorKind::kUnavailable: return "unavailable";
    case ErrorKind::kTimeout: return "timeout";
    case ErrorKind::kCancelled: return "cancelled";
    case ErrorKind::kUnimplemented: return "unimplemented";
    case ErrorKind::kInternal: return "internal";
  }
  return "internal";
}

ErrorKind ErrorKindFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK: return ErrorKind::kNone;
    case grpc::StatusCode::UNAUTHENTICATED: return ErrorKind::kUnauthenticated;
    case grpc::StatusCode::PERMISSION_DENIED: return ErrorKind::kDenied;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE: return ErrorKind::kInvalid;
    case grpc::StatusCode::NOT_FOUND: return ErrorKind::kNotFound;
    case grpc::StatusCode::ALREADY_EXISTS: return ErrorKind::kConflict;
    case grpc::StatusCode::FAILED_PRECONDITION: return ErrorKind::kPrecondition;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return ErrorKind::kRetryLater;
    case grpc::StatusCode::UNAVAILABLE: return ErrorKind::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return ErrorKind::kTimeout;
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::ABORTED: return ErrorKind::kCancelled;
    case grpc::StatusCode::UNIMPLEMENTED: return ErrorKind::kUnimplemented;
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
    case grpc::StatusCode::DATA_LOSS:
    case grpc::StatusCode::DO_NOT_USE: return ErrorKind::kInternal;
  }
  return ErrorKind::kInternal;
}

bool IsRetryable(ErrorKind kind) {
  return kind == ErrorKind::kRetryLater || kind == ErrorKind::kUnavailable ||
         kind == ErrorKind::kTimeout;
}

std::string ClientError::ToString() const {
  if (ok()) return "ok";
  std::string out = absl::StrCat(ErrorKindName(kind), " (", absl::StatusCodeToString(code));
  if (from_endpoint) absl::StrAppend(&out, ", from the endpoint");
  if (retry_after > absl::ZeroDuration()) {
    absl::StrAppend(&out, ", retry after ", absl::FormatDuration(retry_after));
  }
  absl::StrAppend(&out, "): ", message);
  return out;
}

absl::Status FromGrpcStatus(
    const grpc::Status& status,
    const std::multimap<grpc::string_ref, grpc::string_ref>& trailing_metadata) {
  if (status.ok()) return absl::OkStatus();
  absl::Status out(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  auto source = trailing_metadata.find("knooppunt-error-source");
  if (source != trailing_metadata.end() && source->second == "endpoint") {
    out.SetPayload(kEndpointOriginPayload, absl::Cord("1"));
  }
  const absl::Duration retry_after = RetryDelayFromDetails(status.error_details());
  if (retry_after > absl::ZeroDuration()) {
    out.SetPayload(kRetryAfterPayload,
                   absl::Cord(absl::StrCat(absl::ToInt64Nanoseconds(retry_after))));
  }
  return out;
}

ClientError DescribeError(const absl::Status& status) {
  ClientError error;
  error.code = status.code();
  if (status.ok()) return error;
  error.kind = ErrorKindFor(static_cast<grpc::StatusCode>(status.code()));
  error.message = std::string(status.message());
  error.from_endpoint = status.GetPayload(kEndpointOriginPayload).has_value();
  if (absl::optional<absl::Cord> nanos = status.GetPayload(kRetryAfterPayload)) {
    int64_t n = 0;
    if (absl::SimpleAtoi(std::string(*nanos), &n) && n > 0) error.retry_after = absl::Nanoseconds(n);
  }
  return error;
}

}  // namespace knooppunt::client
