#include "gateway/identity/peer_identity.h"

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "grpcpp/security/auth_context.h"
#include "gtest/gtest.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::identity {
namespace {

namespace kt = ::knooppunt::testing;
using ::knooppunt::testing::ReadPkiFile;
using ::testing::HasSubstr;
using ::testing::Not;

// The base64 body lines of a PEM block, long enough to be recognisable.
std::vector<std::string> PemBodyLines(const std::string& pem) {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(pem, '\n')) {
    if (line.size() >= 16 && line[0] != '-') lines.emplace_back(line);
  }
  return lines;
}

// The error must not echo the rest of the certificate: subject names, DNS names, PEM body.
void ExpectNoCertificateContents(const absl::Status& status, const std::string& pem,
                                 absl::string_view stem) {
  const std::string message(status.message());
  EXPECT_THAT(message, Not(HasSubstr("knooppunt.test")));
  EXPECT_THAT(message, Not(HasSubstr(std::string(stem) + ".")));
  EXPECT_THAT(message, Not(HasSubstr("Knooppunt test")));
  EXPECT_THAT(message, Not(HasSubstr("Gemeente")));
  EXPECT_THAT(message, Not(HasSubstr("localhost")));
  EXPECT_THAT(message, Not(HasSubstr("127.0.0.1")));
  EXPECT_THAT(message, Not(HasSubstr("BEGIN")));
  for (const std::string& line : PemBodyLines(pem)) {
    EXPECT_THAT(message, Not(HasSubstr(line.substr(0, 16))));
  }
}

TEST(OinFromCertificatePem, PartyCertificatesYieldTheirOin) {
  EXPECT_EQ(*OinFromCertificatePem(ReadPkiFile("groningen.crt")), kt::kGroningenOin);
  EXPECT_EQ(*OinFromCertificatePem(ReadPkiFile("zaanstad.crt")), kt::kZaanstadOin);
  EXPECT_EQ(*OinFromCertificatePem(ReadPkiFile("brp.crt")), kt::kBrpOin);
  EXPECT_EQ(*OinFromCertificatePem(ReadPkiFile("gateway.crt")), kt::kGatewayOin);
}

TEST(OinFromCertificatePem, NoSerialNumberIsUnauthenticated) {
  const std::string pem = ReadPkiFile("no-oin.crt");
  absl::StatusOr<std::string> oin = OinFromCertificatePem(pem);
  ASSERT_FALSE(oin.ok());
  EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(oin.status().message(), HasSubstr("no serialNumber"));
  ExpectNoCertificateContents(oin.status(), pem, "no-oin");
}

TEST(OinFromCertificatePem, TwoSerialNumbersIsUnauthenticated) {
  const std::string pem = ReadPkiFile("two-oins.crt");
  absl::StatusOr<std::string> oin = OinFromCertificatePem(pem);
  ASSERT_FALSE(oin.ok());
  EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(oin.status().message(), HasSubstr("more than one serialNumber"));
  // Neither candidate identity is picked, nor echoed.
  EXPECT_THAT(oin.status().message(), Not(HasSubstr(std::string(kt::kGroningenOin))));
  EXPECT_THAT(oin.status().message(), Not(HasSubstr(std::string(kt::kZaanstadOin))));
  ExpectNoCertificateContents(oin.status(), pem, "two-oins");
}

TEST(OinFromCertificatePem, MalformedSerialNumberIsUnauthenticated) {
  const std::string pem = ReadPkiFile("bad-oin.crt");
  absl::StatusOr<std::string> oin = OinFromCertificatePem(pem);
  ASSERT_FALSE(oin.ok());
  EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(oin.status().message(), HasSubstr("not 20 digits"));
  ExpectNoCertificateContents(oin.status(), pem, "bad-oin");
}

TEST(OinFromCertificatePem, EmptyIsUnauthenticated) {
  absl::StatusOr<std::string> oin = OinFromCertificatePem("");
  ASSERT_FALSE(oin.ok());
  EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(oin.status().message(), HasSubstr("no client certificate"));
}

TEST(OinFromCertificatePem, GarbageIsUnauthenticated) {
  for (const std::string& garbage : std::vector<std::string>{
           "not a certificate",
           "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
           "-----BEGIN CERTIFICATE-----\n",
           std::string("\0\0\0\0", 4),
       }) {
    absl::StatusOr<std::string> oin = OinFromCertificatePem(garbage);
    ASSERT_FALSE(oin.ok()) << garbage;
    EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated) << garbage;
    EXPECT_THAT(oin.status().message(), Not(HasSubstr("AAAA")));
  }
}

TEST(OinFromCertificatePem, TruncatedCertificateIsUnauthenticated) {
  const std::string pem = ReadPkiFile("groningen.crt");
  absl::StatusOr<std::string> oin = OinFromCertificatePem(pem.substr(0, pem.size() / 2));
  ASSERT_FALSE(oin.ok());
  EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
  ExpectNoCertificateContents(oin.status(), pem, "groningen");
}

TEST(OinFromCertificatePem, PrivateKeyIsNotACertificate) {
  const std::string pem = ReadPkiFile("groningen.key");
  absl::StatusOr<std::string> oin = OinFromCertificatePem(pem);
  ASSERT_FALSE(oin.ok());
  EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
  ExpectNoCertificateContents(oin.status(), pem, "groningen");
}

// Chain verification is the TLS layer's job (the server requires and verifies client
// certificates before this code runs); the extraction itself only reads the subject. A
// certificate from another CA therefore still parses: this documents that split.
TEST(OinFromCertificatePem, DoesNotItselfVerifyTheIssuer) {
  EXPECT_EQ(*OinFromCertificatePem(ReadPkiFile("foreign.crt")), kt::kGroningenOin);
}

// A hand-made auth context: only FindPropertyValues matters to PeerAuthenticator.
class FakeAuthContext : public grpc::AuthContext {
 public:
  void Add(const std::string& name, std::string value) {
    values_.emplace(name, std::move(value));
  }

  bool IsPeerAuthenticated() const override { return !values_.empty(); }
  std::vector<grpc::string_ref> GetPeerIdentity() const override { return {}; }
  std::string GetPeerIdentityPropertyName() const override { return ""; }
  std::vector<grpc::string_ref> FindPropertyValues(const std::string& name) const override {
    std::vector<grpc::string_ref> out;
    auto range = values_.equal_range(name);
    for (auto it = range.first; it != range.second; ++it) {
      out.emplace_back(it->second.data(), it->second.size());
    }
    return out;
  }
  grpc::AuthPropertyIterator begin() const override { return EmptyIterator(); }
  grpc::AuthPropertyIterator end() const override { return EmptyIterator(); }
  void AddProperty(const std::string& key, const grpc::string_ref& value) override {
    Add(key, std::string(value.data(), value.size()));
  }
  bool SetPeerIdentityPropertyName(const std::string&) override { return false; }

 private:
  struct EmptyIterator : grpc::AuthPropertyIterator {};
  std::multimap<std::string, std::string> values_;
};

TEST(PeerAuthenticator, ReturnsOinOfPeerCertificate) {
  PeerAuthenticator authenticator;
  FakeAuthContext auth;
  auth.Add("x509_pem_cert", ReadPkiFile("groningen.crt"));
  for (int i = 0; i < 3; ++i) {  // the second and third call come from the cache
    absl::StatusOr<std::string> oin = authenticator.Authenticate(auth);
    ASSERT_TRUE(oin.ok()) << oin.status();
    EXPECT_EQ(*oin, kt::kGroningenOin);
  }
}

TEST(PeerAuthenticator, DistinguishesCertificates) {
  PeerAuthenticator authenticator;
  FakeAuthContext groningen, zaanstad;
  groningen.Add("x509_pem_cert", ReadPkiFile("groningen.crt"));
  zaanstad.Add("x509_pem_cert", ReadPkiFile("zaanstad.crt"));
  EXPECT_EQ(*authenticator.Authenticate(groningen), kt::kGroningenOin);
  EXPECT_EQ(*authenticator.Authenticate(zaanstad), kt::kZaanstadOin);
  EXPECT_EQ(*authenticator.Authenticate(groningen), kt::kGroningenOin);
}

TEST(PeerAuthenticator, NoCertificateIsUnauthenticated) {
  PeerAuthenticator authenticator;
  FakeAuthContext auth;
  absl::StatusOr<std::string> oin = authenticator.Authenticate(auth);
  ASSERT_FALSE(oin.ok());
  EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(PeerAuthenticator, UnusableCertificateStaysUnauthenticated) {
  PeerAuthenticator authenticator;
  FakeAuthContext auth;
  auth.Add("x509_pem_cert", ReadPkiFile("two-oins.crt"));
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> oin = authenticator.Authenticate(auth);
    ASSERT_FALSE(oin.ok());
    EXPECT_EQ(oin.status().code(), absl::StatusCode::kUnauthenticated);
  }
}

}  // namespace
}  // namespace knooppunt::identity
