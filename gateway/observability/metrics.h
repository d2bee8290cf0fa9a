// Prometheus metrics of the gateway (prometheus-cpp), served on their own HTTP port.
//
// Guarantees: Start() with an empty listen address serves nothing (the metrics are still
// counted, so callers need no special case); with an address it binds it (port 0 picks a
// free one, see port()) or fails. The exchange hot path (OnExchange) does one hash lookup by
// message type under a reader lock and increments a cached child: no string is built per
// request (only the first time a label combination is seen). Message-type label values are
// bounded (kMaxMessageTypes; beyond that "other"), so the registry cannot grow without limit.
// Metric names:
//   knooppunt_exchange_requests_total{operation,message_type,decision,code}
//   knooppunt_exchange_latency_seconds{operation,decision}            (histogram)
//   knooppunt_config_reloads_total{result="succeeded"|"failed"}
//   knooppunt_certificate_expiry_seconds{role,file}                   (seconds until notAfter)
//   knooppunt_health_serving                                          (1 serving, 0 not)
//   knooppunt_delivery_attempts_total{code}                          (melding deliveries)
//   knooppunt_melding_queue_messages, knooppunt_melding_queue_bytes   (stored, not yet
//                                                                      delivered or expired)
//   knooppunt_melding_queue_oldest_age_seconds                        (how long the oldest
//                                                                      of them has waited)
//   knooppunt_audit_write_seconds{result="ok"|"failed"}              (histogram, record queued
//                                                                      → group commit durable)
//   knooppunt_peer_certificate_expiry_seconds{role,oin}              (organisation / endpoint
//                                                                      certificates seen)
//   knooppunt_peer_connections_limited_total                         (accepted connections
//                                                                      shut down over
//                                                                      limits.max_connections_per_peer)
#ifndef KNOOPPUNT_GATEWAY_OBSERVABILITY_METRICS_H_
#define KNOOPPUNT_GATEWAY_OBSERVABILITY_METRICS_H_

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gateway/observability/metrics_sink.h"

namespace prometheus {
class Registry;
class Exposer;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace knooppunt::observability {

class Metrics : public ExchangeMetricsSink, public AuditMetricsSink {
 public:
  static constexpr size_t kMaxMessageTypes = 256;

  static absl::StatusOr<std::unique_ptr<Metrics>> Start(const std::string& listen);
  ~Metrics() override;

  int port() const { return port_; }  // 0 when not served

  void OnExchange(absl::string_view operation, absl::string_view message_type, bool allowed,
                  int grpc_code, absl::Duration latency) override;
  void OnReload(bool succeeded);
  // Seconds until the certificate in `file` (the earliest in a bundle) expires; negative
  // when it has expired.
  void SetCertificateExpiry(const std::string& role, const std::string& file, double seconds);
  void SetServing(bool serving);
  // `oldest_age`: how long the oldest of them has waited (zero when none).
  void SetQueue(uint64_t messages, uint64_t bytes, absl::Duration oldest_age);
  // One melding delivery attempt (push Deliver, or an Ack) ended with `grpc_code`.
  void OnDeliveryAttempt(int grpc_code);
  void OnAuditWrite(absl::Duration enqueue_to_durable, bool ok) override;
  // Seconds until a peer's certificate expires (negative: expired); `role` "organisation"
  // or "endpoint". The caller bounds the number of (role, oin) pairs.
  void SetPeerCertificateExpiry(const std::string& role, const std::string& oin, double seconds);
  // `n` accepted connections were shut down for exceeding limits.max_connections_per_peer.
  void OnPeerConnectionsLimited(int n);

 private:
  static constexpr int kOperations = 3;  // Request, Send, other
  static constexpr int kCodes = 17;      // gRPC status codes 0..16
  struct PerType {
    std::array<std::array<std::array<prometheus::Counter*, kCodes>, 2>, kOperations> counters{};
  };
  Metrics();
  PerType* TypeLocked(absl::string_view message_type) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
  prometheus::Family<prometheus::Counter>* requests_ = nullptr;
  prometheus::Family<prometheus::Gauge>* certificate_expiry_ = nullptr;
  std::array<std::array<prometheus::Histogram*, 2>, kOperations> latency_{};
  prometheus::Counter* reloads_succeeded_ = nullptr;
  prometheus::Counter* reloads_failed_ = nullptr;
  prometheus::Gauge* serving_ = nullptr;
  prometheus::Gauge* queue_messages_ = nullptr;
  prometheus::Gauge* queue_bytes_ = nullptr;
  prometheus::Gauge* queue_oldest_age_ = nullptr;
  std::array<prometheus::Counter*, kCodes> delivery_attempts_{};
  std::array<prometheus::Histogram*, 2> audit_write_{};  // [0] failed, [1] ok
  prometheus::Family<prometheus::Gauge>* peer_certificate_expiry_ = nullptr;
  prometheus::Counter* peer_connections_limited_ = nullptr;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::unique_ptr<PerType>> by_type_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knooppunt::observability

#endif  // KNOOPPUNT_GATEWAY_OBSERVABILITY_METRICS_H_
