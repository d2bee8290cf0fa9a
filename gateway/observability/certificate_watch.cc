#include "gateway/observability/certificate_watch.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <ctime>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/log.h"

namespace knooppunt::observability {

namespace {

// The earliest notAfter of the PEM certificates readable from `bio` (consumed and freed).
absl::StatusOr<absl::Time> EarliestFromBio(BIO* bio, absl::string_view what) {
  bool found = false;
  absl::Time earliest = absl::InfiniteFuture();
  while (X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr)) {
    struct tm tm {};
    if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) {
      const absl::Time t = absl::FromTimeT(timegm(&tm));
      if (t < earliest) earliest = t;
      found = true;
    }
    X509_free(cert);
  }
  BIO_free(bio);
  if (!found) return absl::InvalidArgumentError(absl::StrCat("no certificate in ", what));
  return earliest;
}

}  // namespace

absl::StatusOr<absl::Time> EarliestCertificateExpiry(const std::string& file) {
  BIO* bio = BIO_new_file(file.c_str(), "r");
  if (bio == nullptr) return absl::NotFoundError(absl::StrCat("cannot read ", file));
  return EarliestFromBio(bio, file);
}

absl::StatusOr<absl::Time> EarliestCertificateExpiryPem(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  if (bio == nullptr) return absl::ResourceExhaustedError("out of memory reading a certificate");
  return EarliestFromBio(bio, "the PEM text");
}

ExpiryStanding StandingAt(absl::Time expiry, absl::Time now, absl::Duration warning) {
  const absl::Duration left = expiry - now;
  if (left <= absl::ZeroDuration()) {
    return {absl::StrCat("expired:", absl::ToUnixSeconds(expiry)), true};
  }
  if (left <= warning) return {absl::StrCat("warning:", absl::ToUnixSeconds(expiry)), false};
  return {};
}

absl::Status CertificateWatch::Check(absl::Time now) {
  absl::Status result = absl::OkStatus();
  for (const WatchedCertificate& w : files_) {
    if (w.file.empty()) continue;
    absl::StatusOr<absl::Time> expiry = EarliestCertificateExpiry(w.file);
    std::string state;
    LogLevel level = LogLevel::kWarning;
    std::string event;
    if (!expiry.ok()) {
      state = "unreadable";
      level = LogLevel::kError;
      event = "certificate_unreadable";
      if (w.required) result = expiry.status();
    } else {
      const absl::Duration left = *expiry - now;
      if (metrics_ != nullptr) metrics_->SetCertificateExpiry(w.role, w.file, absl::ToDoubleSeconds(left));
      const ExpiryStanding standing = StandingAt(*expiry, now, warning_);
      state = standing.state;
      if (standing.expired) {
        level = LogLevel::kError;
        event = "certificate_expired";
        if (w.required) result = absl::FailedPreconditionError(absl::StrCat(w.file, " has expired"));
      } else if (!state.empty()) {
        event = "certificate_expiring";
      }
    }
    absl::MutexLock lock(&mu_);
    std::string& logged = logged_[w.file];
    if (state == logged) continue;
    logged = state;
    if (event.empty()) continue;
    Log(level, event,
        {{"role", w.role},
         {"file", w.file},
         {"not_after", expiry.ok() ? absl::FormatTime(absl::RFC3339_sec, *expiry, absl::UTCTimeZone())
                                   : std::string()},
         {"days_left", expiry.ok() ? absl::StrCat(absl::ToInt64Hours(*expiry - now) / 24)
                                   : std::string()}});
  }
  return result;
}

}  // namespace knooppunt::observability
