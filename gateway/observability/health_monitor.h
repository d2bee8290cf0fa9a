// The gateway's grpc.health.v1 status: a thread that runs the health probes every interval
// and sets gRPC's built-in health service (served on the mTLS port) accordingly.
//
// Guarantees: SERVING only while every probe passes (config loaded, gateway certificate
// readable and not expired, audit log and melding store writable — whatever probes the
// server assembles) and shutdown has not begun; after BeginShutdown() NOT_SERVING for good.
// The first evaluation happens in the constructor, so the status is right before the first
// probe is answered. Transitions are logged as JSON ("health_changed" with the failing probe).
#ifndef KNOOPPUNT_GATEWAY_OBSERVABILITY_HEALTH_MONITOR_H_
#define KNOOPPUNT_GATEWAY_OBSERVABILITY_HEALTH_MONITOR_H_

#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gateway/observability/metrics.h"
#include "grpcpp/health_check_service_interface.h"

namespace knooppunt::observability {

struct HealthProbe {
  std::string name;
  std::function<absl::Status()> probe;
};

class HealthMonitor {
 public:
  // `health` (gRPC's default service) and `metrics` must outlive this object. The status is
  // set for the server as a whole ("") and for each of `services` (full names).
  HealthMonitor(grpc::HealthCheckServiceInterface* health, std::vector<std::string> services,
                std::vector<HealthProbe> probes, Metrics* metrics, absl::Duration interval);
  ~HealthMonitor();
  HealthMonitor(const HealthMonitor&) = delete;
  HealthMonitor& operator=(const HealthMonitor&) = delete;

  void BeginShutdown();

 private:
  void Evaluate();

  grpc::HealthCheckServiceInterface* const health_;
  const std::vector<std::string> services_;
  const std::vector<HealthProbe> probes_;
  Metrics* const metrics_;
  absl::Mutex mu_;
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  int last_ ABSL_GUARDED_BY(mu_) = -1;  // -1 unknown, 0 not serving, 1 serving
  std::string last_reason_ ABSL_GUARDED_BY(mu_);
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace knooppunt::observability

#endif  // KNOOPPUNT_GATEWAY_OBSERVABILITY_HEALTH_MONITOR_H_
