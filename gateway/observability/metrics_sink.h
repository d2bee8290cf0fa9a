// The narrow interfaces modules report to without depending on the metrics library:
//  - ExchangeMetricsSink: the exchange path (gateway/exchange/admission), one call per
//    exchange, when its decision ends (at a denial, or at the outcome of an admitted one);
//  - AuditMetricsSink: the audit log (gateway/audit/audit_log), once per record, when its
//    group commit ended;
//  - PeerCertificateSink: authentication (gateway/identity/peer_identity) and the forward
//    leg's handshake check (gateway/tls/credentials), with a peer's certificate — not per
//    call: once per certificate first seen (authentication caches per certificate) or per
//    handshake (endpoints).
//
// Guarantees: header only, no dependency on a metrics library, so those modules link
// nothing extra; an implementation must be cheap and must not block (it runs on gRPC's
// callback threads, the audit writer thread and TLS handshakes).
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

class AuditMetricsSink {
 public:
  virtual ~AuditMetricsSink() = default;
  // One record's time from being queued to its group commit's end (durable when `ok`).
  virtual void OnAuditWrite(absl::Duration enqueue_to_durable, bool ok) = 0;
};

class PeerCertificateSink {
 public:
  virtual ~PeerCertificateSink() = default;
  // `role`: "organisation" (a client certificate that authenticated, keyed by its OIN) or
  // "endpoint" (the certificate an endpoint presented, carrying the registered `oin`).
  // `certificate_pem`: the peer's (leaf) certificate as verified by the TLS layer.
  virtual void OnPeerCertificate(absl::string_view role, absl::string_view oin,
                                 absl::string_view certificate_pem) = 0;
};

}  // namespace knooppunt::observability

#endif  // KNOOPPUNT_GATEWAY_OBSERVABILITY_METRICS_SINK_H_
