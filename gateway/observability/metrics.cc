#include "gateway/observability/metrics.h"

#include <algorithm>
#include <exception>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace knooppunt::observability {
namespace {

constexpr const char* kOperationNames[] = {"Request", "Send", "other"};
constexpr const char* kDecisionNames[] = {"denied", "allowed"};

int OperationIndex(absl::string_view operation) {
  if (operation == "Request") return 0;
  if (operation == "Send") return 1;
  return 2;
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("knooppunt_exchange_requests_total")
                   .Help("Exchanges by operation, message type, decision and gRPC status code")
                   .Register(*registry_);
  auto& latency = prometheus::BuildHistogram()
                      .Name("knooppunt_exchange_latency_seconds")
                      .Help("Time from admission to the end of the exchange")
                      .Register(*registry_);
  const prometheus::Histogram::BucketBoundaries buckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  for (int op = 0; op < kOperations; ++op) {
    for (int d = 0; d < 2; ++d) {
      latency_[op][d] =
          &latency.Add({{"operation", kOperationNames[op]}, {"decision", kDecisionNames[d]}},
                       buckets);
    }
  }
  auto& reloads = prometheus::BuildCounter()
                      .Name("knooppunt_config_reloads_total")
                      .Help("Policy (registry and agreements) reloads by result")
                      .Register(*registry_);
  reloads_succeeded_ = &reloads.Add({{"result", "succeeded"}});
  reloads_failed_ = &reloads.Add({{"result", "failed"}});
  certificate_expiry_ = &prometheus::BuildGauge()
                             .Name("knooppunt_certificate_expiry_seconds")
                             .Help("Seconds until the earliest certificate in a configured "
                                   "file expires (negative: expired)")
                             .Register(*registry_);
  serving_ = &prometheus::BuildGauge()
                  .Name("knooppunt_health_serving")
                  .Help("1 while the gRPC health status is SERVING, else 0")
                  .Register(*registry_)
                  .Add({});
  queue_messages_ = &prometheus::BuildGauge()
                         .Name("knooppunt_melding_queue_messages")
                         .Help("Meldingen stored and not yet delivered or expired")
                         .Register(*registry_)
                         .Add({});
  auto& attempts = prometheus::BuildCounter()
                       .Name("knooppunt_delivery_attempts_total")
                       .Help("Melding delivery attempts by gRPC status code")
                       .Register(*registry_);
  for (int code = 0; code < kCodes; ++code) {
    delivery_attempts_[static_cast<size_t>(code)] = &attempts.Add({{"code", absl::StrCat(code)}});
  }
  auto& audit_write = prometheus::BuildHistogram()
                          .Name("knooppunt_audit_write_seconds")
                          .Help("Time from an audit record being queued to the end of its "
                                "group commit (durable when result=ok)")
                          .Register(*registry_);
  const prometheus::Histogram::BucketBoundaries commit_buckets = {
      0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};
  audit_write_[0] = &audit_write.Add({{"result", "failed"}}, commit_buckets);
  audit_write_[1] = &audit_write.Add({{"result", "ok"}}, commit_buckets);
  peer_certificate_expiry_ = &prometheus::BuildGauge()
                                  .Name("knooppunt_peer_certificate_expiry_seconds")
                                  .Help("Seconds until the certificate of a peer expires "
                                        "(negative: expired): role=organisation for client "
                                        "certificates seen at authentication, role=endpoint "
                                        "for endpoint certificates seen at the handshake")
                                  .Register(*registry_);
  peer_connections_limited_ = &prometheus::BuildCounter()
                                   .Name("knooppunt_peer_connections_limited_total")
                                   .Help("Accepted connections shut down because their peer "
                                         "address held more than "
                                         "limits.max_connections_per_peer")
                                   .Register(*registry_)
                                   .Add({});
  queue_bytes_ = &prometheus::BuildGauge()
                      .Name("knooppunt_melding_queue_bytes")
                      .Help("Envelope bytes of the meldingen stored and not yet delivered")
                      .Register(*registry_)
                      .Add({});
  queue_oldest_age_ = &prometheus::BuildGauge()
                           .Name("knooppunt_melding_queue_oldest_age_seconds")
                           .Help("How long the oldest melding stored and not yet delivered "
                                 "or expired has waited since it was accepted (0: none)")
                           .Register(*registry_)
                           .Add({});
}

Metrics::~Metrics() = default;

absl::StatusOr<std::unique_ptr<Metrics>> Metrics::Start(const std::string& listen) {
  std::unique_ptr<Metrics> metrics(new Metrics());
  if (listen.empty()) return metrics;
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(listen, /*num_threads=*/1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("metrics: cannot listen on ", listen, ": ", e.what()));
  }
  metrics->exposer_->RegisterCollectable(metrics->registry_);
  const std::vector<int> ports = metrics->exposer_->GetListeningPorts();
  if (ports.empty()) return absl::UnavailableError(absl::StrCat("metrics: cannot listen on ", listen));
  metrics->port_ = ports.front();
  return metrics;
}

Metrics::PerType* Metrics::TypeLocked(absl::string_view message_type) {
  auto it = by_type_.find(message_type);
  if (it != by_type_.end()) return it->second.get();
  const std::string key = by_type_.size() < kMaxMessageTypes ? std::string(message_type) : "other";
  auto [slot, inserted] = by_type_.try_emplace(key);
  if (inserted) slot->second = std::make_unique<PerType>();
  return slot->second.get();
}

void Metrics::OnExchange(absl::string_view operation, absl::string_view message_type,
                         bool allowed, int grpc_code, absl::Duration latency) {
  const int op = OperationIndex(operation);
  const int d = allowed ? 1 : 0;
  const int code = grpc_code >= 0 && grpc_code < kCodes ? grpc_code : 2;  // 2: UNKNOWN
  prometheus::Counter* counter = nullptr;
  {
    // The usual case: the child exists; readers do not exclude each other.
    absl::ReaderMutexLock lock(&mu_);
    auto it = by_type_.find(message_type);
    if (it != by_type_.end()) counter = it->second->counters[op][d][code];
  }
  if (counter == nullptr) {
    absl::MutexLock lock(&mu_);
    PerType* t = TypeLocked(message_type);
    counter = t->counters[op][d][code];
    if (counter == nullptr) {
      // First time for this combination: the only place label strings are built.
      const std::string type_label = by_type_.contains(message_type) ? std::string(message_type) : "other";
      counter = &requests_->Add({{"operation", kOperationNames[op]},
                                 {"message_type", type_label},
                                 {"decision", kDecisionNames[d]},
                                 {"code", absl::StrCat(code)}});
      t->counters[op][d][code] = counter;
    }
  }
  counter->Increment();
  latency_[op][d]->Observe(absl::ToDoubleSeconds(latency));
}

void Metrics::OnReload(bool succeeded) {
  (succeeded ? reloads_succeeded_ : reloads_failed_)->Increment();
}

void Metrics::SetCertificateExpiry(const std::string& role, const std::string& file,
                                   double seconds) {
  certificate_expiry_->Add({{"role", role}, {"file", file}}).Set(seconds);
}

void Metrics::SetServing(bool serving) { serving_->Set(serving ? 1 : 0); }

void Metrics::OnDeliveryAttempt(int grpc_code) {
  const int code = grpc_code >= 0 && grpc_code < kCodes ? grpc_code : 2;
  delivery_attempts_[static_cast<size_t>(code)]->Increment();
}

void Metrics::OnAuditWrite(absl::Duration enqueue_to_durable, bool ok) {
  audit_write_[ok ? 1 : 0]->Observe(absl::ToDoubleSeconds(enqueue_to_durable));
}

void Metrics::SetPeerCertificateExpiry(const std::string& role, const std::string& oin,
                                       double seconds) {
  peer_certificate_expiry_->Add({{"role", role}, {"oin", oin}}).Set(seconds);
}

void Metrics::OnPeerConnectionsLimited(int n) {
  if (n > 0) peer_connections_limited_->Increment(n);
}

void Metrics::SetQueue(uint64_t messages, uint64_t bytes, absl::Duration oldest_age) {
  queue_messages_->Set(static_cast<double>(messages));
  queue_bytes_->Set(static_cast<double>(bytes));
  queue_oldest_age_->Set(absl::ToDoubleSeconds(std::max(oldest_age, absl::ZeroDuration())));
}

}  // namespace knooppunt::observability
