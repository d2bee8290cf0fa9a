// Revocation in the gateway itself: the CRLs in a directory, reloaded while the gateway runs.
//
// gRPC's own crl_directory check (OpenSSL's hash-dir lookup) loads a CRL file once and does
// not see it replaced under the same name, so on its own a revocation would wait for a
// restart. CrlWatcher closes that gap.
//
// Guarantees:
//  - Every regular file in the directory is read as one or more CRLs (PEM, or one DER CRL);
//    the set of revoked (issuer, serial) pairs is replaced atomically when any file's name or
//    contents changed, checked every `interval` (1 s in the gateway). A file
//    that does not parse is logged (crl_unreadable) and skipped; the others still apply.
//  - A CRL counts only when its signature verifies against one of the trust roots given
//    (the gateway's client CA file): nobody can revoke with a CRL the CA did not sign.
//  - IsRevoked() is cheap (one hash lookup under a shared lock) and safe from any thread, so
//    it is asked on every handshake (gateway/tls) and every call (PeerAuthenticator).
//  - After every swap, the function given to SetOnChange() runs on the watcher thread (the
//    gateway closes the connections of newly revoked clients, identity/connection_registry).
// Revocation only adds refusals: when the directory cannot be read, the last set stays.
#ifndef KNOOPPUNT_GATEWAY_IDENTITY_CRL_WATCHER_H_
#define KNOOPPUNT_GATEWAY_IDENTITY_CRL_WATCHER_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace knooppunt::identity {

// Key of one certificate in the revoked set: DER of the issuer name + ":" + serial (hex).
// Empty when the PEM does not parse.
std::string RevocationKeyOfPem(absl::string_view certificate_pem);

class CrlWatcher {
 public:
  // Loads the directory once (fails when it cannot be read or a trust root file is
  // unreadable), then watches it from a thread of its own.
  static absl::StatusOr<std::unique_ptr<CrlWatcher>> Start(std::string directory,
                                                           std::string trust_roots_file,
                                                           absl::Duration interval);
  ~CrlWatcher();
  CrlWatcher(const CrlWatcher&) = delete;
  CrlWatcher& operator=(const CrlWatcher&) = delete;

  bool IsRevoked(absl::string_view revocation_key) const;
  bool IsRevokedPem(absl::string_view certificate_pem) const {
    return IsRevoked(RevocationKeyOfPem(certificate_pem));
  }
  size_t revoked_count() const;
  // Runs `on_change` after each new set is in force (must not block for long). Once this
  // returns, the previous function is not running and never runs again (so
  // SetOnChange(nullptr) before destroying what it points to).
  void SetOnChange(std::function<void()> on_change);

 private:
  // Loads if anything changed; Start() and then only the watcher thread call it.
  void Refresh();
  CrlWatcher(std::string directory, std::string trust_roots_pem)
      : directory_(std::move(directory)), trust_roots_pem_(std::move(trust_roots_pem)) {}
  const std::string directory_;
  const std::string trust_roots_pem_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const absl::flat_hash_set<std::string>> revoked_ ABSL_GUARDED_BY(mu_);
  absl::Mutex on_change_mu_;  // held while on_change_ runs
  std::function<void()> on_change_ ABSL_GUARDED_BY(on_change_mu_);
  // What was last loaded (names and contents); only Start() and then the watcher thread
  // touch these.
  bool loaded_ = false;
  std::string contents_;
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace knooppunt::identity

#endif  // KNOOPPUNT_GATEWAY_IDENTITY_CRL_WATCHER_H_
