// Identifiers that cross the gateway: OINs, gemeentecodes, message ids, W3C trace context.
// Pure functions, no allocation beyond their results; safe from any thread.
#ifndef KNOOPPUNT_GATEWAY_COMMON_IDS_H_
#define KNOOPPUNT_GATEWAY_COMMON_IDS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace knooppunt {

// An OIN is exactly 20 ASCII digits.
bool IsValidOin(absl::string_view oin);

// A gemeentecode is exactly 4 ASCII digits.
bool IsValidGemeentecode(absl::string_view code);

// A BSN (burgerservicenummer) is 9 ASCII digits passing the 11-proef:
// 9·d1 + 8·d2 + ... + 2·d8 − 1·d9 divisible by 11 and not 0.
bool IsValidBsn(absl::string_view bsn);

// Canonical UUID text: 8-4-4-4-12 hex digits (either case).
bool IsValidUuid(absl::string_view id);

// A random (version 4) UUID in lower case.
std::string NewUuid();

// W3C trace context: the ids the gateway records.
struct TraceIds {
  std::string trace_id;        // 32 lower-case hex digits
  std::string parent_span_id;  // 16 hex digits, empty when the trace starts here
  std::string span_id;         // the gateway's own span, 16 hex digits
  std::string flags = "01";
};

// Parses a `traceparent` header value. Malformed or empty input starts a new trace (the
// spec says a receiver must not fail a request on a bad traceparent). The gateway's own span
// id is always new.
TraceIds ContinueTrace(absl::string_view traceparent);

// "00-<trace_id>-<span_id>-<flags>": the traceparent to pass on to the next hop.
std::string FormatTraceparent(const TraceIds& ids);

// Random lower-case hex string of 2*bytes digits, never all zeros.
std::string RandomHex(int bytes);

}  // namespace knooppunt

#endif  // KNOOPPUNT_GATEWAY_COMMON_IDS_H_
