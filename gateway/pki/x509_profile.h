// The Knooppunt certificate profile, built with OpenSSL as a library (nothing is shelled out).
// The same profile as tools/dev-pki.sh and certs/README.md:
//
//   keys        EC P-256, signatures ECDSA with SHA-256, X.509 v3
//   subject     C=NL, O=<organisation>, CN=<common name>[, serialNumber=<OIN>]
//               (exactly one serialNumber, 20 digits, PrintableString; O and CN UTF8String)
//   CA          basicConstraints critical CA:TRUE; keyUsage critical keyCertSign, cRLSign;
//               subjectKeyIdentifier; authorityKeyIdentifier keyid
//   leaf        basicConstraints critical CA:FALSE; keyUsage critical digitalSignature;
//               extendedKeyUsage serverAuth, clientAuth; subjectAltName (DNS, IP) when given;
//               subjectKeyIdentifier; authorityKeyIdentifier keyid
//   CRL         v2, crlNumber, authorityKeyIdentifier, a reasonCode per entry (absent for
//               unspecified, as RFC 5280 recommends)
//
// Guarantees: every builder validates its input and returns InvalidArgument naming the
// command-line flag the value came from, before any key or signature is made; nothing is
// signed with a subject or SAN the gateway could not read.
#ifndef KNOOPPUNT_GATEWAY_PKI_X509_PROFILE_H_
#define KNOOPPUNT_GATEWAY_PKI_X509_PROFILE_H_

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace knooppunt::pki {

struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509CrlFree {
  void operator()(X509_CRL* p) const { X509_CRL_free(p); }
};
struct X509NameFree {
  void operator()(X509_NAME* p) const { X509_NAME_free(p); }
};
struct GeneralNamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using X509CrlPtr = std::unique_ptr<X509_CRL, X509CrlFree>;
using X509NamePtr = std::unique_ptr<X509_NAME, X509NameFree>;
using GeneralNamesPtr = std::unique_ptr<GENERAL_NAMES, GeneralNamesFree>;

// The OpenSSL error queue as text (and cleared), for messages.
std::string OpenSslErrors();

// A new EC P-256 key pair.
absl::StatusOr<EvpPkeyPtr> NewP256Key();

// PEM encodings. `what` names the input in error messages (e.g. a file name).
absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key);  // PKCS#8, unencrypted
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem, absl::string_view what);
absl::StatusOr<std::string> CertificateToPem(X509* cert);
absl::StatusOr<X509Ptr> CertificateFromPem(absl::string_view pem, absl::string_view what);
absl::StatusOr<std::string> CrlToPem(X509_CRL* crl);

// Checks one organisation / common-name value: non-empty, at most 64 characters (the X.520
// upper bound), valid UTF-8, no control characters. `flag` names it in the error.
absl::Status CheckNameValue(absl::string_view value, absl::string_view flag);

// C=NL, O=organisation, CN=common_name and, when oin is not empty, serialNumber=oin.
// The OIN must be exactly 20 digits (InvalidArgument naming --oin otherwise).
absl::StatusOr<X509NamePtr> MakeSubject(absl::string_view organisation,
                                        absl::string_view common_name, absl::string_view oin);

// subjectAltName entries: DNS names (letters, digits, '-', dots, optionally a leading "*.")
// and IPv4/IPv6 addresses. Both lists empty gives nullptr (no extension).
absl::StatusOr<GeneralNamesPtr> MakeSubjectAltNames(const std::vector<std::string>& dns_names,
                                                    const std::vector<std::string>& ips);

// A self-signed CA certificate for `key`.
absl::StatusOr<X509Ptr> SignCaCertificate(const X509_NAME* subject, EVP_PKEY* key,
                                          uint64_t serial, absl::Time not_before,
                                          absl::Time not_after);

// A leaf (organisation or gateway) certificate for `subject_key` (only its public half is
// used), signed by the CA.
absl::StatusOr<X509Ptr> SignLeafCertificate(const X509_NAME* subject, const GENERAL_NAMES* san,
                                            EVP_PKEY* subject_key, uint64_t serial,
                                            absl::Time not_before, absl::Time not_after,
                                            X509* ca_cert, EVP_PKEY* ca_key);

struct RevokedEntry {
  uint64_t serial = 0;
  absl::Time revoked_at;
  int reason_code = 0;  // CRLReason (RFC 5280 5.3.1); 0 = unspecified
};

absl::StatusOr<X509CrlPtr> SignCrl(X509* ca_cert, EVP_PKEY* ca_key,
                                   const std::vector<RevokedEntry>& revoked, uint64_t crl_number,
                                   absl::Time this_update, absl::Time next_update);

// The subject-name hash as 8 lower-case hex digits, as `openssl x509 -hash` prints it and as
// gRPC's crl_directory looks CRLs up (<hash>.r0).
std::string SubjectHashHex(X509* cert);

// Certificate fields as read back.
absl::StatusOr<uint64_t> SerialOf(X509* cert);
absl::StatusOr<absl::Time> NotBeforeOf(X509* cert);
absl::StatusOr<absl::Time> NotAfterOf(X509* cert);
// The first value of `nid` in the subject, or "" when absent.
std::string SubjectEntry(X509* cert, int nid);

// True when `cert` names `ca` as issuer and its signature verifies with ca's key.
bool IssuedBy(X509* cert, X509* ca);

}  // namespace knooppunt::pki

#endif  // KNOOPPUNT_GATEWAY_PKI_X509_PROFILE_H_
