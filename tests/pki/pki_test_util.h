// Helpers for the PKI tests: a temporary directory per test and X.509 verification.
#ifndef KNOOPPUNT_TESTS_PKI_PKI_TEST_UTIL_H_
#define KNOOPPUNT_TESTS_PKI_PKI_TEST_UTIL_H_

#include <openssl/x509.h>

#include <string>

#include "gateway/pki/x509_profile.h"

namespace knooppunt::pki::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

X509Ptr ParseCertOrDie(const std::string& pem);
X509CrlPtr ParseCrlOrDie(const std::string& pem);

// X509_verify_cert of `cert` against the single trusted root `ca` for `purpose`
// (X509_PURPOSE_SSL_CLIENT / X509_PURPOSE_SSL_SERVER); with a CRL, X509_V_FLAG_CRL_CHECK is
// set. Returns X509_V_OK or the verification error.
int VerifyError(X509* cert, X509* ca, int purpose, X509_CRL* crl = nullptr);

// Mode bits (07777) of a file.
int FileMode(const std::string& path);

}  // namespace knooppunt::pki::testing

#endif  // KNOOPPUNT_TESTS_PKI_PKI_TEST_UTIL_H_
