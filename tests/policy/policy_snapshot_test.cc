#include "gateway/policy/policy_snapshot.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/policy/policy_test_util.h"

namespace knooppunt::policy::test {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;

constexpr absl::string_view kBrpAgreement = R"yaml(agreements:
  - id: brp-bevragen-afnemers
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: [group:brp-afnemers]
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging]
    valid_from: 2026-01-01
    valid_until: 2028-01-01
    fields: {all: true}
    reply_fields: {all: true}
)yaml";

constexpr absl::string_view kVerhuizenAgreement = R"yaml(agreements:
  - id: verhuizen-naar-gemeenten
    message_type: gemeente.verhuizen.v1.Verhuismelding
    mode: melding
    from: ["00000099100000000001"]
    to: [group:gemeenten]
    purposes: [BRP-bijhouding]
    fields: {all: true}
)yaml";

class LoadPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
    root_ = fs::path(::testing::TempDir()) /
            absl::StrCat("knooppunt_policy_", info->name(), "_", ::getpid());
    fs::remove_all(root_);
    fs::create_directories(root_ / "agreements");
    Write("registry.yaml", kRegistryYaml);
    Write("agreements/brp.yaml", kBrpAgreement);
    Write("agreements/verhuizen.yml", kVerhuizenAgreement);
    Write("agreements/README.txt", "not an agreements file: ignored");
    sources_.registry_file = (root_ / "registry.yaml").string();
    sources_.agreement_dirs = {(root_ / "agreements").string()};
  }
  void TearDown() override { fs::remove_all(root_); }

  void Write(const std::string& relative, absl::string_view content) {
    std::ofstream out(root_ / relative, std::ios::binary | std::ios::trunc);
    out << content;
    ASSERT_TRUE(out.good()) << relative;
  }
  std::string Path(const std::string& relative) const { return (root_ / relative).string(); }

  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> Load() const {
    return LoadPolicy(sources_, DomainTypes());
  }

  fs::path root_;
  PolicySources sources_;
};

TEST_F(LoadPolicyTest, LoadsRegistryAndAgreementDirectory) {
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> snapshot = Load();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  const PolicySnapshot& policy = **snapshot;
  EXPECT_EQ(policy.registry.organisations().size(), 6u);
  ASSERT_EQ(policy.agreements.agreements().size(), 2u);
  EXPECT_EQ(policy.agreements.agreements()[0].id, "brp-bevragen-afnemers");
  EXPECT_EQ(policy.agreements.agreements()[0].source,
            absl::StrCat(Path("agreements/brp.yaml"), ":2:5"));
  EXPECT_EQ(policy.agreements.agreements()[1].id, "verhuizen-naar-gemeenten");
  EXPECT_THAT(policy.version, MatchesRegex("[0-9a-f]{64}"));

  // The compiled book refers to the compiled registry of the same snapshot.
  ExchangeFacts f;
  f.sender_oin = kGroningen;
  f.recipient_oin = kBrp;
  f.message_type = "gemeente.brp.v1.PersoonVraag";
  f.purpose = "BRP-bevraging";
  f.mode = config::v1::EXCHANGE_MODE_BEVRAGING;
  f.at = absl::FromCivil(absl::CivilDay(2026, 6, 1), absl::UTCTimeZone());
  const Decision d = policy.agreements.Decide(f);
  ASSERT_TRUE(d.allowed()) << d.reason;
  EXPECT_EQ(d.agreement->id, "brp-bevragen-afnemers");
}

TEST_F(LoadPolicyTest, AgreementFilesAndDirectoriesCombine) {
  sources_.agreement_dirs.clear();
  sources_.agreement_files = {Path("agreements/verhuizen.yml")};
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> snapshot = Load();
  ASSERT_TRUE(snapshot.ok()) << snapshot.status();
  ASSERT_EQ((*snapshot)->agreements.agreements().size(), 1u);
  EXPECT_EQ((*snapshot)->agreements.agreements()[0].id, "verhuizen-naar-gemeenten");
}

TEST_F(LoadPolicyTest, VersionIsStableForSameContent) {
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> first = Load();
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> second = Load();
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ((*first)->version, (*second)->version);
  // Rewriting a file with identical bytes changes nothing either.
  Write("agreements/brp.yaml", kBrpAgreement);
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> third = Load();
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ((*first)->version, (*third)->version);
}

TEST_F(LoadPolicyTest, VersionChangesWhenAnAgreementFileChanges) {
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> before = Load();
  ASSERT_TRUE(before.ok()) << before.status();
  Write("agreements/verhuizen.yml",
        absl::StrCat(kVerhuizenAgreement, "    valid_until: 2030-01-01\n"));
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> after = Load();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_NE((*before)->version, (*after)->version);
}

TEST_F(LoadPolicyTest, VersionChangesWhenTheRegistryChanges) {
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> before = Load();
  ASSERT_TRUE(before.ok()) << before.status();
  Write("registry.yaml", absl::StrCat(kRegistryYaml, "# a comment is a change too\n"));
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> after = Load();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_NE((*before)->version, (*after)->version);
}

TEST_F(LoadPolicyTest, VersionChangesWhenAFileIsAdded) {
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> before = Load();
  ASSERT_TRUE(before.ok()) << before.status();
  Write("agreements/zz-leeg.yaml", "agreements: []\n");
  absl::StatusOr<std::shared_ptr<const PolicySnapshot>> after = Load();
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ((*after)->agreements.agreements().size(), 2u);
  EXPECT_NE((*before)->version, (*after)->version);
}

TEST_F(LoadPolicyTest, BrokenAgreementFileGivesFileAndLine) {
  Write("agreements/verhuizen.yml", R"yaml(agreements:   # 1
  - id: verhuizen-naar-gemeenten                      # 2
    message_type: gemeente.verhuizen.v1.Verhuismelding  # 3
    mode: melding                                     # 4
    from: ["00000099100000000001"]                    # 5
    to: [group:gemeenten, group:provincies]           # 6
    purposes: [BRP-bijhouding]                        # 7
    fields: {all: true}                               # 8
)yaml");
  EXPECT_THAT(Load().status(),
              IsErrorAt(Path("agreements/verhuizen.yml"), 6, "unknown group 'group:provincies'"));
}

TEST_F(LoadPolicyTest, YamlErrorInAgreementFileGivesFileAndLine) {
  Write("agreements/brp.yaml", R"yaml(agreements:   # 1
  - id: brp-bevragen-afnemers                         # 2
    message_type: gemeente.brp.v1.PersoonVraag        # 3
    reply_type: gemeente.brp.v1.Persoon               # 4
    mode: bevraging                                   # 5
    form: [group:brp-afnemers]                        # 6
    fields: {all: true}                               # 7
    reply_fields: {all: true}                         # 8
)yaml");
  const absl::Status status = Load().status();
  EXPECT_THAT(status, IsErrorAt(Path("agreements/brp.yaml"), 6, "form"));
}

TEST_F(LoadPolicyTest, BrokenRegistryGivesFileAndLine) {
  Write("registry.yaml", R"yaml(organisations:   # 1
  - oin: "00000099200000000001"                      # 2
    name: BRP                                         # 3
    kind: register                                    # 4
    endpoint:                                         # 5
      address: "localhost"                            # 6
)yaml");
  EXPECT_THAT(Load().status(), IsErrorAt(Path("registry.yaml"), 6, "host:port"));
}

TEST_F(LoadPolicyTest, AgreementsReferToTheRegistry) {
  // A registry without group gemeenten breaks the agreement that names it.
  Write("registry.yaml", R"yaml(groups:   # 1
  - name: brp-afnemers                               # 2
organisations:                                       # 3
  - oin: "00000099100000000001"                      # 4
    name: Verhuizen                                   # 5
    kind: collective_service                          # 6
  - oin: "00000099200000000001"                      # 7
    name: BRP                                         # 8
    kind: register                                    # 9
)yaml");
  EXPECT_THAT(Load().status(), IsErrorAt(Path("agreements/verhuizen.yml"), 6,
                                         "unknown group 'group:gemeenten'"));
}

TEST_F(LoadPolicyTest, MissingFilesAreErrorsNamingThePath) {
  sources_.registry_file = Path("does-not-exist.yaml");
  absl::Status status = Load().status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("does-not-exist.yaml"));

  SetUp();
  sources_.agreement_dirs = {Path("no-such-dir")};
  status = Load().status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("no-such-dir"));

  SetUp();
  sources_.agreement_files = {Path("agreements/missing.yaml")};
  status = Load().status();
  EXPECT_FALSE(status.ok());
  EXPECT_THAT(status.message(), HasSubstr("missing.yaml"));
}

}  // namespace
}  // namespace knooppunt::policy::test
