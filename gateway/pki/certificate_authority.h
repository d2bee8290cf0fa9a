// An operator's certificate authority for Knooppunt: create it, issue organisation and
// gateway certificates, renew, revoke (regenerating the CRL), and list what was issued.
// Certificates follow the profile in gateway/pki/x509_profile.h (the same as the dev PKI);
// OpenSSL is used as a library.
//
// CA directory layout (everything the CA knows lives here; back it up, keep it offline):
//   ca.key                  CA private key, PKCS#8 PEM, mode 0600 (Open refuses a wider mode)
//   ca.crt                  CA certificate; configure it as the gateway's tls.client_ca_file
//                           (together with any external roots, e.g. PKIoverheid)
//   state.txt               next serial, CRL number, one line per issued certificate
//                           (gateway/pki/ca_state.h)
//   issued/<SERIAL>.crt     every certificate issued, by serial (upper-case hex)
//   crl.pem                 the current CRL
//   crl/<issuer-hash>.r0    the same CRL, for the gateway's tls.crl_directory (gRPC looks
//                           CRLs up by issuer subject hash, as `openssl x509 -hash` prints it)
//
// Guarantees:
// - Input is validated before anything is generated or written: a bad OIN, name, DNS name,
//   IP address, reason, serial or validity is InvalidArgument naming the CLI flag.
// - Operations that change the CA hold an exclusive lock on the directory and re-read
//   state.txt under it, so concurrent runs cannot hand out one serial twice.
// - Every file is replaced atomically (pki_files.h): readers never see half a CRL.
// - A revocation is in the CRL files before it is recorded in state.txt and before Revoke
//   returns OK; a failure in between is reported, and repeating the revocation completes it.
// - Leaf private keys are returned to the caller and never stored in the CA directory.
// - A certificate never outlives the CA certificate (FailedPrecondition otherwise).
#ifndef KNOOPPUNT_GATEWAY_PKI_CERTIFICATE_AUTHORITY_H_
#define KNOOPPUNT_GATEWAY_PKI_CERTIFICATE_AUTHORITY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gateway/pki/ca_state.h"

namespace knooppunt::pki {

struct CaOptions {
  // The current time; tests inject a fixed clock.
  std::function<absl::Time()> clock = [] { return absl::Now(); };
  // How long each CRL is valid (its nextUpdate). Regenerate it (RegenerateCrl, or
  // `knooppunt-pki crl`) well before then: the gateway rejects peers when the CRL expired.
  absl::Duration crl_validity = absl::Hours(24 * 30);
};

struct InitRequest {
  std::string ca_dir;        // created (with parents) if absent; must be empty if present
  std::string name;          // CN of the CA
  std::string organisation;  // O of the CA; empty: same as name
  int days = 3650;           // validity, 1..36500
};

struct IssueRequest {
  CertificateKind kind = CertificateKind::kOrganisation;
  std::string oin;           // 20 digits; the subject serialNumber
  std::string organisation;  // O
  std::string common_name;   // CN
  std::vector<std::string> dns_names;  // subjectAltName; the gateway kind needs a DNS or IP
  std::vector<std::string> ip_addresses;
  int days = 365;            // validity, 1..3650
};

struct RenewRequest {
  // The certificate to renew: by serial, or (when serial is unset) as PEM. Either way it
  // must have been issued by this CA and not be revoked.
  std::optional<uint64_t> serial;
  std::string certificate_pem;
  // Certify the same public key again (the holder keeps using its key file); otherwise a
  // new key pair is made and returned.
  bool keep_key = false;
  // Validity of the new certificate; 0: as long as the one renewed.
  int days = 0;
};

struct IssuedCertificate {
  CertificateRecord record;
  std::string certificate_pem;
  std::string private_key_pem;  // empty when a renewal kept the key
};

enum class CertificateStatus { kValid, kExpiring, kExpired, kRevoked };
absl::string_view CertificateStatusName(CertificateStatus status);  // VALID, EXPIRING, ...

// Revoked wins over expired; expiring means not_after is within `warn` of now.
CertificateStatus StatusAt(const CertificateRecord& record, absl::Time now, absl::Duration warn);
// Whole days until not_after (rounded down; negative once expired).
int64_t DaysLeft(absl::Time not_after, absl::Time now);

class CertificateAuthority {
 public:
  // Creates a new CA (key, self-signed certificate, empty CRL, state) in request.ca_dir.
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Init(const InitRequest& request,
                                                                    CaOptions options = {});
  // Opens an existing CA directory (NotFound / FailedPrecondition with what is missing).
  static absl::StatusOr<std::unique_ptr<CertificateAuthority>> Open(const std::string& ca_dir,
                                                                    CaOptions options = {});
  ~CertificateAuthority();
  CertificateAuthority(const CertificateAuthority&) = delete;
  CertificateAuthority& operator=(const CertificateAuthority&) = delete;

  absl::StatusOr<IssuedCertificate> Issue(const IssueRequest& request);
  // A new certificate (new serial) with the same subject, SANs and kind.
  absl::StatusOr<IssuedCertificate> Renew(const RenewRequest& request);
  // Marks the certificate revoked and regenerates the CRL. NotFound for a serial this CA
  // never issued, FailedPrecondition when it is already revoked.
  absl::StatusOr<CertificateRecord> Revoke(uint64_t serial, RevocationReason reason);
  // Signs a fresh CRL (new number, nextUpdate = now + crl_validity) with the same entries.
  absl::Status RegenerateCrl();
  // The state as it is on disk now.
  absl::StatusOr<CaState> State() const;

  const std::string& ca_dir() const;
  const std::string& ca_certificate_pem() const;
  std::string ca_subject() const;  // one line, RFC 2253
  absl::Time ca_not_after() const;
  std::string crl_path() const;       // <ca_dir>/crl.pem
  std::string crl_directory() const;  // <ca_dir>/crl
  std::string crl_hash_path() const;  // <ca_dir>/crl/<issuer-hash>.r0
  std::string IssuedPath(uint64_t serial) const;

 private:
  struct Impl;
  explicit CertificateAuthority(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace knooppunt::pki

#endif  // KNOOPPUNT_GATEWAY_PKI_CERTIFICATE_AUTHORITY_H_
