// The narrow interface the exchange path reports to (gateway/exchange/admission): one call
// per exchange, when its decision ends (at a denial, or at the outcome of an admitted one).
//
// Guarantees: header only, no dependency on a metrics library, so the exchange path links
// nothing extra; an implementation must be cheap and must not block (it runs on gRPC's
// callback threads).
#ifndef KNOOPPUNT_GATEWAY_OBSERVABILITY_METRICS_SINK_H_
#define KNOOPPUNT_GATEWAY_OBSERVABILITY_METRICS_SINK_H_

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace knooppunt::observability {

class ExchangeMetricsSink {
 public:
  virtual ~ExchangeMetricsSink() = default;
  // `operation` is "Request" or "Send"; `message_type` the envelope's payload type (may be
  // empty or unknown for a malformed envelope); `grpc_code` the status the caller gets.
  virtual void OnExchange(absl::string_view operation, absl::string_view message_type,
                          bool allowed, int grpc_code, absl::Duration latency) = 0;
};

}  // namespace knooppunt::observability

#endif  // KNOOPPUNT_GATEWAY_OBSERVABILITY_METRICS_SINK_H_
