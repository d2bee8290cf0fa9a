#include "gateway/pki/x509_profile.h"

#include <openssl/objects.h>

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knooppunt::pki {
namespace {

using ::testing::HasSubstr;

void ExpectInvalid(const absl::Status& status, absl::string_view flag) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(status.message(), HasSubstr(std::string(flag))) << status;
}

TEST(pki_MakeSubject, OinMustBeTwentyDigits) {
  ExpectInvalid(MakeSubject("Gemeente Groningen", "g", "0000009930000000001").status(), "--oin");
  ExpectInvalid(MakeSubject("Gemeente Groningen", "g", "000000993000000000141").status(), "--oin");
  ExpectInvalid(MakeSubject("Gemeente Groningen", "g", "0000009930000000001x").status(), "--oin");
  EXPECT_THAT(MakeSubject("G", "g", "0000009930000000001").status().message(),
              HasSubstr("got 19 characters"));
  EXPECT_TRUE(MakeSubject("Gemeente Groningen", "g", "00000099300000000014").ok());
}

TEST(pki_MakeSubject, HasCountryOrganisationCommonNameAndOneSerialNumber) {
  absl::StatusOr<X509NamePtr> name = MakeSubject("Gemeente Súdwest-Fryslân", "sw.example",
                                                 "00000099300000001900");
  ASSERT_TRUE(name.ok()) << name.status();
  EXPECT_EQ(X509_NAME_entry_count(name->get()), 4);
  const int sn = X509_NAME_get_index_by_NID(name->get(), NID_serialNumber, -1);
  ASSERT_GE(sn, 0);
  EXPECT_EQ(X509_NAME_get_index_by_NID(name->get(), NID_serialNumber, sn), -1);
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name->get(), sn));
  EXPECT_EQ(ASN1_STRING_type(value), V_ASN1_PRINTABLESTRING);
  const int o = X509_NAME_get_index_by_NID(name->get(), NID_organizationName, -1);
  EXPECT_EQ(ASN1_STRING_type(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name->get(), o))),
            V_ASN1_UTF8STRING);
}

TEST(pki_MakeSubject, NamesAreCheckedAndNamed) {
  ExpectInvalid(MakeSubject("", "cn", "").status(), "--org");
  ExpectInvalid(MakeSubject("org", "", "").status(), "--cn");
  ExpectInvalid(MakeSubject("org\tx", "cn", "").status(), "--org");
  ExpectInvalid(MakeSubject("org", "cn\n", "").status(), "--cn");
  ExpectInvalid(MakeSubject(std::string("\xff\xfe", 2), "cn", "").status(), "--org");
  ExpectInvalid(MakeSubject(std::string(65, 'a'), "cn", "").status(), "--org");
  EXPECT_TRUE(MakeSubject(std::string(64, 'a'), "cn", "").ok());
  // 64 characters of two bytes each still fit.
  std::string accented;
  for (int i = 0; i < 64; ++i) accented += "é";
  EXPECT_TRUE(MakeSubject(accented, "cn", "").ok());
}

TEST(pki_MakeSubjectAltNames, AcceptsDnsNamesAndIps) {
  absl::StatusOr<GeneralNamesPtr> names = MakeSubjectAltNames(
      {"gateway.example", "*.knooppunt.example", "localhost"}, {"127.0.0.1", "::1"});
  ASSERT_TRUE(names.ok()) << names.status();
  EXPECT_EQ(sk_GENERAL_NAME_num(names->get()), 5);
  absl::StatusOr<GeneralNamesPtr> none = MakeSubjectAltNames({}, {});
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, nullptr);
}

TEST(pki_MakeSubjectAltNames, RejectsBadNames) {
  for (const char* bad : {"", "a..b", "-a.example", "a_b.example", "a b", "a.example,DNS:evil",
                          "x.*.example"}) {
    ExpectInvalid(MakeSubjectAltNames({bad}, {}).status(), "--dns");
  }
  for (const char* bad : {"", "127.0.0", "256.1.1.1", "localhost", "1.2.3.4/24", "::g"}) {
    ExpectInvalid(MakeSubjectAltNames({}, {bad}).status(), "--ip");
  }
}

TEST(pki_Keys, AreP256AndRoundTripAsPem) {
  absl::StatusOr<EvpPkeyPtr> key = NewP256Key();
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_TRUE(EVP_PKEY_is_a(key->get(), "EC"));
  EXPECT_EQ(EVP_PKEY_get_bits(key->get()), 256);
  char curve[64] = {0};
  size_t len = 0;
  ASSERT_EQ(EVP_PKEY_get_utf8_string_param(key->get(), "group", curve, sizeof curve, &len), 1);
  EXPECT_STREQ(curve, "prime256v1");
  absl::StatusOr<std::string> pem = PrivateKeyToPem(key->get());
  ASSERT_TRUE(pem.ok());
  EXPECT_THAT(*pem, HasSubstr("BEGIN PRIVATE KEY"));
  absl::StatusOr<EvpPkeyPtr> back = PrivateKeyFromPem(*pem, "k");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(EVP_PKEY_eq(key->get(), back->get()), 1);
  EXPECT_EQ(PrivateKeyFromPem("junk", "x.key").status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace knooppunt::pki
