#include "gateway/pki/certificate_authority.h"

#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/pki/pki_files.h"
#include "gateway/pki/x509_profile.h"
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

constexpr char kGroningenOin[] = "00000099300000000014";
constexpr char kGatewayOin[] = "00000099000000000001";

std::string ReadOrDie(const std::string& path) {
  absl::StatusOr<std::string> text = ReadWholeFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

IssueRequest Groningen() {
  IssueRequest r;
  r.oin = kGroningenOin;
  r.organisation = "Gemeente Groningen";
  r.common_name = "groningen.example";
  r.dns_names = {"groningen.example", "localhost"};
  r.ip_addresses = {"127.0.0.1"};
  r.days = 365;
  return r;
}

class pki_CertificateAuthority : public ::testing::Test {
 protected:
  void SetUp() override {
    InitRequest init;
    init.ca_dir = ca_dir();
    init.name = "Knooppunt Test CA";
    init.organisation = "Knooppunt";
    absl::StatusOr<std::unique_ptr<CertificateAuthority>> ca = CertificateAuthority::Init(init);
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    ca_cert_ = ParseCertOrDie(ca_->ca_certificate_pem());
  }

  std::string ca_dir() const { return tmp_ / "ca"; }

  IssuedCertificate IssueOrDie(const IssueRequest& request) {
    absl::StatusOr<IssuedCertificate> issued = ca_->Issue(request);
    EXPECT_TRUE(issued.ok()) << issued.status();
    return issued.ok() ? *issued : IssuedCertificate{};
  }

  X509CrlPtr CurrentCrl() { return ParseCrlOrDie(ReadOrDie(ca_->crl_path())); }

  TempDir tmp_;
  std::unique_ptr<CertificateAuthority> ca_;
  X509Ptr ca_cert_;
};

TEST_F(pki_CertificateAuthority, InitMakesTheDirectoryLayout) {
  EXPECT_EQ(FileMode(ca_dir()), 0700);
  EXPECT_EQ(FileMode(ca_dir() + "/ca.key"), 0600);
  EXPECT_EQ(FileMode(ca_dir() + "/ca.crt"), 0644);
  EXPECT_TRUE(std::filesystem::is_directory(ca_dir() + "/issued"));
  EXPECT_EQ(ReadOrDie(ca_dir() + "/ca.crt"), ca_->ca_certificate_pem());
  // An empty CRL from the start, so the gateway's crl_directory works before any revocation.
  const std::string crl = ReadOrDie(ca_->crl_path());
  EXPECT_EQ(ReadOrDie(ca_->crl_hash_path()), crl);
  EXPECT_EQ(ca_->crl_hash_path(),
            absl::StrFormat("%s/crl/%08lx.r0", ca_dir(), X509_subject_name_hash(ca_cert_.get())));
  EXPECT_EQ(X509_CRL_get_REVOKED(ParseCrlOrDie(crl).get()), nullptr);  // no entries
  absl::StatusOr<CaState> state = ca_->State();
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->next_serial, 0x1000u);
  EXPECT_EQ(state->crl_number, 1u);
  EXPECT_TRUE(state->certificates.empty());
}

TEST_F(pki_CertificateAuthority, CaCertificateFollowsTheProfile) {
  X509* ca = ca_cert_.get();
  EXPECT_EQ(X509_check_ca(ca), 1);
  EXPECT_EQ(X509_get_key_usage(ca), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(ca, X509_get_ext_by_NID(ca, NID_basic_constraints, -1))), 1);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(ca, X509_get_ext_by_NID(ca, NID_key_usage, -1))), 1);
  ASSERT_NE(X509_get0_subject_key_id(ca), nullptr);
  EXPECT_EQ(X509_verify(ca, X509_get0_pubkey(ca)), 1);
  EXPECT_EQ(SubjectEntry(ca, NID_commonName), "Knooppunt Test CA");
  EXPECT_EQ(SubjectEntry(ca, NID_organizationName), "Knooppunt");
  EXPECT_EQ(SubjectEntry(ca, NID_countryName), "NL");
  EXPECT_EQ(SubjectEntry(ca, NID_serialNumber), "");
  EXPECT_EQ(ca_->ca_subject(), "CN=Knooppunt Test CA,O=Knooppunt,C=NL");
  EXPECT_GT(ca_->ca_not_after(), absl::Now() + absl::Hours(24 * 3649));
}

TEST_F(pki_CertificateAuthority, IssuedCertificateVerifiesAsClientAndServer) {
  const IssuedCertificate issued = IssueOrDie(Groningen());
  X509Ptr cert = ParseCertOrDie(issued.certificate_pem);
  EXPECT_EQ(VerifyError(cert.get(), ca_cert_.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_EQ(VerifyError(cert.get(), ca_cert_.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
  // With the (empty) CRL checked too.
  X509CrlPtr crl = CurrentCrl();
  EXPECT_EQ(VerifyError(cert.get(), ca_cert_.get(), X509_PURPOSE_SSL_CLIENT, crl.get()), X509_V_OK);

  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(issued.private_key_pem, "key");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(X509_check_private_key(cert.get(), key->get()), 1);
  EXPECT_TRUE(EVP_PKEY_is_a(key->get(), "EC"));
  EXPECT_EQ(EVP_PKEY_get_bits(key->get()), 256);
}

TEST_F(pki_CertificateAuthority, TheGatewayReadsTheOin) {
  const IssuedCertificate issued = IssueOrDie(Groningen());
  absl::StatusOr<std::string> oin = identity::OinFromCertificatePem(issued.certificate_pem);
  ASSERT_TRUE(oin.ok()) << oin.status();
  EXPECT_EQ(*oin, kGroningenOin);
}

TEST_F(pki_CertificateAuthority, LeafFollowsTheProfile) {
  const IssuedCertificate issued = IssueOrDie(Groningen());
  X509Ptr cert = ParseCertOrDie(issued.certificate_pem);
  X509* c = cert.get();
  EXPECT_EQ(X509_get_version(c), X509_VERSION_3);
  EXPECT_EQ(X509_check_ca(c), 0);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(c, X509_get_ext_by_NID(c, NID_basic_constraints, -1))), 1);
  EXPECT_EQ(X509_EXTENSION_get_critical(X509_get_ext(c, X509_get_ext_by_NID(c, NID_key_usage, -1))), 1);
  EXPECT_EQ(X509_get_key_usage(c), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));
  EXPECT_EQ(X509_get_extended_key_usage(c), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  ASSERT_NE(X509_get0_subject_key_id(c), nullptr);
  ASSERT_NE(X509_get0_authority_key_id(c), nullptr);
  EXPECT_EQ(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(c), X509_get0_subject_key_id(ca_cert_.get())), 0);
  EXPECT_EQ(X509_get_signature_nid(c), NID_ecdsa_with_SHA256);
  EXPECT_EQ(SubjectEntry(c, NID_countryName), "NL");
  EXPECT_EQ(SubjectEntry(c, NID_organizationName), "Gemeente Groningen");
  EXPECT_EQ(SubjectEntry(c, NID_commonName), "groningen.example");
  EXPECT_EQ(SubjectEntry(c, NID_serialNumber), kGroningenOin);
  // SANs: the DNS names and IPs asked for, and nothing else.
  EXPECT_EQ(X509_check_host(c, "groningen.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(c, "localhost", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(c, "zaanstad.example", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(c, "127.0.0.1", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(c, "10.0.0.1", 0), 0);
  // Validity: from an hour ago (clock skew) for the days asked.
  absl::StatusOr<absl::Time> nb = NotBeforeOf(c);
  absl::StatusOr<absl::Time> na = NotAfterOf(c);
  ASSERT_TRUE(nb.ok() && na.ok());
  EXPECT_EQ(*na - *nb, absl::Hours(24 * 365 + 1));
  EXPECT_EQ(issued.record.not_after, *na);
}

TEST_F(pki_CertificateAuthority, IssueRecordsAndStoresEachCertificateWithANewSerial) {
  const IssuedCertificate a = IssueOrDie(Groningen());
  IssueRequest zaanstad = Groningen();
  zaanstad.oin = "00000099300000000479";
  zaanstad.organisation = "Gemeente Zaanstad";
  zaanstad.common_name = "zaanstad.example";
  zaanstad.dns_names = {};
  zaanstad.ip_addresses = {};
  const IssuedCertificate b = IssueOrDie(zaanstad);
  EXPECT_EQ(a.record.serial, 0x1000u);
  EXPECT_EQ(b.record.serial, 0x1001u);
  EXPECT_EQ(*SerialOf(ParseCertOrDie(b.certificate_pem).get()), 0x1001u);
  EXPECT_EQ(ReadOrDie(ca_->IssuedPath(0x1000)), a.certificate_pem);
  EXPECT_EQ(ReadOrDie(ca_dir() + "/issued/1001.crt"), b.certificate_pem);
  // No SAN asked for, none present.
  EXPECT_EQ(X509_get_ext_by_NID(ParseCertOrDie(b.certificate_pem).get(), NID_subject_alt_name, -1), -1);
  // The CA keeps no leaf private key.
  for (const auto& entry : std::filesystem::recursive_directory_iterator(ca_dir())) {
    if (entry.is_regular_file() && entry.path().filename() != "ca.key") {
      EXPECT_THAT(ReadOrDie(entry.path().string()), ::testing::Not(HasSubstr("PRIVATE KEY")))
          << entry.path();
    }
  }
  absl::StatusOr<CaState> state = ca_->State();
  ASSERT_TRUE(state.ok());
  ASSERT_EQ(state->certificates.size(), 2u);
  EXPECT_EQ(state->certificates[0], a.record);
  EXPECT_EQ(state->certificates[1].oin, "00000099300000000479");
  EXPECT_EQ(state->certificates[1].organisation, "Gemeente Zaanstad");
  EXPECT_EQ(state->next_serial, 0x1002u);
}

TEST_F(pki_CertificateAuthority, GatewayCertificateNeedsAHostName) {
  IssueRequest gateway;
  gateway.kind = CertificateKind::kGateway;
  gateway.oin = kGatewayOin;
  gateway.organisation = "Knooppunt";
  gateway.common_name = "gateway.example";
  absl::StatusOr<IssuedCertificate> none = ca_->Issue(gateway);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(none.status().message(), HasSubstr("--dns"));
  gateway.dns_names = {"gateway.example"};
  const IssuedCertificate issued = IssueOrDie(gateway);
  EXPECT_EQ(issued.record.kind, CertificateKind::kGateway);
  EXPECT_EQ(*identity::OinFromCertificatePem(issued.certificate_pem), kGatewayOin);
  X509Ptr cert = ParseCertOrDie(issued.certificate_pem);
  EXPECT_EQ(VerifyError(cert.get(), ca_cert_.get(), X509_PURPOSE_SSL_SERVER), X509_V_OK);
  EXPECT_EQ(VerifyError(cert.get(), ca_cert_.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_EQ(ca_->State()->certificates.back().kind, CertificateKind::kGateway);
}

TEST_F(pki_CertificateAuthority, RenewKeepingTheKey) {
  const IssuedCertificate old = IssueOrDie(Groningen());
  RenewRequest renew;
  renew.certificate_pem = old.certificate_pem;
  renew.keep_key = true;
  absl::StatusOr<IssuedCertificate> renewed = ca_->Renew(renew);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_TRUE(renewed->private_key_pem.empty());
  EXPECT_NE(renewed->record.serial, old.record.serial);
  EXPECT_EQ(renewed->record.renewed_from, old.record.serial);
  X509Ptr a = ParseCertOrDie(old.certificate_pem);
  X509Ptr b = ParseCertOrDie(renewed->certificate_pem);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(a.get()), X509_get_subject_name(b.get())), 0);
  EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(a.get()), X509_get0_pubkey(b.get())), 1);
  // The holder's existing key file goes with the new certificate.
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(old.private_key_pem, "key");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(X509_check_private_key(b.get(), key->get()), 1);
  EXPECT_EQ(X509_check_host(b.get(), "groningen.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(b.get(), "127.0.0.1", 0), 1);
  EXPECT_EQ(VerifyError(b.get(), ca_cert_.get(), X509_PURPOSE_SSL_CLIENT), X509_V_OK);
  EXPECT_EQ(*identity::OinFromCertificatePem(renewed->certificate_pem), kGroningenOin);
  // Same validity length as the certificate renewed.
  EXPECT_EQ(*NotAfterOf(b.get()) - *NotBeforeOf(b.get()), absl::Hours(24 * 365 + 1));
}

TEST_F(pki_CertificateAuthority, RenewWithANewKeyBySerial) {
  IssueRequest request = Groningen();
  request.days = 90;
  const IssuedCertificate old = IssueOrDie(request);
  RenewRequest renew;
  renew.serial = old.record.serial;
  renew.days = 30;
  absl::StatusOr<IssuedCertificate> renewed = ca_->Renew(renew);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  ASSERT_FALSE(renewed->private_key_pem.empty());
  X509Ptr a = ParseCertOrDie(old.certificate_pem);
  X509Ptr b = ParseCertOrDie(renewed->certificate_pem);
  EXPECT_NE(EVP_PKEY_eq(X509_get0_pubkey(a.get()), X509_get0_pubkey(b.get())), 1);
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(renewed->private_key_pem, "key");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(X509_check_private_key(b.get(), key->get()), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(a.get()), X509_get_subject_name(b.get())), 0);
  EXPECT_EQ(*NotAfterOf(b.get()) - *NotBeforeOf(b.get()), absl::Hours(24 * 30 + 1));
  EXPECT_EQ(renewed->record.oin, kGroningenOin);
  EXPECT_EQ(renewed->record.organisation, "Gemeente Groningen");
}

TEST_F(pki_CertificateAuthority, RenewRefusesRevokedForeignAndUnknownCertificates) {
  const IssuedCertificate old = IssueOrDie(Groningen());
  ASSERT_TRUE(ca_->Revoke(old.record.serial, RevocationReason::kKeyCompromise).ok());
  RenewRequest renew;
  renew.serial = old.record.serial;
  renew.keep_key = true;
  absl::StatusOr<IssuedCertificate> revoked = ca_->Renew(renew);
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(revoked.status().message(), HasSubstr("revoked"));

  // A certificate from another CA with the same names.
  InitRequest other_init;
  other_init.ca_dir = tmp_ / "other";
  other_init.name = "Knooppunt Test CA";
  other_init.organisation = "Knooppunt";
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> other = CertificateAuthority::Init(other_init);
  ASSERT_TRUE(other.ok());
  absl::StatusOr<IssuedCertificate> foreign = (*other)->Issue(Groningen());
  ASSERT_TRUE(foreign.ok());
  RenewRequest by_pem;
  by_pem.certificate_pem = foreign->certificate_pem;
  absl::StatusOr<IssuedCertificate> refused = ca_->Renew(by_pem);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("not issued by this CA"));

  RenewRequest unknown;
  unknown.serial = 0x9999;
  EXPECT_EQ(ca_->Renew(unknown).status().code(), absl::StatusCode::kNotFound);
  RenewRequest junk;
  junk.certificate_pem = "not a certificate";
  EXPECT_EQ(ca_->Renew(junk).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(pki_CertificateAuthority, RevokeRegeneratesTheCrl) {
  const IssuedCertificate revoked = IssueOrDie(Groningen());
  const IssuedCertificate kept = IssueOrDie(Groningen());
  absl::StatusOr<CertificateRecord> record =
      ca_->Revoke(revoked.record.serial, RevocationReason::kKeyCompromise);
  ASSERT_TRUE(record.ok()) << record.status();
  EXPECT_TRUE(record->revoked_at.has_value());
  EXPECT_EQ(record->reason, RevocationReason::kKeyCompromise);

  const std::string crl_pem = ReadOrDie(ca_->crl_path());
  EXPECT_EQ(ReadOrDie(ca_->crl_hash_path()), crl_pem);
  X509CrlPtr crl = ParseCrlOrDie(crl_pem);
  EXPECT_EQ(X509_CRL_verify(crl.get(), X509_get0_pubkey(ca_cert_.get())), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_CRL_get_issuer(crl.get()), X509_get_subject_name(ca_cert_.get())), 0);
  STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl.get());
  ASSERT_EQ(sk_X509_REVOKED_num(entries), 1);
  X509_REVOKED* entry = sk_X509_REVOKED_value(entries, 0);
  uint64_t serial = 0;
  ASSERT_EQ(ASN1_INTEGER_get_uint64(&serial, X509_REVOKED_get0_serialNumber(entry)), 1);
  EXPECT_EQ(serial, revoked.record.serial);
  ASN1_ENUMERATED* reason =
      static_cast<ASN1_ENUMERATED*>(X509_REVOKED_get_ext_d2i(entry, NID_crl_reason, nullptr, nullptr));
  ASSERT_NE(reason, nullptr);
  EXPECT_EQ(ASN1_ENUMERATED_get(reason), 1);  // keyCompromise
  ASN1_ENUMERATED_free(reason);
  ASN1_INTEGER* number =
      static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl.get(), NID_crl_number, nullptr, nullptr));
  ASSERT_NE(number, nullptr);
  EXPECT_EQ(ASN1_INTEGER_get(number), 2);
  ASN1_INTEGER_free(number);

  X509Ptr revoked_cert = ParseCertOrDie(revoked.certificate_pem);
  X509Ptr kept_cert = ParseCertOrDie(kept.certificate_pem);
  EXPECT_EQ(VerifyError(revoked_cert.get(), ca_cert_.get(), X509_PURPOSE_SSL_CLIENT, crl.get()),
            X509_V_ERR_CERT_REVOKED);
  EXPECT_EQ(VerifyError(kept_cert.get(), ca_cert_.get(), X509_PURPOSE_SSL_CLIENT, crl.get()),
            X509_V_OK);

  absl::StatusOr<CaState> state = ca_->State();
  ASSERT_TRUE(state.ok());
  EXPECT_TRUE(state->Find(revoked.record.serial)->revoked_at.has_value());
  EXPECT_FALSE(state->Find(kept.record.serial)->revoked_at.has_value());
  EXPECT_EQ(state->crl_number, 2u);
}

TEST_F(pki_CertificateAuthority, RevokeUnknownOrTwiceIsAClearError) {
  absl::StatusOr<CertificateRecord> unknown = ca_->Revoke(0x1234, RevocationReason::kUnspecified);
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(unknown.status().message(), HasSubstr("1234"));
  const IssuedCertificate issued = IssueOrDie(Groningen());
  ASSERT_TRUE(ca_->Revoke(issued.record.serial, RevocationReason::kSuperseded).ok());
  absl::StatusOr<CertificateRecord> twice =
      ca_->Revoke(issued.record.serial, RevocationReason::kKeyCompromise);
  EXPECT_EQ(twice.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(twice.status().message(), HasSubstr("already revoked"));
  // The unspecified reason is left out of the CRL entry, as RFC 5280 recommends.
  const IssuedCertificate other = IssueOrDie(Groningen());
  ASSERT_TRUE(ca_->Revoke(other.record.serial, RevocationReason::kUnspecified).ok());
  X509CrlPtr crl = CurrentCrl();
  EXPECT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl.get())), 2);
}

TEST_F(pki_CertificateAuthority, RegenerateCrlKeepsEntriesAndMovesNextUpdate) {
  const IssuedCertificate issued = IssueOrDie(Groningen());
  ASSERT_TRUE(ca_->Revoke(issued.record.serial, RevocationReason::kKeyCompromise).ok());
  const absl::Time before = ca_->State()->crl_next_update;
  ASSERT_TRUE(ca_->RegenerateCrl().ok());
  absl::StatusOr<CaState> state = ca_->State();
  EXPECT_EQ(state->crl_number, 3u);
  EXPECT_GE(state->crl_next_update, before);
  X509CrlPtr crl = CurrentCrl();
  EXPECT_EQ(sk_X509_REVOKED_num(X509_CRL_get_REVOKED(crl.get())), 1);
  EXPECT_EQ(VerifyError(ParseCertOrDie(issued.certificate_pem).get(), ca_cert_.get(),
                        X509_PURPOSE_SSL_CLIENT, crl.get()),
            X509_V_ERR_CERT_REVOKED);
}

TEST_F(pki_CertificateAuthority, ListShowsExpiryAndStatus) {
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  CaOptions past;
  past.clock = [now] { return now - absl::Hours(24 * 400); };
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> then = CertificateAuthority::Open(ca_dir(), past);
  ASSERT_TRUE(then.ok()) << then.status();
  IssueRequest r = Groningen();
  r.days = 365;
  const IssuedCertificate expired = *(*then)->Issue(r);  // 400 days ago, for 365

  CaOptions fixed;
  fixed.clock = [now] { return now; };
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> at = CertificateAuthority::Open(ca_dir(), fixed);
  ASSERT_TRUE(at.ok());
  r.days = 10;
  const IssuedCertificate expiring = *(*at)->Issue(r);
  r.days = 365;
  const IssuedCertificate valid = *(*at)->Issue(r);
  const IssuedCertificate revoked = *(*at)->Issue(r);
  ASSERT_TRUE((*at)->Revoke(revoked.record.serial, RevocationReason::kAffiliationChanged).ok());

  absl::StatusOr<CaState> state = (*at)->State();
  ASSERT_TRUE(state.ok());
  ASSERT_EQ(state->certificates.size(), 4u);
  const absl::Duration warn = absl::Hours(24 * 30);
  EXPECT_EQ(StatusAt(*state->Find(expired.record.serial), now, warn), CertificateStatus::kExpired);
  EXPECT_EQ(StatusAt(*state->Find(expiring.record.serial), now, warn), CertificateStatus::kExpiring);
  EXPECT_EQ(StatusAt(*state->Find(valid.record.serial), now, warn), CertificateStatus::kValid);
  EXPECT_EQ(StatusAt(*state->Find(revoked.record.serial), now, warn), CertificateStatus::kRevoked);
  EXPECT_EQ(StatusAt(*state->Find(expiring.record.serial), now, absl::Hours(24 * 5)),
            CertificateStatus::kValid);
  EXPECT_EQ(DaysLeft(state->Find(expiring.record.serial)->not_after, now), 10);
  EXPECT_EQ(DaysLeft(state->Find(valid.record.serial)->not_after, now), 365);
  EXPECT_EQ(DaysLeft(state->Find(expired.record.serial)->not_after, now), -35);
  EXPECT_EQ(CertificateStatusName(CertificateStatus::kExpiring), "EXPIRING");
  EXPECT_EQ(state->Find(revoked.record.serial)->reason, RevocationReason::kAffiliationChanged);
}

TEST_F(pki_CertificateAuthority, BadInputGivesClearErrors) {
  IssueRequest r = Groningen();
  r.oin = "0000009930000000001";  // 19 digits
  absl::StatusOr<IssuedCertificate> short_oin = ca_->Issue(r);
  EXPECT_EQ(short_oin.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(short_oin.status().message(), HasSubstr("--oin must be exactly 20 digits"));
  r.oin = "";
  EXPECT_THAT(ca_->Issue(r).status().message(), HasSubstr("--oin is required"));
  r = Groningen();
  r.organisation = "";
  EXPECT_THAT(ca_->Issue(r).status().message(), HasSubstr("--org"));
  r = Groningen();
  r.dns_names = {"bad name"};
  EXPECT_THAT(ca_->Issue(r).status().message(), HasSubstr("--dns"));
  r = Groningen();
  r.ip_addresses = {"999.1.1.1"};
  EXPECT_THAT(ca_->Issue(r).status().message(), HasSubstr("--ip"));
  r = Groningen();
  r.days = 0;
  EXPECT_THAT(ca_->Issue(r).status().message(), HasSubstr("--days"));
  r.days = 3651;
  EXPECT_EQ(ca_->Issue(r).status().code(), absl::StatusCode::kInvalidArgument);
  // Nothing was issued by the failed attempts.
  EXPECT_EQ(ca_->State()->next_serial, 0x1000u);
}

TEST_F(pki_CertificateAuthority, CertificateCannotOutliveTheCa) {
  InitRequest init;
  init.ca_dir = tmp_ / "short";
  init.name = "Short CA";
  init.days = 30;
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> ca = CertificateAuthority::Init(init);
  ASSERT_TRUE(ca.ok());
  absl::StatusOr<IssuedCertificate> issued = (*ca)->Issue(Groningen());
  EXPECT_EQ(issued.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(issued.status().message(), HasSubstr("outlive the CA"));
  IssueRequest r = Groningen();
  r.days = 20;
  EXPECT_TRUE((*ca)->Issue(r).ok());
}

TEST_F(pki_CertificateAuthority, OpenAndInitCheckTheDirectory) {
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> missing =
      CertificateAuthority::Open(tmp_ / "nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("does not exist"));
  EXPECT_THAT(missing.status().message(), HasSubstr("knooppunt-pki init"));

  std::filesystem::create_directories(tmp_ / "empty");
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> empty =
      CertificateAuthority::Open(tmp_ / "empty");
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(empty.status().message(), HasSubstr("state.txt is missing"));

  InitRequest again;
  again.ca_dir = ca_dir();
  again.name = "Another";
  EXPECT_EQ(CertificateAuthority::Init(again).status().code(), absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(WriteFileAtomically(tmp_ / "empty/notes.txt", "x", 0644).ok());
  again.ca_dir = tmp_ / "empty";
  EXPECT_EQ(CertificateAuthority::Init(again).status().code(),
            absl::StatusCode::kFailedPrecondition);
  again.name = "";
  EXPECT_THAT(CertificateAuthority::Init(again).status().message(), HasSubstr("--name"));

  ASSERT_EQ(::chmod((ca_dir() + "/ca.key").c_str(), 0644), 0);
  absl::StatusOr<std::unique_ptr<CertificateAuthority>> open_key = CertificateAuthority::Open(ca_dir());
  EXPECT_EQ(open_key.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(open_key.status().message(), HasSubstr("chmod 600"));
  ASSERT_EQ(::chmod((ca_dir() + "/ca.key").c_str(), 0600), 0);
  EXPECT_TRUE(CertificateAuthority::Open(ca_dir()).ok());

  ASSERT_TRUE(WriteFileAtomically(ca_dir() + "/state.txt", "garbage\n", 0644).ok());
  EXPECT_EQ(CertificateAuthority::Open(ca_dir()).status().code(), absl::StatusCode::kDataLoss);
}

TEST_F(pki_CertificateAuthority, ConcurrentIssuersNeverShareASerial) {
  constexpr int kThreads = 3;
  constexpr int kEach = 4;
  std::vector<std::vector<uint64_t>> serials(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Each thread opens the directory itself, as separate processes would.
      absl::StatusOr<std::unique_ptr<CertificateAuthority>> ca = CertificateAuthority::Open(ca_dir());
      if (!ca.ok()) return;
      for (int i = 0; i < kEach; ++i) {
        absl::StatusOr<IssuedCertificate> issued = (*ca)->Issue(Groningen());
        if (issued.ok()) serials[t].push_back(issued->record.serial);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  std::set<uint64_t> all;
  for (const auto& s : serials) all.insert(s.begin(), s.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kEach));
  absl::StatusOr<CaState> state = ca_->State();
  ASSERT_TRUE(state.ok());
  EXPECT_EQ(state->certificates.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(state->next_serial, 0x1000u + kThreads * kEach);
}

TEST(pki_CertificateStatus, DaysLeftRoundsDown) {
  const absl::Time now = absl::FromUnixSeconds(1800000000);
  EXPECT_EQ(DaysLeft(now + absl::Hours(47), now), 1);
  EXPECT_EQ(DaysLeft(now + absl::Hours(48), now), 2);
  EXPECT_EQ(DaysLeft(now, now), 0);
  EXPECT_EQ(DaysLeft(now - absl::Seconds(1), now), -1);
  EXPECT_EQ(DaysLeft(now - absl::Hours(24), now), -1);
}

}  // namespace
}  // namespace knooppunt::pki
