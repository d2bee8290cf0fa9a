#include "gateway/pki/ca_state.h"

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knooppunt::pki {
namespace {

using ::testing::HasSubstr;

CaState Sample() {
  CaState state;
  state.next_serial = 0x1003;
  state.crl_number = 7;
  state.crl_next_update = absl::FromUnixSeconds(1800000000);
  CertificateRecord a;
  a.serial = 0x1000;
  a.oin = "00000099300000000014";
  a.organisation = "Gemeente Súdwest-Fryslân";
  a.common_name = "sudwest.example";
  a.not_before = absl::FromUnixSeconds(1700000000);
  a.not_after = absl::FromUnixSeconds(1731536000);
  CertificateRecord b = a;
  b.serial = 0x1002;
  b.kind = CertificateKind::kGateway;
  b.revoked_at = absl::FromUnixSeconds(1710000000);
  b.reason = RevocationReason::kKeyCompromise;
  b.renewed_from = 0x1000;
  state.certificates = {a, b};
  return state;
}

TEST(pki_CaState, RoundTrips) {
  const CaState state = Sample();
  absl::StatusOr<CaState> parsed = ParseCaState(SerializeCaState(state), "state.txt");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, state);
  ASSERT_NE(parsed->Find(0x1002), nullptr);
  EXPECT_EQ(parsed->Find(0x1002)->reason, RevocationReason::kKeyCompromise);
  EXPECT_EQ(parsed->Find(0x1001), nullptr);
}

TEST(pki_CaState, DamageIsDataLossWithFileAndLine) {
  const std::string good = SerializeCaState(Sample());
  const std::string truncated_line = absl::StrReplaceAll(good, {{"\tsudwest.example\n", "\n"}});
  absl::StatusOr<CaState> parsed = ParseCaState(truncated_line, "ca/state.txt");
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(parsed.status().message(), HasSubstr("ca/state.txt:6:"));

  EXPECT_EQ(ParseCaState("", "s").status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseCaState(absl::StrReplaceAll(good, {{"next_serial\t1003", "next_serial\t1001"}}),
                         "s")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseCaState(absl::StrReplaceAll(good, {{"version\t1", "version\t2"}}), "s")
                .status()
                .code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(ParseCaState(good + "bogus\t1\n", "s").status().code(), absl::StatusCode::kDataLoss);
}

TEST(pki_CaState, SerialsAreHex) {
  EXPECT_EQ(SerialHex(4096), "1000");
  EXPECT_EQ(SerialHex(0xABCDEF), "ABCDEF");
  EXPECT_EQ(*ParseSerial("1000"), 4096u);
  EXPECT_EQ(*ParseSerial("0x1000"), 4096u);
  EXPECT_EQ(*ParseSerial("abcdef"), 0xABCDEFu);
  absl::StatusOr<uint64_t> bad = ParseSerial("12g4");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("--serial"));
  EXPECT_FALSE(ParseSerial("").ok());
  EXPECT_FALSE(ParseSerial("11112222333344445").ok());  // more than 64 bits
}

TEST(pki_CaState, RevocationReasons) {
  EXPECT_EQ(*ParseRevocationReason("keyCompromise"), RevocationReason::kKeyCompromise);
  EXPECT_EQ(*ParseRevocationReason("KEYCOMPROMISE"), RevocationReason::kKeyCompromise);
  EXPECT_EQ(*ParseRevocationReason("superseded"), RevocationReason::kSuperseded);
  EXPECT_EQ(RevocationReasonName(RevocationReason::kCessationOfOperation), "cessationOfOperation");
  absl::StatusOr<RevocationReason> hold = ParseRevocationReason("certificateHold");
  EXPECT_EQ(hold.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(hold.status().message(), HasSubstr("--reason"));
}

}  // namespace
}  // namespace knooppunt::pki
