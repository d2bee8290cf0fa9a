#include "gateway/policy/agreement_book.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/policy/policy_test_util.h"

namespace knooppunt::policy::test {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;
using config::v1::EXCHANGE_MODE_BEVRAGING;
using config::v1::EXCHANGE_MODE_MELDING;

absl::Time Utc(int y, int m, int d, int hh = 0, int mm = 0, int ss = 0) {
  return absl::FromCivil(absl::CivilSecond(y, m, d, hh, mm, ss), absl::UTCTimeZone());
}

class AgreementBookTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Registry> registry = RegistryFromYaml(kRegistryYaml);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }

  absl::StatusOr<AgreementBook> Build(absl::string_view yaml,
                                      absl::string_view file = "agreements.yaml") {
    return AgreementBook::Build({AgreementFileFromYaml(yaml, file)}, registry_, DomainTypes());
  }

  Registry registry_;
};

// ---------------------------------------------------------------------------------------
// Build() errors: each YAML numbers its lines in trailing comments.

TEST_F(AgreementBookTest, UnknownMessageType) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: onbekend                                      # 2
    message_type: gemeente.brp.v1.Onbekend            # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
)yaml";
  const absl::Status status = Build(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("agreements.yaml", 3, "unknown message type"));
  EXPECT_THAT(status.message(), HasSubstr("gemeente.brp.v1.Onbekend"));
  EXPECT_THAT(status.message(), HasSubstr("agreements[0].message_type"));
}

TEST_F(AgreementBookTest, MissingMessageTypeAndMode) {
  constexpr absl::string_view kNoType = R"yaml(agreements:   # 1
  - id: zonder-type                                   # 2
    mode: melding                                     # 3
    from: ["00000099100000000001"]                    # 4
    to: [group:gemeenten]                             # 5
    purposes: [BRP-bijhouding]                        # 6
    fields: {all: true}                               # 7
)yaml";
  EXPECT_THAT(Build(kNoType).status(), IsErrorAt("agreements.yaml", 2, "needs a message_type"));
  constexpr absl::string_view kNoMode = R"yaml(agreements:   # 1
  - id: zonder-mode                                   # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    from: ["00000099100000000001"]                    # 4
    to: [group:gemeenten]                             # 5
    purposes: [BRP-bijhouding]                        # 6
    fields: {all: true}                               # 7
)yaml";
  EXPECT_THAT(Build(kNoMode).status(), IsErrorAt("agreements.yaml", 2, "needs a mode"));
  constexpr absl::string_view kNoId = R"yaml(agreements:   # 1
  - message_type: gemeente.verhuizen.v1.Verhuismelding  # 2
    mode: melding                                     # 3
    from: ["00000099100000000001"]                    # 4
    to: [group:gemeenten]                             # 5
    purposes: [BRP-bijhouding]                        # 6
    fields: {all: true}                               # 7
)yaml";
  EXPECT_THAT(Build(kNoId).status(), IsErrorAt("agreements.yaml", 2, "needs an id"));
}

TEST_F(AgreementBookTest, UnknownReplyType) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: brp-bevragen                                  # 2
    message_type: gemeente.brp.v1.PersoonVraag        # 3
    reply_type: gemeente.brp.v1.Persoonn              # 4
    mode: bevraging                                   # 5
    from: [group:brp-afnemers]                        # 6
    to: ["00000099200000000001"]                      # 7
    purposes: [BRP-bevraging]                         # 8
    fields: {all: true}                               # 9
    reply_fields: {all: true}                         # 10
)yaml";
  const absl::Status status = Build(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("agreements.yaml", 4, "unknown message type"));
  EXPECT_THAT(status.message(), HasSubstr("gemeente.brp.v1.Persoonn"));
}

TEST_F(AgreementBookTest, BevragingWithoutReplyType) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
  - id: brp-bevragen                                  # 9
    message_type: gemeente.brp.v1.PersoonVraag        # 10
    mode: bevraging                                   # 11
    from: [group:brp-afnemers]                        # 12
    to: ["00000099200000000001"]                      # 13
    purposes: [BRP-bevraging]                         # 14
    fields: {all: true}                               # 15
)yaml";
  const absl::Status status = Build(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("agreements.yaml", 9, "needs a reply_type"));
  EXPECT_THAT(status.message(), HasSubstr("agreements[1]"));
}

TEST_F(AgreementBookTest, MeldingWithReplyType) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    reply_type: gemeente.brp.v1.Persoon               # 4
    mode: melding                                     # 5
    from: ["00000099100000000001"]                    # 6
    to: [group:gemeenten]                             # 7
    purposes: [BRP-bijhouding]                        # 8
    fields: {all: true}                               # 9
    reply_fields: {all: true}                         # 10
)yaml";
  EXPECT_THAT(Build(kYaml).status(), IsErrorAt("agreements.yaml", 4, "melding has no reply_type"));
}

TEST_F(AgreementBookTest, UnknownGroupInFrom) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from:                                             # 5
      - "00000099100000000001"                        # 6
      - group:landelijk                               # 7
    to: [group:gemeenten]                             # 8
    purposes: [BRP-bijhouding]                        # 9
    fields: {all: true}                               # 10
)yaml";
  const absl::Status status = Build(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("agreements.yaml", 7, "unknown group 'group:landelijk'"));
  EXPECT_THAT(status.message(), HasSubstr("agreements[0].from[1]"));
}

TEST_F(AgreementBookTest, UnknownGroupInTo) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to:                                               # 6
      - group:gemeentes                               # 7
    purposes: [BRP-bijhouding]                        # 8
    fields: {all: true}                               # 9
)yaml";
  const absl::Status status = Build(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("agreements.yaml", 7, "unknown group 'group:gemeentes'"));
  EXPECT_THAT(status.message(), HasSubstr("agreements[0].to[0]"));
}

TEST_F(AgreementBookTest, MalformedOinInTo) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: brp-bevragen                                  # 2
    message_type: gemeente.brp.v1.PersoonVraag        # 3
    reply_type: gemeente.brp.v1.Persoon               # 4
    mode: bevraging                                   # 5
    from: [group:brp-afnemers]                        # 6
    to:                                               # 7
      - "00000099200000000001"                        # 8
      - "0000009920000000001"                         # 9
    purposes: [BRP-bevraging]                         # 10
    fields: {all: true}                               # 11
    reply_fields: {all: true}                         # 12
)yaml";
  const absl::Status status = Build(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("agreements.yaml", 9, "agreements[0].to[1]"));
  EXPECT_THAT(status.message(), HasSubstr("neither an OIN"));
}

TEST_F(AgreementBookTest, UnregisteredOinAndUnknownGemeente) {
  constexpr absl::string_view kOin = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000002"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
)yaml";
  EXPECT_THAT(Build(kOin).status(), IsErrorAt("agreements.yaml", 5, "not in the registry"));
  constexpr absl::string_view kGemeente = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [gemeente:0599]                               # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
)yaml";
  EXPECT_THAT(Build(kGemeente).status(), IsErrorAt("agreements.yaml", 6, "0599"));
}

TEST_F(AgreementBookTest, EmptyPartyList) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: []                                            # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
)yaml";
  EXPECT_THAT(Build(kYaml).status(), IsErrorAt("agreements.yaml", 6, "at least one party"));
}

TEST_F(AgreementBookTest, DuplicateIdAcrossFilesNamesFirstLocation) {
  constexpr absl::string_view kFirst = R"yaml(agreements:   # 1
  - id: verhuizen-a                                   # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
  - id: dubbel                                        # 9
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 10
    mode: melding                                     # 11
    from: ["00000099100000000001"]                    # 12
    to: [gemeente:0014]                               # 13
    purposes: [BRP-bijhouding]                        # 14
    fields: {all: true}                               # 15
)yaml";
  constexpr absl::string_view kSecond = R"yaml(# second file   # 1
agreements:                                           # 2
  - id: dubbel                                        # 3
    message_type: gemeente.brp.v1.PersoonVraag        # 4
    reply_type: gemeente.brp.v1.Persoon               # 5
    mode: bevraging                                   # 6
    from: [group:brp-afnemers]                        # 7
    to: ["00000099200000000001"]                      # 8
    purposes: [BRP-bevraging]                         # 9
    fields: {all: true}                               # 10
    reply_fields: {all: true}                         # 11
)yaml";
  const absl::Status status =
      AgreementBook::Build({AgreementFileFromYaml(kFirst, "a.yaml"),
                            AgreementFileFromYaml(kSecond, "b.yaml")},
                           registry_, DomainTypes())
          .status();
  EXPECT_THAT(status, IsErrorAt("b.yaml", 3, "agreement id 'dubbel' is already used at"));
  EXPECT_THAT(status.message(), HasSubstr("a.yaml:9:"));
}

TEST_F(AgreementBookTest, DuplicateIdWithinOneFile) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: dubbel                                        # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
  - id: dubbel                                        # 9
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 10
    mode: melding                                     # 11
    from: ["00000099100000000001"]                    # 12
    to: [group:gemeenten]                             # 13
    purposes: [BRP-bijhouding]                        # 14
    fields: {all: true}                               # 15
)yaml";
  const absl::Status status = Build(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("agreements.yaml", 9, "already used at agreements.yaml:2:"));
}

TEST_F(AgreementBookTest, ValidUntilBeforeValidFrom) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes: [BRP-bijhouding]                        # 7
    valid_from: 2027-01-01                            # 8
    valid_until: 2026-01-01                           # 9
    fields: {all: true}                               # 10
)yaml";
  EXPECT_THAT(Build(kYaml).status(),
              IsErrorAt("agreements.yaml", 9, "valid_until must be after valid_from"));
}

TEST_F(AgreementBookTest, ValidUntilEqualToValidFrom) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes: [BRP-bijhouding]                        # 7
    valid_from: 2027-01-01T00:00:00Z                  # 8
    valid_until: 2027-01-01T01:00:00+01:00            # 9
    fields: {all: true}                               # 10
)yaml";
  EXPECT_THAT(Build(kYaml).status(),
              IsErrorAt("agreements.yaml", 9, "valid_until must be after valid_from"));
}

TEST_F(AgreementBookTest, MissingPurposes) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    fields: {all: true}                               # 7
)yaml";
  EXPECT_THAT(Build(kYaml).status(),
              IsErrorAt("agreements.yaml", 2, "needs at least one purpose"));
}

TEST_F(AgreementBookTest, EmptyPurpose) {
  constexpr absl::string_view kYaml = R"yaml(agreements:   # 1
  - id: verhuizen                                     # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten]                             # 6
    purposes:                                         # 7
      - BRP-bijhouding                                # 8
      - ""                                            # 9
    fields: {all: true}                               # 10
)yaml";
  EXPECT_THAT(Build(kYaml).status(), IsErrorAt("agreements.yaml", 9, "empty purpose"));
}

TEST_F(AgreementBookTest, NoFilesIsAnEmptyBook) {
  absl::StatusOr<AgreementBook> book = AgreementBook::Build({}, registry_, DomainTypes());
  ASSERT_TRUE(book.ok()) << book.status();
  EXPECT_TRUE(book->agreements().empty());
  ExchangeFacts facts;
  facts.sender_oin = kVerhuizen;
  facts.recipient_oin = kZaanstad;
  facts.message_type = "gemeente.verhuizen.v1.Verhuismelding";
  facts.purpose = "BRP-bijhouding";
  facts.mode = EXCHANGE_MODE_MELDING;
  facts.at = Utc(2026, 6, 1);
  const Decision d = book->Decide(facts);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kMessageType);
}

// ---------------------------------------------------------------------------------------
// Decide()

constexpr absl::string_view kAgreementsYaml = R"yaml(agreements:
  - id: brp-bevragen-afnemers
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: [group:brp-afnemers]
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging, BRP-bijhouding]
    valid_from: 2026-01-01
    valid_until: 2028-01-01
    fields: {all: true}
    reply_fields: {all: true}
  - id: verhuizen-naar-gemeenten
    message_type: gemeente.verhuizen.v1.Verhuismelding
    mode: melding
    from: ["00000099100000000001"]
    to: [group:gemeenten]
    purposes: [BRP-bijhouding]
    fields: {all: true}
  - id: zaak-amsterdam-groningen
    message_type: gemeente.zaken.v1.ZaakAanmaken
    mode: melding
    from: [gemeente:0363]
    to: [gemeente:0014]
    purposes: [zaakoverdracht]
    fields: {all: true}
  - id: geheim-groningen-amsterdam
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: ["00000099300000000014"]
    to: ["00000099300000000363"]
    purposes: [geheim-doel]
    valid_from: 2020-01-01
    valid_until: 2021-01-01
    fields: {all: true}
    reply_fields: {all: true}
)yaml";

constexpr absl::string_view kPersoonVraag = "gemeente.brp.v1.PersoonVraag";
constexpr absl::string_view kVerhuismelding = "gemeente.verhuizen.v1.Verhuismelding";
constexpr absl::string_view kZaakAanmaken = "gemeente.zaken.v1.ZaakAanmaken";

class DecideTest : public AgreementBookTest {
 protected:
  void SetUp() override {
    AgreementBookTest::SetUp();
    absl::StatusOr<AgreementBook> book = Build(kAgreementsYaml, "policies.yaml");
    ASSERT_TRUE(book.ok()) << book.status();
    book_ = *std::move(book);
  }

  // A BRP query by Groningen that the first agreement allows.
  static ExchangeFacts BrpQuery() {
    ExchangeFacts f;
    f.sender_oin = kGroningen;
    f.recipient_oin = kBrp;
    f.message_type = kPersoonVraag;
    f.purpose = "BRP-bevraging";
    f.mode = EXCHANGE_MODE_BEVRAGING;
    f.at = Utc(2026, 6, 1, 12);
    return f;
  }

  Decision Decide(const ExchangeFacts& f) const { return book_.Decide(f); }

  AgreementBook book_;
};

TEST_F(DecideTest, CompiledAgreements) {
  ASSERT_EQ(book_.agreements().size(), 4u);
  // Sorted by id.
  EXPECT_EQ(book_.agreements()[0].id, "brp-bevragen-afnemers");
  EXPECT_EQ(book_.agreements()[1].id, "geheim-groningen-amsterdam");
  EXPECT_EQ(book_.agreements()[2].id, "verhuizen-naar-gemeenten");
  EXPECT_EQ(book_.agreements()[3].id, "zaak-amsterdam-groningen");
  const CompiledAgreement& brp = book_.agreements()[0];
  EXPECT_THAT(brp.senders, UnorderedElementsAre(kGroningen, kAmsterdam));
  EXPECT_THAT(brp.recipients, UnorderedElementsAre(kBrp));
  EXPECT_THAT(brp.purposes, UnorderedElementsAre("BRP-bevraging", "BRP-bijhouding"));
  EXPECT_EQ(brp.reply_type, "gemeente.brp.v1.Persoon");
  EXPECT_EQ(brp.valid_from, Utc(2026, 1, 1));
  EXPECT_EQ(brp.valid_until, Utc(2028, 1, 1));
  EXPECT_EQ(brp.source, "policies.yaml:2:5");
  const CompiledAgreement& verhuizen = book_.agreements()[2];
  EXPECT_EQ(verhuizen.valid_from, absl::InfinitePast());
  EXPECT_EQ(verhuizen.valid_until, absl::InfiniteFuture());
}

TEST_F(DecideTest, AllowedViaGroup) {
  const Decision d = Decide(BrpQuery());
  ASSERT_TRUE(d.allowed()) << d.reason;
  EXPECT_EQ(d.agreement->id, "brp-bevragen-afnemers");
  EXPECT_EQ(d.denied_on, DeniedOn::kNothing);
  EXPECT_TRUE(d.reason.empty());

  ExchangeFacts amsterdam = BrpQuery();
  amsterdam.sender_oin = kAmsterdam;
  amsterdam.purpose = "BRP-bijhouding";
  ASSERT_TRUE(Decide(amsterdam).allowed()) << Decide(amsterdam).reason;
}

TEST_F(DecideTest, AllowedViaOinToGroup) {
  ExchangeFacts f;
  f.sender_oin = kVerhuizen;
  f.message_type = kVerhuismelding;
  f.purpose = "BRP-bijhouding";
  f.mode = EXCHANGE_MODE_MELDING;
  f.at = Utc(2035, 1, 1);  // no period: always in force
  for (absl::string_view recipient : {kGroningen, kZaanstad, kAmsterdam}) {
    f.recipient_oin = recipient;
    const Decision d = Decide(f);
    ASSERT_TRUE(d.allowed()) << recipient << ": " << d.reason;
    EXPECT_EQ(d.agreement->id, "verhuizen-naar-gemeenten");
  }
  f.recipient_oin = kBrp;  // not in group gemeenten
  EXPECT_EQ(Decide(f).denied_on, DeniedOn::kRecipient);
}

TEST_F(DecideTest, AllowedViaGemeentecode) {
  ExchangeFacts f;
  f.sender_oin = kAmsterdam;
  f.recipient_oin = kGroningen;
  f.message_type = kZaakAanmaken;
  f.purpose = "zaakoverdracht";
  f.mode = EXCHANGE_MODE_MELDING;
  f.at = Utc(2026, 6, 1);
  const Decision d = Decide(f);
  ASSERT_TRUE(d.allowed()) << d.reason;
  EXPECT_EQ(d.agreement->id, "zaak-amsterdam-groningen");

  // The agreement is one way only.
  f.sender_oin = kGroningen;
  f.recipient_oin = kAmsterdam;
  EXPECT_EQ(Decide(f).denied_on, DeniedOn::kMessageType);
}

TEST_F(DecideTest, DeniedOnMessageType) {
  ExchangeFacts f = BrpQuery();
  f.sender_oin = kZaanstad;  // in gemeenten, not in brp-afnemers
  Decision d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kMessageType);
  EXPECT_THAT(d.reason, HasSubstr(std::string(kPersoonVraag)));

  f = BrpQuery();
  f.message_type = "gemeente.overlijden.v1.AangifteOverlijden";  // no agreement at all
  d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kMessageType);

  f = BrpQuery();
  f.sender_oin = "00000099999999999999";  // not even registered
  EXPECT_EQ(Decide(f).denied_on, DeniedOn::kMessageType);
}

TEST_F(DecideTest, DeniedOnRecipient) {
  ExchangeFacts f = BrpQuery();
  f.recipient_oin = kZaanstad;
  const Decision d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kRecipient);
  EXPECT_THAT(d.reason, HasSubstr(std::string(kZaanstad)));
}

TEST_F(DecideTest, DeniedOnPurpose) {
  ExchangeFacts f = BrpQuery();
  f.purpose = "nieuwsgierigheid";
  const Decision d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kPurpose);
  EXPECT_THAT(d.reason, HasSubstr("nieuwsgierigheid"));
  // Purposes are matched exactly.
  f.purpose = "brp-bevraging";
  EXPECT_EQ(Decide(f).denied_on, DeniedOn::kPurpose);
  f.purpose = "";
  EXPECT_EQ(Decide(f).denied_on, DeniedOn::kPurpose);
}

TEST_F(DecideTest, DeniedOnMode) {
  ExchangeFacts f = BrpQuery();
  f.mode = EXCHANGE_MODE_MELDING;
  Decision d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kMode);
  EXPECT_THAT(d.reason, HasSubstr("melding"));

  ExchangeFacts v;
  v.sender_oin = kVerhuizen;
  v.recipient_oin = kZaanstad;
  v.message_type = kVerhuismelding;
  v.purpose = "BRP-bijhouding";
  v.mode = EXCHANGE_MODE_BEVRAGING;
  v.at = Utc(2026, 6, 1);
  d = Decide(v);
  EXPECT_EQ(d.denied_on, DeniedOn::kMode);
  EXPECT_THAT(d.reason, HasSubstr("bevraging"));
}

TEST_F(DecideTest, PeriodValidFromIsInclusive) {
  ExchangeFacts f = BrpQuery();
  f.at = Utc(2026, 1, 1);
  const Decision d = Decide(f);
  EXPECT_TRUE(d.allowed()) << d.reason;
}

TEST_F(DecideTest, PeriodDeniedJustBeforeValidFrom) {
  ExchangeFacts f = BrpQuery();
  f.at = Utc(2026, 1, 1) - absl::Nanoseconds(1);
  Decision d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kPeriod);
  // The sender is a party, so the agreement may be named.
  EXPECT_THAT(d.reason, HasSubstr("brp-bevragen-afnemers"));
  f.at = Utc(2025, 6, 1);
  EXPECT_EQ(Decide(f).denied_on, DeniedOn::kPeriod);
}

TEST_F(DecideTest, PeriodValidUntilIsExclusive) {
  ExchangeFacts f = BrpQuery();
  f.at = Utc(2028, 1, 1) - absl::Nanoseconds(1);
  EXPECT_TRUE(Decide(f).allowed()) << Decide(f).reason;
  f.at = Utc(2028, 1, 1);
  const Decision d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kPeriod);
  EXPECT_THAT(d.reason, HasSubstr("2028-01-01T00:00:00Z"));
}

TEST_F(DecideTest, PeriodDeniedAfterValidUntil) {
  ExchangeFacts f = BrpQuery();
  f.at = Utc(2030, 3, 15, 8, 30);
  const Decision d = Decide(f);
  EXPECT_FALSE(d.allowed());
  EXPECT_EQ(d.denied_on, DeniedOn::kPeriod);
}

TEST_F(DecideTest, PeriodOfAnotherOwnAgreement) {
  // Groningen is party to both PersoonVraag agreements; the one to Amsterdam ran in 2020.
  ExchangeFacts f = BrpQuery();
  f.recipient_oin = kAmsterdam;
  f.purpose = "geheim-doel";
  f.at = Utc(2020, 6, 1);
  Decision d = Decide(f);
  ASSERT_TRUE(d.allowed()) << d.reason;
  EXPECT_EQ(d.agreement->id, "geheim-groningen-amsterdam");
  f.at = Utc(2026, 6, 1);
  d = Decide(f);
  EXPECT_EQ(d.denied_on, DeniedOn::kPeriod);
  EXPECT_THAT(d.reason, HasSubstr("geheim-groningen-amsterdam"));
}

// A denial looks only at agreements the sender is a party to, so it never names (or hints
// at) an agreement between other parties.
TEST_F(DecideTest, DenialNeverMentionsAgreementsOfOtherParties) {
  std::vector<ExchangeFacts> attempts;
  ExchangeFacts f = BrpQuery();
  f.sender_oin = kZaanstad;
  attempts.push_back(f);  // same type and recipient as brp-bevragen-afnemers
  f.recipient_oin = kAmsterdam;
  f.purpose = "geheim-doel";
  f.at = Utc(2020, 6, 1);
  attempts.push_back(f);  // exactly what geheim-groningen-amsterdam allows Groningen
  f.at = Utc(2026, 6, 1);
  attempts.push_back(f);
  f.mode = EXCHANGE_MODE_MELDING;
  attempts.push_back(f);
  f.message_type = kZaakAanmaken;
  f.recipient_oin = kGroningen;
  f.purpose = "zaakoverdracht";
  attempts.push_back(f);  // what zaak-amsterdam-groningen allows Amsterdam
  for (const ExchangeFacts& attempt : attempts) {
    const Decision d = Decide(attempt);
    EXPECT_FALSE(d.allowed());
    EXPECT_EQ(d.denied_on, DeniedOn::kMessageType) << d.reason;
    for (const CompiledAgreement& a : book_.agreements()) {
      EXPECT_THAT(d.reason, Not(HasSubstr(a.id)));
    }
    EXPECT_THAT(d.reason, Not(HasSubstr("geheim")));
    EXPECT_THAT(d.reason, Not(HasSubstr("policies.yaml")));
  }

  // Amsterdam is party to brp-bevragen-afnemers but not to the secret agreement: a period
  // denial on its own agreement must not name the secret one either.
  f = BrpQuery();
  f.sender_oin = kAmsterdam;
  f.at = Utc(2020, 6, 1);  // the secret agreement's period, before Amsterdam's
  const Decision d = Decide(f);
  EXPECT_EQ(d.denied_on, DeniedOn::kPeriod);
  EXPECT_THAT(d.reason, HasSubstr("brp-bevragen-afnemers"));
  EXPECT_THAT(d.reason, Not(HasSubstr("geheim")));
}

TEST(DeniedOnName, NamesEveryDimension) {
  EXPECT_EQ(DeniedOnName(DeniedOn::kNothing), "none");
  EXPECT_EQ(DeniedOnName(DeniedOn::kMessageType), "message_type");
  EXPECT_EQ(DeniedOnName(DeniedOn::kRecipient), "recipient");
  EXPECT_EQ(DeniedOnName(DeniedOn::kPurpose), "purpose");
  EXPECT_EQ(DeniedOnName(DeniedOn::kMode), "mode");
  EXPECT_EQ(DeniedOnName(DeniedOn::kPeriod), "period");
}

}  // namespace
}  // namespace knooppunt::policy::test
