// Field lists and rate limits in agreements: compiled at load time against the message types,
// every mistake an error with file:line.
#include <string>

#include "absl/status/status.h"
#include "gateway/policy/agreement_book.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/policy/policy_test_util.h"

namespace knooppunt::policy::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class FieldPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Registry> registry = RegistryFromYaml(kRegistryYaml);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }
  absl::StatusOr<AgreementBook> Build(absl::string_view yaml) {
    return AgreementBook::Build({AgreementFileFromYaml(yaml, "fields.yaml")}, registry_,
                                DomainTypes());
  }
  Registry registry_;
};

// A bevraging agreement; `extra` is appended to it (lines 9 and on).
std::string Brp(absl::string_view extra) {
  return absl::StrCat(R"yaml(agreements:
  - id: brp
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: [group:brp-afnemers]
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging]
)yaml",
                      extra);
}

TEST_F(FieldPolicyTest, FieldListsAreCompiledAgainstTheTypes) {
  absl::StatusOr<AgreementBook> book = Build(Brp(R"yaml(    fields: {all: true}
    reply_fields:
      allow: [bsn, naam.voornamen, ouders.bsn, verblijfplaats, indicaties]
)yaml"));
  ASSERT_TRUE(book.ok()) << book.status();
  const CompiledAgreement& a = book->agreements().at(0);
  EXPECT_TRUE(a.fields.all());
  EXPECT_EQ(a.fields.type()->full_name(), "gemeente.brp.v1.PersoonVraag");
  EXPECT_FALSE(a.reply_fields.all());
  EXPECT_EQ(a.reply_fields.type()->full_name(), "gemeente.brp.v1.Persoon");
  EXPECT_THAT(a.reply_fields.AllowedPaths(),
              ElementsAre("bsn", "indicaties", "naam.voornamen", "ouders.bsn", "verblijfplaats"));
  EXPECT_FALSE(a.has_rate);
}

TEST_F(FieldPolicyTest, AnAgreementMustChooseFieldsOrAll) {
  EXPECT_THAT(Build(Brp("")).status(), IsErrorAt("fields.yaml", 2, "needs fields"));
  EXPECT_THAT(Build(Brp("    fields: {all: true}\n")).status(),
              IsErrorAt("fields.yaml", 2, "needs reply_fields"));
  EXPECT_THAT(Build(Brp("    fields: {}\n    reply_fields: {all: true}\n")).status(),
              IsErrorAt("fields.yaml", 9, "name the fields that pass"));
  EXPECT_THAT(
      Build(Brp("    fields: {all: true, allow: [bsn]}\n    reply_fields: {all: true}\n")).status(),
      IsErrorAt("fields.yaml", 9, "not both"));
}

TEST_F(FieldPolicyTest, UnknownPathIsAnErrorAtItsLine) {
  const absl::Status status = Build(Brp(R"yaml(    fields: {all: true}
    reply_fields:
      allow:
        - bsn
        - naam.roepnaam
)yaml")).status();
  EXPECT_THAT(status, IsErrorAt("fields.yaml", 13, "gemeente.common.v1.Naam has no field 'roepnaam'"));
  EXPECT_THAT(status.message(), HasSubstr("agreements[0].reply_fields.allow[1]"));

  EXPECT_THAT(Build(Brp(R"yaml(    fields:
      allow: [bsn, peildatum.eeuw]
    reply_fields: {all: true}
)yaml")).status(),
              IsErrorAt("fields.yaml", 10, "has no field 'eeuw'"));
}

TEST_F(FieldPolicyTest, ReplyFieldsNeedAReplyType) {
  constexpr absl::string_view kYaml = R"yaml(agreements:
  - id: verhuizen
    message_type: gemeente.verhuizen.v1.Verhuismelding
    mode: melding
    from: ["00000099100000000001"]
    to: [group:gemeenten]
    purposes: [BRP-bijhouding]
    fields:
      allow: [bsn, nieuw_adres, datum_verhuizing, meeverhuizenden.bsn]
    reply_fields: {all: true}
)yaml";
  EXPECT_THAT(Build(kYaml).status(), IsErrorAt("fields.yaml", 10, "reply_fields without a reply_type"));
}

TEST_F(FieldPolicyTest, RateLimits) {
  absl::StatusOr<AgreementBook> book = Build(Brp(R"yaml(    fields: {all: true}
    reply_fields: {all: true}
    rate: {per_second: 2.5, per: sender}
)yaml"));
  ASSERT_TRUE(book.ok()) << book.status();
  const CompiledAgreement& a = book->agreements().at(0);
  EXPECT_TRUE(a.has_rate);
  EXPECT_TRUE(a.rate_per_sender);
  EXPECT_DOUBLE_EQ(a.rate.per_second, 2.5);
  EXPECT_DOUBLE_EQ(a.rate.burst, 3);  // per_second rounded up

  book = Build(Brp(R"yaml(    fields: {all: true}
    reply_fields: {all: true}
    rate: {per_second: 10, burst: 1, per: agreement}
)yaml"));
  ASSERT_TRUE(book.ok()) << book.status();
  EXPECT_FALSE(book->agreements().at(0).rate_per_sender);
  EXPECT_DOUBLE_EQ(book->agreements().at(0).rate.burst, 1);

  EXPECT_THAT(Build(Brp(R"yaml(    fields: {all: true}
    reply_fields: {all: true}
    rate:
      per_second: 0
      per: sender
)yaml")).status(),
              IsErrorAt("fields.yaml", 12, "per_second must be above 0"));
  EXPECT_THAT(Build(Brp(R"yaml(    fields: {all: true}
    reply_fields: {all: true}
    rate:
      per_second: 5
)yaml")).status(),
              IsErrorAt("fields.yaml", 11, "per: sender or per: agreement"));
}

}  // namespace
}  // namespace knooppunt::policy::test
