// Fuzz target: OIN extraction from a client certificate (identity/peer_identity) and the
// revocation key the CRL check uses (identity/crl_watcher). The input is a DER certificate,
// which the target wraps in PEM as gRPC hands it over, so mutations reach the X.509 subject
// rather than the base64 armour; the raw input is tried as PEM text too.
//
// Property: an OIN is returned only as exactly 20 digits.
#include <openssl/evp.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/string_view.h"
#include "gateway/common/ids.h"
#include "gateway/identity/crl_watcher.h"
#include "gateway/identity/peer_identity.h"

namespace {

std::string DerToPem(const uint8_t* der, size_t size) {
  std::string pem = "-----BEGIN CERTIFICATE-----\n";
  for (size_t off = 0; off < size; off += 48) {  // 48 bytes -> one 64-character line
    const size_t n = size - off < 48 ? size - off : 48;
    unsigned char line[65];
    const int len = EVP_EncodeBlock(line, der + off, static_cast<int>(n));
    pem.append(reinterpret_cast<const char*>(line), static_cast<size_t>(len));
    pem.push_back('\n');
  }
  pem += "-----END CERTIFICATE-----\n";
  return pem;
}

void Check(absl::string_view pem) {
  absl::StatusOr<std::string> oin = knooppunt::identity::OinFromCertificatePem(pem);
  if (oin.ok() && !knooppunt::IsValidOin(*oin)) abort();
  (void)knooppunt::identity::RevocationKeyOfPem(pem);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Check(DerToPem(data, size));
  Check(absl::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
