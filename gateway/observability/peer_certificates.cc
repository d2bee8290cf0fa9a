#include "gateway/observability/peer_certificates.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "gateway/common/log.h"
#include "gateway/observability/certificate_watch.h"

namespace knooppunt::observability {

void PeerCertificateExpiry::OnPeerCertificate(absl::string_view role, absl::string_view oin,
                                              absl::string_view certificate_pem) {
  absl::StatusOr<absl::Time> not_after = EarliestCertificateExpiryPem(certificate_pem);
  if (!not_after.ok()) return;  // the TLS layer verified it; nothing to track otherwise
  absl::MutexLock lock(&mu_);
  auto key = std::make_pair(std::string(role), std::string(oin));
  auto it = peers_.find(key);
  if (it == peers_.end()) {
    if (peers_.size() >= kMaxPeers) {
      if (!full_logged_) {
        full_logged_ = true;
        Log(LogLevel::kWarning, "peer_certificates_full",
            {{"tracked", absl::StrCat(peers_.size())}});
      }
      return;
    }
    it = peers_.emplace(std::move(key), Peer{}).first;
  }
  if (*not_after > it->second.not_after) it->second.not_after = *not_after;
}

void PeerCertificateExpiry::Refresh(absl::Time now) {
  struct Line {
    std::string role, oin, event;
    absl::Time not_after;
    bool expired;
  };
  std::vector<Line> to_log;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, peer] : peers_) {
      if (metrics_ != nullptr) {
        metrics_->SetPeerCertificateExpiry(key.first, key.second,
                                           absl::ToDoubleSeconds(peer.not_after - now));
      }
      const ExpiryStanding standing = StandingAt(peer.not_after, now, warning_);
      if (standing.state == peer.logged) continue;
      peer.logged = standing.state;
      if (standing.state.empty()) continue;
      to_log.push_back({key.first, key.second,
                        standing.expired ? "peer_certificate_expired" : "peer_certificate_expiring",
                        peer.not_after, standing.expired});
    }
  }
  for (const Line& l : to_log) {
    Log(l.expired ? LogLevel::kError : LogLevel::kWarning, l.event,
        {{"role", l.role},
         {"oin", l.oin},
         {"not_after", absl::FormatTime(absl::RFC3339_sec, l.not_after, absl::UTCTimeZone())},
         {"days_left", absl::StrCat(absl::ToInt64Hours(l.not_after - now) / 24)}});
  }
}

absl::Time PeerCertificateExpiry::NotAfter(absl::string_view role, absl::string_view oin) const {
  absl::MutexLock lock(&mu_);
  auto it = peers_.find(std::make_pair(std::string(role), std::string(oin)));
  return it == peers_.end() ? absl::InfinitePast() : it->second.not_after;
}

}  // namespace knooppunt::observability
