#include "gateway/common/ids.h"

#include <string>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "gtest/gtest.h"

namespace knooppunt {
namespace {

bool IsLowerHexOfLength(const std::string& s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s) {
    if (!(absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

TEST(IsValidOin, AcceptsExactlyTwentyDigits) {
  EXPECT_TRUE(IsValidOin("00000001002220647000"));
  EXPECT_TRUE(IsValidOin("00000099300000000014"));
  EXPECT_TRUE(IsValidOin("99999999999999999999"));
}

TEST(IsValidOin, RejectsWrongLengthLettersAndEmpty) {
  EXPECT_FALSE(IsValidOin("0000000100222064700"));    // 19
  EXPECT_FALSE(IsValidOin("000000010022206470001"));  // 21
  EXPECT_FALSE(IsValidOin("0000000100222064700a"));
  EXPECT_FALSE(IsValidOin("A0000001002220647000"));
  EXPECT_FALSE(IsValidOin(""));
  EXPECT_FALSE(IsValidOin(" 0000001002220647000"));
  EXPECT_FALSE(IsValidOin("0000000100222064700 "));
  EXPECT_FALSE(IsValidOin("-0000001002220647000"));
  EXPECT_FALSE(IsValidOin(absl::string_view("0000000100222064700\0", 20)));
}

TEST(IsValidGemeentecode, AcceptsExactlyFourDigits) {
  EXPECT_TRUE(IsValidGemeentecode("0014"));
  EXPECT_TRUE(IsValidGemeentecode("0363"));
  EXPECT_TRUE(IsValidGemeentecode("9999"));
}

TEST(IsValidGemeentecode, RejectsOthers) {
  EXPECT_FALSE(IsValidGemeentecode(""));
  EXPECT_FALSE(IsValidGemeentecode("014"));
  EXPECT_FALSE(IsValidGemeentecode("00140"));
  EXPECT_FALSE(IsValidGemeentecode("00a4"));
  EXPECT_FALSE(IsValidGemeentecode("+014"));
  EXPECT_FALSE(IsValidGemeentecode(" 014"));
}

TEST(IsValidUuid, AcceptsLowerAndUpperCase) {
  EXPECT_TRUE(IsValidUuid("123e4567-e89b-42d3-a456-426614174000"));
  EXPECT_TRUE(IsValidUuid("123E4567-E89B-42D3-A456-426614174000"));
  EXPECT_TRUE(IsValidUuid("AbCdEf01-2345-6789-aBcD-ef0123456789"));
  EXPECT_TRUE(IsValidUuid("00000000-0000-0000-0000-000000000000"));
}

TEST(IsValidUuid, RejectsWrongDashPositions) {
  EXPECT_FALSE(IsValidUuid("123e4567e-89b-42d3-a456-426614174000"));
  EXPECT_FALSE(IsValidUuid("123e456-7e89b-42d3-a456-426614174000"));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b42d3--a456-426614174000"));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a4564-26614174000"));
  EXPECT_FALSE(IsValidUuid("123e4567e89b42d3a456426614174000----"));
  EXPECT_FALSE(IsValidUuid("------------------------------------"));
}

TEST(IsValidUuid, RejectsNonHex) {
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456-42661417400g"));
  EXPECT_FALSE(IsValidUuid("g23e4567-e89b-42d3-a456-426614174000"));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456-4266141740 0"));
  EXPECT_FALSE(IsValidUuid("{23e4567-e89b-42d3-a456-426614174000"));
}

TEST(IsValidUuid, RejectsWrongLength) {
  EXPECT_FALSE(IsValidUuid(""));
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456-42661417400"));    // 35
  EXPECT_FALSE(IsValidUuid("123e4567-e89b-42d3-a456-4266141740000"));  // 37
  EXPECT_FALSE(IsValidUuid("{123e4567-e89b-42d3-a456-426614174000}"));
  EXPECT_FALSE(IsValidUuid("123e4567e89b42d3a456426614174000"));       // no dashes
}

TEST(NewUuid, IsValidLowerCaseVersion4) {
  for (int i = 0; i < 100; ++i) {
    const std::string id = NewUuid();
    ASSERT_TRUE(IsValidUuid(id)) << id;
    EXPECT_EQ(id, absl::AsciiStrToLower(id));
    EXPECT_EQ(id[14], '4') << id;  // version nibble
    EXPECT_TRUE(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b')
        << id;  // RFC 4122 variant
  }
}

TEST(NewUuid, UniqueOverThousandDraws) {
  absl::flat_hash_set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    const std::string id = NewUuid();
    ASSERT_TRUE(IsValidUuid(id)) << id;
    EXPECT_TRUE(seen.insert(id).second) << "duplicate " << id;
  }
  EXPECT_EQ(seen.size(), 1000u);
}

TEST(RandomHex, LengthLowerCaseNotAllZero) {
  for (int bytes : {1, 8, 16}) {
    const std::string hex = RandomHex(bytes);
    EXPECT_TRUE(IsLowerHexOfLength(hex, static_cast<size_t>(2 * bytes))) << hex;
    EXPECT_NE(hex, std::string(hex.size(), '0'));
  }
}

constexpr absl::string_view kTraceId = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr absl::string_view kParentId = "00f067aa0ba902b7";
constexpr absl::string_view kValidTraceparent =
    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

void ExpectNewTrace(absl::string_view traceparent) {
  SCOPED_TRACE(std::string("traceparent='") + std::string(traceparent) + "'");
  const TraceIds ids = ContinueTrace(traceparent);
  EXPECT_TRUE(IsLowerHexOfLength(ids.trace_id, 32)) << ids.trace_id;
  EXPECT_NE(ids.trace_id, std::string(32, '0'));
  EXPECT_NE(ids.trace_id, kTraceId);
  EXPECT_TRUE(ids.parent_span_id.empty()) << ids.parent_span_id;
  EXPECT_TRUE(IsLowerHexOfLength(ids.span_id, 16)) << ids.span_id;
  EXPECT_EQ(ids.flags, "01");
}

TEST(ContinueTrace, KeepsTraceIdAndParentOfValidTraceparent) {
  const TraceIds ids = ContinueTrace(kValidTraceparent);
  EXPECT_EQ(ids.trace_id, kTraceId);
  EXPECT_EQ(ids.parent_span_id, kParentId);
  EXPECT_EQ(ids.flags, "01");
  EXPECT_TRUE(IsLowerHexOfLength(ids.span_id, 16)) << ids.span_id;
  EXPECT_NE(ids.span_id, kParentId);
}

TEST(ContinueTrace, KeepsFlags) {
  const TraceIds ids = ContinueTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  EXPECT_EQ(ids.trace_id, kTraceId);
  EXPECT_EQ(ids.flags, "00");
}

TEST(ContinueTrace, OwnSpanIdIsNewEachTime) {
  const TraceIds a = ContinueTrace(kValidTraceparent);
  const TraceIds b = ContinueTrace(kValidTraceparent);
  EXPECT_EQ(a.trace_id, b.trace_id);
  EXPECT_NE(a.span_id, b.span_id);
}

TEST(ContinueTrace, EmptyStartsNewTrace) { ExpectNewTrace(""); }

TEST(ContinueTrace, MalformedStartsNewTrace) {
  ExpectNewTrace("garbage");
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7");      // no flags
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-");  // too long
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01");    // short trace id
  ExpectNewTrace("00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01");   // separators
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01");   // non-hex
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01");   // non-hex
  ExpectNewTrace("0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");   // non-hex
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g");   // non-hex
}

TEST(ContinueTrace, AllZeroIdsStartNewTrace) {
  ExpectNewTrace("00-00000000000000000000000000000000-00f067aa0ba902b7-01");
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01");
}

TEST(ContinueTrace, VersionFfStartsNewTrace) {
  ExpectNewTrace("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
}

TEST(ContinueTrace, UpperCaseStartsNewTrace) {
  ExpectNewTrace("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01");
  ExpectNewTrace("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01");
}

TEST(FormatTraceparent, UsesOwnSpanAsParentForNextHop) {
  TraceIds ids;
  ids.trace_id = std::string(kTraceId);
  ids.parent_span_id = std::string(kParentId);
  ids.span_id = "b7ad6b7169203331";
  ids.flags = "01";
  EXPECT_EQ(FormatTraceparent(ids), "00-4bf92f3577b34da6a3ce929d0e0e4736-b7ad6b7169203331-01");
}

TEST(FormatTraceparent, RoundTripsThroughContinueTrace) {
  const TraceIds first = ContinueTrace(kValidTraceparent);
  const std::string next = FormatTraceparent(first);
  EXPECT_EQ(next.size(), 55u);
  const TraceIds second = ContinueTrace(next);
  EXPECT_EQ(second.trace_id, first.trace_id);
  EXPECT_EQ(second.parent_span_id, first.span_id);
  EXPECT_EQ(second.flags, first.flags);

  // A freshly started trace formats to something ContinueTrace accepts as well.
  const TraceIds fresh = ContinueTrace("");
  const TraceIds continued = ContinueTrace(FormatTraceparent(fresh));
  EXPECT_EQ(continued.trace_id, fresh.trace_id);
  EXPECT_EQ(continued.parent_span_id, fresh.span_id);
}

}  // namespace
}  // namespace knooppunt
