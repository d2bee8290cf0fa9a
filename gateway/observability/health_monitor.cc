#include "gateway/observability/health_monitor.h"

#include "absl/strings/str_cat.h"
#include "gateway/common/log.h"

namespace knooppunt::observability {

HealthMonitor::HealthMonitor(grpc::HealthCheckServiceInterface* health,
                             std::vector<std::string> services, std::vector<HealthProbe> probes,
                             Metrics* metrics, absl::Duration interval)
    : health_(health),
      services_(std::move(services)),
      probes_(std::move(probes)),
      metrics_(metrics) {
  Evaluate();
  thread_ = std::thread([this, interval] {
    while (!stop_.WaitForNotificationWithTimeout(interval)) Evaluate();
  });
}

HealthMonitor::~HealthMonitor() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void HealthMonitor::BeginShutdown() {
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  Evaluate();
}

void HealthMonitor::Evaluate() {
  std::string reason;
  {
    absl::MutexLock lock(&mu_);
    if (shutting_down_) reason = "shutdown: shutting down";
  }
  if (reason.empty()) {
    for (const HealthProbe& p : probes_) {
      absl::Status s = p.probe();
      if (!s.ok()) {
        reason = absl::StrCat(p.name, ": ", s.message());
        break;
      }
    }
  }
  const int serving = reason.empty() ? 1 : 0;
  absl::MutexLock lock(&mu_);
  if (serving == last_ && reason == last_reason_) return;
  if (serving != last_) {
    health_->SetServingStatus("", serving == 1);
    for (const std::string& service : services_) health_->SetServingStatus(service, serving == 1);
    if (metrics_ != nullptr) metrics_->SetServing(serving == 1);
  }
  Log(serving == 1 ? LogLevel::kInfo : LogLevel::kWarning, "health_changed",
      {{"status", serving == 1 ? "SERVING" : "NOT_SERVING"}, {"reason", reason}});
  last_ = serving;
  last_reason_ = reason;
}

}  // namespace knooppunt::observability
