// Step 2 of a message's path: authenticate. Who is calling, as proven by mTLS.
//
// Guarantees: an OIN is returned only when the peer presented a certificate that the TLS
// layer verified against the configured trust roots (the server requires and verifies client
// certificates, so an unverified peer never reaches this code), and the certificate's subject
// holds exactly one serialNumber attribute (OID 2.5.4.5) of exactly 20 digits. Anything else
// is UNAUTHENTICATED, with a reason that names no certificate contents beyond the attribute.
// With SetRevocation(), a certificate that a loaded CRL revokes is UNAUTHENTICATED on every
// call, including calls on connections made before it was revoked (gateway/identity/crl_watcher).
// With SetCertificateSink(), every certificate that yields an OIN is reported to the sink the
// first time it is seen (not per call: results are cached per certificate), for the
// organisations' certificate expiry (gateway/observability/peer_certificates).
#ifndef KNOOPPUNT_GATEWAY_IDENTITY_PEER_IDENTITY_H_
#define KNOOPPUNT_GATEWAY_IDENTITY_PEER_IDENTITY_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/observability/metrics_sink.h"
#include "grpcpp/security/auth_context.h"

namespace knooppunt::identity {

class CrlWatcher;

// Extracts the OIN from one PEM-encoded X.509 certificate.
absl::StatusOr<std::string> OinFromCertificatePem(absl::string_view pem);

// Reads the peer certificate from a call's auth context (property "x509_pem_cert") and
// returns its OIN. Results are cached per certificate, so repeated calls on one connection
// parse the certificate once.
class PeerAuthenticator {
 public:
  PeerAuthenticator();
  ~PeerAuthenticator();
  PeerAuthenticator(const PeerAuthenticator&) = delete;
  PeerAuthenticator& operator=(const PeerAuthenticator&) = delete;

  absl::StatusOr<std::string> Authenticate(const grpc::AuthContext& auth) const;

  // Consult `crls` on every call from now on (set before serving; must outlive this).
  void SetRevocation(const CrlWatcher* crls) { crls_ = crls; }
  // Report each newly seen certificate with a usable OIN to `sink` as role "organisation"
  // (set before serving; must outlive this).
  void SetCertificateSink(observability::PeerCertificateSink* sink) { sink_ = sink; }

 private:
  class Cache;
  std::unique_ptr<Cache> cache_;
  const CrlWatcher* crls_ = nullptr;
  observability::PeerCertificateSink* sink_ = nullptr;
};

}  // namespace knooppunt::identity

#endif  // KNOOPPUNT_GATEWAY_IDENTITY_PEER_IDENTITY_H_
