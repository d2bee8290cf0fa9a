// Expiry of the certificate files the gateway is configured with (its server and upstream
// certificates, its CA bundles).
//
// Guarantees: Check() re-reads every file, sets knooppunt_certificate_expiry_seconds per file
// (the earliest notAfter in a bundle), logs a JSON warning "certificate_expiring" (once per
// file and notAfter) when a certificate expires within `warning`, and "certificate_expired" /
// "certificate_unreadable" errors; it returns an error when a file whose `required` is set
// (the gateway's own server certificate) is unreadable or expired — health then reports
// NOT_SERVING.
#ifndef KNOOPPUNT_GATEWAY_OBSERVABILITY_CERTIFICATE_WATCH_H_
#define KNOOPPUNT_GATEWAY_OBSERVABILITY_CERTIFICATE_WATCH_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/observability/metrics.h"

namespace knooppunt::observability {

// The earliest notAfter among the PEM certificates in `file`; an error when it holds none.
absl::StatusOr<absl::Time> EarliestCertificateExpiry(const std::string& file);
// The same for PEM text already in memory (e.g. a peer's certificate).
absl::StatusOr<absl::Time> EarliestCertificateExpiryPem(absl::string_view pem);

// Where a certificate expiring at `expiry` stands at `now` against the warning window, as
// both watches (this one and peer_certificates.h) log it: `state` is empty (nothing to say),
// "warning:<notAfter unix>" or "expired:<notAfter unix>"; a state is logged once.
struct ExpiryStanding {
  std::string state;
  bool expired = false;
};
ExpiryStanding StandingAt(absl::Time expiry, absl::Time now, absl::Duration warning);

struct WatchedCertificate {
  std::string role;  // "server", "server_ca", "upstream", "upstream_ca"
  std::string file;
  bool required = false;  // unreadable or expired makes the gateway unhealthy
};

class CertificateWatch {
 public:
  CertificateWatch(std::vector<WatchedCertificate> files, absl::Duration warning,
                   Metrics* metrics)
      : files_(std::move(files)), warning_(warning), metrics_(metrics) {}

  absl::Status Check(absl::Time now);

 private:
  const std::vector<WatchedCertificate> files_;
  const absl::Duration warning_;
  Metrics* const metrics_;
  absl::Mutex mu_;
  // file -> state last logged ("warning:<notAfter>", "expired:...", "unreadable")
  absl::flat_hash_map<std::string, std::string> logged_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knooppunt::observability

#endif  // KNOOPPUNT_GATEWAY_OBSERVABILITY_CERTIFICATE_WATCH_H_
