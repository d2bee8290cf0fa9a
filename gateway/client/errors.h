// Typed errors for parties that call Knooppunt: what a gRPC status from the gateway (or from
// the recipient's endpoint behind it) means for the caller, and what to do about it.
//
// Guarantees: every gRPC status code maps to exactly one ErrorKind (ErrorKindFor is total and
// pure); a status converted with FromGrpcStatus keeps the code and message and carries as
// absl::Status payloads whether the error came from the recipient's endpoint (trailing
// metadata "knooppunt-error-source: endpoint") and the gateway's RetryInfo delay, so
// DescribeError can recover both from the absl::Status the client library returns.
#ifndef KNOOPPUNT_GATEWAY_CLIENT_ERRORS_H_
#define KNOOPPUNT_GATEWAY_CLIENT_ERRORS_H_

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "grpcpp/support/string_ref.h"

namespace knooppunt::client {

// What the caller should do. (The gRPC code stays available in ClientError::code.)
enum class ErrorKind {
  kNone,                // not an error
  kUnauthenticated,     // the certificate carries no usable OIN: fix the certificate
  kDenied,              // PERMISSION_DENIED: no agreement allows it, or sender ≠ certificate
  kInvalid,             // INVALID_ARGUMENT / OUT_OF_RANGE: the message is malformed; fix it
  kNotFound,            // NOT_FOUND: unknown recipient, message or (endpoint) record
  kConflict,            // ALREADY_EXISTS: message_id reused for different content
  kPrecondition,        // FAILED_PRECONDITION: e.g. recipient without an endpoint, expired
  kRetryLater,          // RESOURCE_EXHAUSTED: rate limit or full store; wait (RetryInfo)
  kUnavailable,         // UNAVAILABLE: gateway or endpoint unreachable; safe to retry
  kTimeout,             // DEADLINE_EXCEEDED: no answer in time; retry a melding with same id
  kCancelled,           // CANCELLED / ABORTED: the call was cancelled
  kUnimplemented,       // UNIMPLEMENTED: the endpoint does not handle this message
  kInternal,            // INTERNAL / UNKNOWN / DATA_LOSS: a bug or a reply the agreement forbids
};

// "denied", "retry-later", ...: stable names for logs and tests.
absl::string_view ErrorKindName(ErrorKind kind);

// The kind for a gRPC status code.
ErrorKind ErrorKindFor(grpc::StatusCode code);

// Whether an operation that is safe to repeat (a melding with the same message_id, a query)
// may be retried after this kind of error.
bool IsRetryable(ErrorKind kind);

// An error as the client library describes it.
struct ClientError {
  ErrorKind kind = ErrorKind::kNone;
  absl::StatusCode code = absl::StatusCode::kOk;
  std::string message;
  // True when the recipient's endpoint produced the error (the gateway only passed it on).
  bool from_endpoint = false;
  // How long the gateway asked the caller to wait before retrying (RetryInfo); zero if it
  // did not say.
  absl::Duration retry_after = absl::ZeroDuration();

  bool ok() const { return kind == ErrorKind::kNone; }
  // "denied (PERMISSION_DENIED, from the endpoint): <message>"
  std::string ToString() const;
};

// The absl::Status for a finished call: the code and message of `status`, plus payloads for
// the endpoint origin (from `trailing_metadata`) and RetryInfo (from the status details).
absl::Status FromGrpcStatus(const grpc::Status& status,
                            const std::multimap<grpc::string_ref, grpc::string_ref>& trailing_metadata);

// The typed view of a status the client library returned (any other status works too:
// it simply has no endpoint/RetryInfo payloads).
ClientError DescribeError(const absl::Status& status);

}  // namespace knooppunt::client

#endif  // KNOOPPUNT_GATEWAY_CLIENT_ERRORS_H_
