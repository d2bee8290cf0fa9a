// Smoke test of the knooppunt-pki binary: init, issue, issue-gateway, list, renew, revoke, crl
// in a temporary directory, and its usage errors.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "absl/strings/str_cat.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/pki/pki_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/pki/pki_test_util.h"

namespace knooppunt::pki {
namespace {

using ::knooppunt::pki::testing::FileMode;
using ::knooppunt::pki::testing::ParseCertOrDie;
using ::knooppunt::pki::testing::ParseCrlOrDie;
using ::knooppunt::pki::testing::TempDir;
using ::knooppunt::pki::testing::VerifyError;
using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs knooppunt-pki with `args` (already shell-quoted where needed).
Result Pki(const std::string& args) {
  const std::string command = absl::StrCat(KNOOPPUNT_PKI_BIN, " ", args, " 2>&1");
  Result result;
  std::FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) result.output.append(buf, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

std::string Read(const std::string& path) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  return text.ok() ? *text : "";
}

TEST(pki_Cli, InitIssueRenewRevokeList) {
  TempDir tmp;
  const std::string ca = tmp / "ca";
  Result r = Pki(absl::StrCat("init --ca_dir=", ca, " --name='Knooppunt Operator CA' --org=Knooppunt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("CN=Knooppunt Operator CA,O=Knooppunt,C=NL"));
  EXPECT_EQ(FileMode(ca + "/ca.key"), 0600);

  r = Pki(absl::StrCat("issue --ca_dir=", ca,
                       " --oin=00000099300000000014 --org='Gemeente Groningen' --cn=groningen.example"
                       " --dns=groningen.example,localhost --ip=127.0.0.1 --days=200 --out=",
                       tmp / "groningen"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("issued serial 1000"));
  EXPECT_EQ(FileMode(tmp / "groningen.key"), 0600);
  EXPECT_EQ(FileMode(tmp / "groningen.crt"), 0644);
  const std::string groningen_pem = Read(tmp / "groningen.crt");
  EXPECT_EQ(*identity::OinFromCertificatePem(groningen_pem), "00000099300000000014");
  X509Ptr ca_cert = ParseCertOrDie(Read(ca + "/ca.crt"));
  X509Ptr groningen = ParseCertOrDie(groningen_pem);
  EXPECT_EQ(VerifyError(groningen.get(), ca_cert.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);

  r = Pki(absl::StrCat("issue-gateway --ca_dir=", ca,
                       " --oin=00000099000000000001 --org=Knooppunt --cn=gateway.example"
                       " --dns=gateway.example --out=", tmp / "gateway"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("serial 1001 (gateway)"));

  // Existing output files are not replaced, and no serial is spent on the attempt.
  r = Pki(absl::StrCat("issue --ca_dir=", ca,
                       " --oin=00000099300000000014 --org=G --cn=g --out=", tmp / "groningen"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("already exists"));
  EXPECT_EQ(Read(tmp / "groningen.crt"), groningen_pem);

  r = Pki(absl::StrCat("renew --ca_dir=", ca, " --cert=", tmp / "groningen.crt",
                       " --keep_key --out=", tmp / "groningen-2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("renewed 1000 as serial 1002"));
  EXPECT_EQ(FileMode(tmp / "groningen-2.key"), -1);  // the key is kept, not copied
  X509Ptr renewed = ParseCertOrDie(Read(tmp / "groningen-2.crt"));
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(renewed.get()), X509_get0_pubkey(groningen.get())), 1);

  r = Pki(absl::StrCat("renew --ca_dir=", ca, " --serial=1001 --out=", tmp / "gateway-2"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(FileMode(tmp / "gateway-2.key"), 0600);

  r = Pki(absl::StrCat("revoke --ca_dir=", ca, " --serial=1000 --reason=keyCompromise"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("revoked serial 1000"));
  X509CrlPtr crl = ParseCrlOrDie(Read(ca + "/crl.pem"));
  EXPECT_EQ(VerifyError(groningen.get(), ca_cert.get(), X509_PURPOSE_SSL_CLIENT, crl.get()),
            X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(VerifyError(renewed.get(), ca_cert.get(), X509_PURPOSE_SSL_CLIENT, crl.get()),
            X509_V_OK);

  r = Pki(absl::StrCat("list --ca_dir=", ca, " --warn_days=250"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("SERIAL"));
  EXPECT_THAT(r.output, HasSubstr("DAYS LEFT"));
  EXPECT_THAT(r.output, HasSubstr("00000099300000000014"));
  EXPECT_THAT(r.output, HasSubstr("groningen.example"));
  EXPECT_THAT(r.output, HasSubstr("REVOKED"));
  EXPECT_THAT(r.output, HasSubstr("keyCompromise"));
  EXPECT_THAT(r.output, HasSubstr("EXPIRING"));  // 200 days left, warned at 250
  EXPECT_THAT(r.output, HasSubstr("renews 1000"));
  EXPECT_THAT(r.output, HasSubstr("gateway"));

  r = Pki(absl::StrCat("crl --ca_dir=", ca));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("CRL 3 signed"));
}

TEST(pki_Cli, ErrorsAndUsage) {
  TempDir tmp;
  const std::string ca = tmp / "ca";
  ASSERT_EQ(Pki(absl::StrCat("init --ca_dir=", ca, " --name=CA")).exit_code, 0);

  Result r = Pki(absl::StrCat("issue --ca_dir=", ca,
                              " --oin=0000009930000000001 --org=G --cn=g --out=", tmp / "x"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("--oin must be exactly 20 digits"));
  EXPECT_EQ(FileMode(tmp / "x.key"), -1);

  r = Pki(absl::StrCat("issue --ca_dir=", ca, " --oin=00000099300000000014 --org=G --cn=g --out=",
                       tmp / "no-such-dir/x"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("does not exist"));

  r = Pki(absl::StrCat("list --ca_dir=", tmp / "missing"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("does not exist"));

  r = Pki(absl::StrCat("revoke --ca_dir=", ca, " --serial=ABCD"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, HasSubstr("no certificate with that serial"));

  r = Pki(absl::StrCat("revoke --ca_dir=", ca, " --serial=1000 --reason=certificateHold"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--reason"));

  r = Pki(absl::StrCat("list --ca_dir=", ca));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no certificates issued yet"));  // Failed attempts spent no serial.
  EXPECT_THAT(Read(ca + "/state.txt"), HasSubstr("next_serial\t1000\n"));
  EXPECT_THAT(r.output, Not(HasSubstr("EXPIRING")));

  EXPECT_EQ(Pki("").exit_code, 2);
  r = Pki(absl::StrCat("frobnicate --ca_dir=", ca));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("unknown command"));
  r = Pki(absl::StrCat("issue --ca_dir=", ca, " --keep_key"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--keep_key does not apply to `issue`"));
  r = Pki("list");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--ca_dir is required"));
  r = Pki(absl::StrCat("issue --ca_dir=", ca, " --oin=00000099300000000014 --org=G --cn=g"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--out is required"));
  r = Pki(absl::StrCat("renew --ca_dir=", ca, " --out=", tmp / "y"));
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("exactly one of --cert and --serial"));
}

}  // namespace
}  // namespace knooppunt::pki
