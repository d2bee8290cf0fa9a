#include "gateway/policy/registry.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/policy/policy_test_util.h"

namespace knooppunt::policy::test {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// Each error YAML below numbers its lines in a trailing comment, so the expected line is
// visible next to the text.

TEST(RegistryBuild, DemoRegistryBuilds) {
  absl::StatusOr<Registry> registry = RegistryFromYaml(kRegistryYaml);
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_EQ(registry->organisations().size(), 6u);
  const Organisation* groningen = registry->FindByOin(kGroningen);
  ASSERT_NE(groningen, nullptr);
  EXPECT_EQ(groningen->name, "Gemeente Groningen");
  EXPECT_EQ(groningen->kind, config::v1::ORGANISATION_KIND_MUNICIPALITY);
  EXPECT_EQ(groningen->gemeentecode, "0014");
  EXPECT_EQ(groningen->endpoint_address, "groningen.knooppunt.test:443");
  EXPECT_EQ(groningen->tls_server_name, "groningen.knooppunt.test");
  EXPECT_THAT(groningen->groups, ElementsAre("gemeenten", "brp-afnemers"));
  const Organisation* verhuizen = registry->FindByOin(kVerhuizen);
  ASSERT_NE(verhuizen, nullptr);
  EXPECT_TRUE(verhuizen->endpoint_address.empty());
  EXPECT_TRUE(verhuizen->gemeentecode.empty());
  EXPECT_EQ(registry->FindByOin("00000099999999999999"), nullptr);
}

TEST(RegistryBuild, EmptyRegistryBuilds) {
  absl::StatusOr<Registry> registry = RegistryFromYaml("");
  ASSERT_TRUE(registry.ok()) << registry.status();
  EXPECT_TRUE(registry->organisations().empty());
}

TEST(RegistryBuild, MalformedOin) {
  constexpr absl::string_view kYaml = R"yaml(organisations:   # 1
  - oin: "00000099100000000001"                      # 2
    name: Verhuizen                                   # 3
    kind: collective_service                          # 4
  - oin: "0000009920000000001"                       # 5
    name: BRP                                         # 6
    kind: register                                    # 7
)yaml";
  EXPECT_THAT(RegistryFromYaml(kYaml).status(),
              IsErrorAt("registry.yaml", 5, "organisations[1].oin"));
  EXPECT_THAT(RegistryFromYaml(kYaml).status(), IsErrorAt("registry.yaml", 5, "20 digits"));
}

TEST(RegistryBuild, OinWithLettersOrUnquotedNumber) {
  constexpr absl::string_view kLetters = R"yaml(organisations:   # 1
  - oin: "0000009910000000000X"                         # 2
    name: Verhuizen                                      # 3
    kind: collective_service                             # 4
)yaml";
  EXPECT_THAT(RegistryFromYaml(kLetters).status(), IsErrorAt("registry.yaml", 2, "20 digits"));
}

TEST(RegistryBuild, DuplicateOin) {
  constexpr absl::string_view kYaml = R"yaml(organisations:   # 1
  - oin: "00000099300000000014"                      # 2
    name: Gemeente Groningen                          # 3
    kind: municipality                                # 4
    gemeentecode: "0014"                              # 5
  - oin: "00000099100000000001"                      # 6
    name: Verhuizen                                   # 7
    kind: collective_service                          # 8
  - oin: "00000099300000000014"                      # 9
    name: Groningen again                             # 10
    kind: register                                    # 11
)yaml";
  EXPECT_THAT(RegistryFromYaml(kYaml).status(),
              IsErrorAt("registry.yaml", 9, "00000099300000000014 is registered twice"));
}

TEST(RegistryBuild, MunicipalityWithoutGemeentecode) {
  constexpr absl::string_view kYaml = R"yaml(organisations:   # 1
  - oin: "00000099100000000001"                      # 2
    name: Verhuizen                                   # 3
    kind: collective_service                          # 4
  - oin: "00000099300000000014"                      # 5
    name: Gemeente Groningen                          # 6
    kind: municipality                                # 7
)yaml";
  // The missing key has no line of its own: the error points at the organisation.
  EXPECT_THAT(RegistryFromYaml(kYaml).status(),
              IsErrorAt("registry.yaml", 5, "needs a 4-digit gemeentecode"));
}

TEST(RegistryBuild, MunicipalityWithMalformedGemeentecode) {
  constexpr absl::string_view kYaml = R"yaml(organisations:   # 1
  - oin: "00000099300000000014"                      # 2
    name: Gemeente Groningen                          # 3
    kind: municipality                                # 4
    gemeentecode: "14"                                # 5
)yaml";
  EXPECT_THAT(RegistryFromYaml(kYaml).status(),
              IsErrorAt("registry.yaml", 5, "needs a 4-digit gemeentecode"));
}

TEST(RegistryBuild, GemeentecodeOnNonMunicipality) {
  constexpr absl::string_view kYaml = R"yaml(organisations:   # 1
  - oin: "00000099200000000001"                      # 2
    name: BRP                                         # 3
    kind: register                                    # 4
    gemeentecode: "0014"                              # 5
)yaml";
  EXPECT_THAT(RegistryFromYaml(kYaml).status(),
              IsErrorAt("registry.yaml", 5, "only a municipality has a gemeentecode"));
}

TEST(RegistryBuild, DuplicateGemeentecode) {
  constexpr absl::string_view kYaml = R"yaml(organisations:   # 1
  - oin: "00000099300000000014"                      # 2
    name: Gemeente Groningen                          # 3
    kind: municipality                                # 4
    gemeentecode: "0014"                              # 5
  - oin: "00000099300000000479"                      # 6
    name: Gemeente Zaanstad                           # 7
    kind: municipality                                # 8
    gemeentecode: "0014"                              # 9
)yaml";
  EXPECT_THAT(RegistryFromYaml(kYaml).status(),
              IsErrorAt("registry.yaml", 9, "gemeentecode 0014 is used twice"));
}

TEST(RegistryBuild, UnknownGroup) {
  constexpr absl::string_view kYaml = R"yaml(groups:   # 1
  - name: gemeenten                                  # 2
organisations:                                       # 3
  - oin: "00000099300000000014"                      # 4
    name: Gemeente Groningen                          # 5
    kind: municipality                                # 6
    gemeentecode: "0014"                              # 7
    groups:                                           # 8
      - gemeenten                                     # 9
      - brp-afnemers                                  # 10
)yaml";
  const absl::Status status = RegistryFromYaml(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("registry.yaml", 10, "unknown group 'brp-afnemers'"));
  EXPECT_THAT(status.message(), HasSubstr("organisations[0].groups[1]"));
}

TEST(RegistryBuild, DuplicateGroupAndBadGroupName) {
  constexpr absl::string_view kDuplicate = R"yaml(groups:   # 1
  - name: gemeenten                                  # 2
  - name: gemeenten                                  # 3
)yaml";
  EXPECT_THAT(RegistryFromYaml(kDuplicate).status(),
              IsErrorAt("registry.yaml", 3, "declared twice"));
  constexpr absl::string_view kBadName = R"yaml(groups:   # 1
  - name: "met spatie"                               # 2
)yaml";
  EXPECT_THAT(RegistryFromYaml(kBadName).status(), IsErrorAt("registry.yaml", 2, "group name"));
}

TEST(RegistryBuild, BadEndpointAddress) {
  for (absl::string_view address : {"127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536",
                                    ":18501", "127.0.0.1:http", "127.0.0.1:"}) {
    const std::string yaml = absl::StrCat(R"yaml(organisations:   # 1
  - oin: "00000099200000000001"                      # 2
    name: BRP                                         # 3
    kind: register                                    # 4
    endpoint:                                         # 5
      address: ")yaml", address, R"yaml("
)yaml");
    EXPECT_THAT(RegistryFromYaml(yaml).status(),
                IsErrorAt("registry.yaml", 6, "endpoint address must be host:port"))
        << address;
  }
}

TEST(RegistryBuild, GoodEndpointAddresses) {
  for (absl::string_view address : {"127.0.0.1:1", "brp.knooppunt.test:65535", "[::1]:8443"}) {
    const std::string yaml = absl::StrCat(R"yaml(organisations:
  - oin: "00000099200000000001"
    name: BRP
    kind: register
    endpoint:
      address: ")yaml", address, R"yaml("
)yaml");
    absl::StatusOr<Registry> registry = RegistryFromYaml(yaml);
    ASSERT_TRUE(registry.ok()) << address << ": " << registry.status();
    EXPECT_EQ(registry->FindByOin(kBrp)->endpoint_address, address);
  }
}

TEST(RegistryBuild, MissingNameOrKind) {
  constexpr absl::string_view kNoName = R"yaml(organisations:   # 1
  - oin: "00000099200000000001"                      # 2
    kind: register                                    # 3
)yaml";
  EXPECT_THAT(RegistryFromYaml(kNoName).status(), IsErrorAt("registry.yaml", 2, "needs a name"));
  constexpr absl::string_view kNoKind = R"yaml(organisations:   # 1
  - oin: "00000099200000000001"                      # 2
    name: BRP                                         # 3
)yaml";
  EXPECT_THAT(RegistryFromYaml(kNoKind).status(), IsErrorAt("registry.yaml", 2, "needs a kind"));
}

TEST(RegistryBuild, UnknownKeyIsRejectedByTheYamlLayer) {
  constexpr absl::string_view kYaml = R"yaml(organisations:   # 1
  - oin: "00000099200000000001"                      # 2
    name: BRP                                         # 3
    kind: register                                    # 4
    colour: blue                                      # 5
)yaml";
  const absl::Status status = RegistryFromYaml(kYaml).status();
  EXPECT_THAT(status, IsErrorAt("registry.yaml", 5, "colour"));
  EXPECT_THAT(status.message(), HasSubstr("unknown key"));
}

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<Registry> registry = RegistryFromYaml(kRegistryYaml);
    ASSERT_TRUE(registry.ok()) << registry.status();
    registry_ = *std::move(registry);
  }
  Registry registry_;
};

TEST_F(RegistryTest, ResolveRecipientByOin) {
  absl::StatusOr<const Organisation*> org = registry_.ResolveRecipient(kBrp);
  ASSERT_TRUE(org.ok()) << org.status();
  EXPECT_EQ((*org)->oin, kBrp);
}

TEST_F(RegistryTest, ResolveRecipientByGemeentecode) {
  absl::StatusOr<const Organisation*> org = registry_.ResolveRecipient("gemeente:0014");
  ASSERT_TRUE(org.ok()) << org.status();
  EXPECT_EQ((*org)->oin, kGroningen);
  org = registry_.ResolveRecipient("gemeente:0479");
  ASSERT_TRUE(org.ok()) << org.status();
  EXPECT_EQ((*org)->oin, kZaanstad);
}

TEST_F(RegistryTest, ResolveRecipientUnknownIsNotFound) {
  EXPECT_EQ(registry_.ResolveRecipient("00000099999999999999").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(registry_.ResolveRecipient("gemeente:0599").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(RegistryTest, ResolveRecipientMalformedIsInvalidArgument) {
  for (absl::string_view recipient :
       {"", "123", "0000009930000000001", "000000993000000000140", "gemeente:", "gemeente:14",
        "gemeente:00140", "gemeente:abcd", "Gemeente:0014", "group:gemeenten",
        " 00000099300000000014"}) {
    EXPECT_EQ(registry_.ResolveRecipient(recipient).status().code(),
              absl::StatusCode::kInvalidArgument)
        << "'" << recipient << "'";
  }
}

TEST_F(RegistryTest, ExpandPartyRef) {
  EXPECT_THAT(*registry_.ExpandPartyRef(kZaanstad), ElementsAre(kZaanstad));
  EXPECT_THAT(*registry_.ExpandPartyRef("gemeente:0363"), ElementsAre(kAmsterdam));
  EXPECT_THAT(*registry_.ExpandPartyRef("group:gemeenten"),
              UnorderedElementsAre(kGroningen, kZaanstad, kAmsterdam));
  EXPECT_THAT(*registry_.ExpandPartyRef("group:brp-afnemers"),
              UnorderedElementsAre(kGroningen, kAmsterdam));
  EXPECT_TRUE(registry_.ExpandPartyRef("group:leeg")->empty());
}

TEST_F(RegistryTest, ExpandPartyRefErrors) {
  for (absl::string_view ref : {"group:onbekend", "group:", "gemeente:0599", "gemeente:14",
                                "00000099999999999999", "12345", "", "gemeenten"}) {
    EXPECT_EQ(registry_.ExpandPartyRef(ref).status().code(), absl::StatusCode::kInvalidArgument)
        << "'" << ref << "'";
  }
}

}  // namespace
}  // namespace knooppunt::policy::test
