// Expiry of the peers' certificates: the client certificates organisations authenticate with
// and the certificates endpoints present when the gateway forwards to them. (The gateway's own
// configured files are watched by certificate_watch.h.)
//
// Guarantees:
//  - OnPeerCertificate() is called once per certificate first seen (authentication caches per
//    certificate) or per handshake (endpoints), never per call; it parses the certificate's
//    notAfter once and keeps, per (role, OIN), the certificate that expires LAST — so when an
//    organisation renews, its warning clears as soon as the new certificate is used, and a
//    second, older certificate still in use does not hide a renewal.
//  - Refresh(now) (on the health checker's 1 s tick) sets
//    knooppunt_peer_certificate_expiry_seconds{role,oin} for every pair seen, and logs a JSON
//    warning "peer_certificate_expiring" once per certificate (per role, OIN and notAfter)
//    when it expires within `warning` (tls.expiry_warning), an error
//    "peer_certificate_expired" once when it has expired.
//  - Memory is bounded: at most kMaxPeers (role, OIN) pairs are tracked; certificates of
//    further pairs are ignored (logged once, "peer_certificates_full").
// Thread-safe.
#ifndef KNOOPPUNT_GATEWAY_OBSERVABILITY_PEER_CERTIFICATES_H_
#define KNOOPPUNT_GATEWAY_OBSERVABILITY_PEER_CERTIFICATES_H_

#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/observability/metrics.h"
#include "gateway/observability/metrics_sink.h"

namespace knooppunt::observability {

class PeerCertificateExpiry final : public PeerCertificateSink {
 public:
  static constexpr size_t kMaxPeers = 10000;

  // `metrics` may be null (then only the log); not owned, must outlive this object.
  PeerCertificateExpiry(absl::Duration warning, Metrics* metrics)
      : warning_(warning), metrics_(metrics) {}

  void OnPeerCertificate(absl::string_view role, absl::string_view oin,
                         absl::string_view certificate_pem) override;

  void Refresh(absl::Time now);

  // The notAfter tracked for (role, oin); InfinitePast() when none.
  absl::Time NotAfter(absl::string_view role, absl::string_view oin) const;

 private:
  struct Peer {
    absl::Time not_after = absl::InfinitePast();
    std::string logged;  // state last logged: "warning:<notAfter>", "expired:<notAfter>"
  };
  const absl::Duration warning_;
  Metrics* const metrics_;
  mutable absl::Mutex mu_;
  // (role, oin) -> the certificate that expires last among those seen.
  absl::flat_hash_map<std::pair<std::string, std::string>, Peer> peers_ ABSL_GUARDED_BY(mu_);
  bool full_logged_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace knooppunt::observability

#endif  // KNOOPPUNT_GATEWAY_OBSERVABILITY_PEER_CERTIFICATES_H_
