#include "gateway/exchange/envelope_check.h"

#include <string>

#include "absl/status/status.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"

namespace knooppunt::exchange {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr size_t kLimit = 1024;
constexpr absl::string_view kBsn = "999993653";

const google::protobuf::DescriptorPool& Types() {
  gemeente::brp::v1::PersoonVraag::descriptor();
  gemeente::verhuizen::v1::Verhuismelding::descriptor();
  return *google::protobuf::DescriptorPool::generated_pool();
}

v1::Envelope ValidEnvelope() {
  v1::Envelope e;
  e.set_message_id("123e4567-e89b-42d3-a456-426614174000");
  e.set_sender("00000099300000000014");
  e.set_recipient("00000099200000000001");
  e.set_purpose("BRP-bevraging");
  gemeente::brp::v1::PersoonVraag vraag;
  vraag.set_bsn(std::string(kBsn));
  vraag.add_velden("naam");
  e.mutable_payload()->PackFrom(vraag);
  return e;
}

// INVALID_ARGUMENT naming `field`, and never echoing the payload.
void ExpectInvalid(const v1::Envelope& e, absl::string_view field) {
  absl::StatusOr<absl::string_view> type = CheckEnvelope(e, kLimit, Types());
  ASSERT_FALSE(type.ok()) << "accepted: " << e.ShortDebugString();
  EXPECT_EQ(type.status().code(), absl::StatusCode::kInvalidArgument) << type.status();
  EXPECT_THAT(type.status().message(), HasSubstr(std::string(field)));
  EXPECT_THAT(type.status().message(), Not(HasSubstr(std::string(kBsn))));
}

TEST(CheckEnvelope, ValidEnvelopeReturnsItsMessageType) {
  const v1::Envelope e = ValidEnvelope();
  absl::StatusOr<absl::string_view> type = CheckEnvelope(e, kLimit, Types());
  ASSERT_TRUE(type.ok()) << type.status();
  EXPECT_EQ(*type, "gemeente.brp.v1.PersoonVraag");
}

TEST(CheckEnvelope, AcceptsUpperCaseUuidAndGemeenteRecipient) {
  v1::Envelope e = ValidEnvelope();
  e.set_message_id("123E4567-E89B-42D3-A456-426614174000");
  e.set_recipient("gemeente:0014");
  gemeente::verhuizen::v1::Verhuismelding melding;
  melding.set_bsn(std::string(kBsn));
  e.mutable_payload()->PackFrom(melding);
  absl::StatusOr<absl::string_view> type = CheckEnvelope(e, kLimit, Types());
  ASSERT_TRUE(type.ok()) << type.status();
  EXPECT_EQ(*type, "gemeente.verhuizen.v1.Verhuismelding");
}

TEST(CheckEnvelope, OptionalHeaderFieldsMayBeEmpty) {
  v1::Envelope e = ValidEnvelope();
  e.clear_correlation_id();
  e.clear_created_at();
  e.clear_trace();
  EXPECT_TRUE(CheckEnvelope(e, kLimit, Types()).ok());
}

TEST(CheckEnvelope, BadMessageId) {
  for (absl::string_view id : {"", "42", "123e4567e89b42d3a456426614174000",
                               "123e4567-e89b-42d3-a456-42661417400g",
                               "{123e4567-e89b-42d3-a456-426614174000}"}) {
    v1::Envelope e = ValidEnvelope();
    e.set_message_id(std::string(id));
    SCOPED_TRACE(std::string(id));
    ExpectInvalid(e, "message_id");
  }
}

TEST(CheckEnvelope, BadSender) {
  for (absl::string_view sender : {"", "0000009930000000001", "000000993000000000140",
                                   "0000009930000000001x", "gemeente:0014"}) {
    v1::Envelope e = ValidEnvelope();
    e.set_sender(std::string(sender));
    SCOPED_TRACE(std::string(sender));
    ExpectInvalid(e, "sender");
  }
}

TEST(CheckEnvelope, EmptyRecipient) {
  v1::Envelope e = ValidEnvelope();
  e.clear_recipient();
  ExpectInvalid(e, "recipient");
}

TEST(CheckEnvelope, EmptyPurpose) {
  v1::Envelope e = ValidEnvelope();
  e.clear_purpose();
  ExpectInvalid(e, "purpose");
}

TEST(CheckEnvelope, MissingPayload) {
  v1::Envelope e = ValidEnvelope();
  e.clear_payload();
  ExpectInvalid(e, "payload");
}

TEST(CheckEnvelope, PayloadWithoutTypeUrl) {
  v1::Envelope e = ValidEnvelope();
  e.mutable_payload()->clear_type_url();
  ExpectInvalid(e, "payload");
}

TEST(CheckEnvelope, EmptyPayloadValue) {
  v1::Envelope e = ValidEnvelope();
  e.mutable_payload()->clear_value();
  ExpectInvalid(e, "payload");
}

TEST(CheckEnvelope, UnknownMessageType) {
  v1::Envelope e = ValidEnvelope();
  e.mutable_payload()->set_type_url("type.googleapis.com/gemeente.brp.v1.Onbekend");
  ExpectInvalid(e, "unknown message type");
  ExpectInvalid(e, "gemeente.brp.v1.Onbekend");

  e.mutable_payload()->set_type_url("type.googleapis.com/");
  ExpectInvalid(e, "unknown message type");
}

TEST(CheckEnvelope, PayloadOverLimitIsResourceExhausted) {
  v1::Envelope e = ValidEnvelope();
  e.mutable_payload()->set_value(std::string(kLimit + 1, 'x'));
  absl::StatusOr<absl::string_view> type = CheckEnvelope(e, kLimit, Types());
  ASSERT_FALSE(type.ok());
  EXPECT_EQ(type.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(type.status().message(), HasSubstr("1025"));
  EXPECT_THAT(type.status().message(), HasSubstr("1024"));
}

TEST(CheckEnvelope, PayloadAtLimitPasses) {
  v1::Envelope e = ValidEnvelope();
  e.mutable_payload()->set_value(std::string(kLimit, 'x'));  // not parsed, only counted
  absl::StatusOr<absl::string_view> type = CheckEnvelope(e, kLimit, Types());
  ASSERT_TRUE(type.ok()) << type.status();
  EXPECT_EQ(*type, "gemeente.brp.v1.PersoonVraag");
}

TEST(CheckEnvelope, ReportsTheFirstBadFieldInHeaderOrder) {
  v1::Envelope e;  // everything missing
  ExpectInvalid(e, "message_id");
  e.set_message_id("123e4567-e89b-42d3-a456-426614174000");
  ExpectInvalid(e, "sender");
  e.set_sender("00000099300000000014");
  ExpectInvalid(e, "recipient");
  e.set_recipient("00000099200000000001");
  ExpectInvalid(e, "purpose");
  e.set_purpose("BRP-bevraging");
  ExpectInvalid(e, "payload");
}

TEST(MessageTypeOf, StripsEverythingUpToTheLastSlash) {
  EXPECT_EQ(MessageTypeOf("type.googleapis.com/gemeente.brp.v1.PersoonVraag"),
            "gemeente.brp.v1.PersoonVraag");
  EXPECT_EQ(MessageTypeOf("example.org/a/b/gemeente.brp.v1.Persoon"), "gemeente.brp.v1.Persoon");
  EXPECT_EQ(MessageTypeOf("gemeente.brp.v1.Persoon"), "gemeente.brp.v1.Persoon");
  EXPECT_EQ(MessageTypeOf("type.googleapis.com/"), "");
  EXPECT_EQ(MessageTypeOf(""), "");
}

}  // namespace
}  // namespace knooppunt::exchange
