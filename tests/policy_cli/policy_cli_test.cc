// knooppunt-policy check / explain / diff, as an operator runs them.
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

struct CliRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

CliRun RunCli(const std::string& args) {
  CliRun run;
  FILE* pipe = ::popen(absl::StrCat(KNOOPPUNT_POLICY_BIN, " ", args, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.output.append(buffer, n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

constexpr char kAgreement[] = R"yaml(agreements:
  - id: brp-bevragen-afnemers
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: [group:brp-afnemers]
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging]
    valid_from: 2026-01-01
    fields: {all: true}
    reply_fields:
      allow: [REPLY_FIELDS]
)yaml";

class PolicyCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) /
            absl::StrCat("knooppunt_policy_cli_",
                         ::testing::UnitTest::GetInstance()->current_test_info()->name(), "_",
                         ::getpid());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  // A policy directory like policies/: the repository's registry and one agreements file.
  std::string Policy(const std::string& name, const std::string& agreements) {
    const fs::path dir = root_ / name;
    fs::create_directories(dir / "agreements");
    fs::copy_file(fs::path(KNOOPPUNT_SOURCE) / "policies" / "registry.yaml",
                  dir / "registry.yaml");
    std::ofstream(dir / "agreements" / "brp.yaml") << agreements;
    return dir.string();
  }
  static std::string WithReplyFields(const std::string& fields) {
    return absl::StrReplaceAll(kAgreement, {{"REPLY_FIELDS", fields}});
  }

  fs::path root_;
};

TEST_F(PolicyCliTest, CheckAcceptsAValidPolicy) {
  const CliRun run = RunCli(absl::StrCat("check ", Policy("ok", WithReplyFields("bsn, naam"))));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("valid, 7 organisations, 1 agreements, version "));
}

TEST_F(PolicyCliTest, CheckRejectsAnUnknownFieldWithFileAndLine) {
  const std::string dir = Policy("broken", WithReplyFields("bsn, naam.roepnaam"));
  const CliRun run = RunCli(absl::StrCat("check ", dir));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr(absl::StrCat(dir, "/agreements/brp.yaml:12:")));
  EXPECT_THAT(run.output, HasSubstr("has no field 'roepnaam'"));
}

TEST_F(PolicyCliTest, CheckOfTheRepositoryPolicyAndDemoConfig) {
  const std::string source = KNOOPPUNT_SOURCE;
  const CliRun run = RunCli(absl::StrCat("check ", source, "/policies ", source,
                                      "/deploy/demo/gateway.yaml"));
  EXPECT_EQ(run.exit_code, 0) << run.output;
}

TEST_F(PolicyCliTest, ExplainNamesTheDecidingAgreementAndWhy) {
  const std::string dir = Policy("ok", WithReplyFields("bsn, naam, verblijfplaats"));
  CliRun run = RunCli(absl::StrCat(
      "explain ", dir,
      " --from=00000099300000000014 --to=gemeente:0014 --type=gemeente.brp.v1.PersoonVraag"
      " --purpose=BRP-bevraging --at=2026-06-01T00:00:00Z"));
  // Groningen asking Groningen: no agreement has it as recipient.
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("DENIED (recipient)"));

  run = RunCli(absl::StrCat(
      "explain ", dir,
      " --from=00000099300000000014 --to=00000099200000000001"
      " --type=gemeente.brp.v1.PersoonVraag --purpose=BRP-bevraging --at=2026-06-01T00:00:00Z"));
  EXPECT_EQ(run.exit_code, 0) << run.output;
  EXPECT_THAT(run.output, HasSubstr("ALLOWED by agreement brp-bevragen-afnemers ("));
  EXPECT_THAT(run.output, HasSubstr("/agreements/brp.yaml:2:"));
  EXPECT_THAT(run.output, HasSubstr("fields: bsn, naam, verblijfplaats"));

  // Before the agreement is in force, and for a purpose it does not list.
  run = RunCli(absl::StrCat(
      "explain ", dir,
      " --from=00000099300000000014 --to=00000099200000000001"
      " --type=gemeente.brp.v1.PersoonVraag --purpose=BRP-bevraging --at=2025-06-01T00:00:00Z"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("DENIED (period)"));
  run = RunCli(absl::StrCat(
      "explain ", dir,
      " --from=00000099300000000014 --to=00000099200000000001"
      " --type=gemeente.brp.v1.PersoonVraag --purpose=Marketing --at=2026-06-01T00:00:00Z"));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("DENIED (purpose)"));

  EXPECT_EQ(RunCli(absl::StrCat("explain ", dir, " --from=x")).exit_code, 2);
}

TEST_F(PolicyCliTest, DiffShowsWhoGainsAndLosesWhat) {
  const std::string old_dir = Policy("old", WithReplyFields("bsn, naam, ouders"));
  // New: the reply loses ouders and gains verblijfplaats; Amsterdam is dropped as afnemer
  // by naming Groningen alone; a second purpose is added.
  std::string next = absl::StrReplaceAll(WithReplyFields("bsn, naam, verblijfplaats"),
                                         {{"from: [group:brp-afnemers]",
                                           "from: [\"00000099300000000014\"]"},
                                          {"purposes: [BRP-bevraging]",
                                           "purposes: [BRP-bevraging, BRP-bijhouding]"}});
  const std::string new_dir = Policy("new", next);
  const CliRun run = RunCli(absl::StrCat("diff ", old_dir, " ", new_dir));
  EXPECT_EQ(run.exit_code, 1) << run.output;
  EXPECT_THAT(run.output,
              HasSubstr("- loses  00000099300000000363 (Gemeente Amsterdam): "
                        "gemeente.brp.v1.PersoonVraag (bevraging) to 00000099200000000001"));
  EXPECT_THAT(run.output, HasSubstr("+ gains  00000099300000000014 (Gemeente Groningen): "
                                    "gemeente.brp.v1.PersoonVraag (bevraging) to "
                                    "00000099200000000001 (BRP Bevragen (centrale voorziening)) "
                                    "for purpose BRP-bijhouding"));
  EXPECT_THAT(run.output, HasSubstr("for purpose BRP-bevraging: reply fields verblijfplaats"));
  EXPECT_THAT(run.output, HasSubstr("- loses  00000099300000000014 (Gemeente Groningen): "
                                    "gemeente.brp.v1.PersoonVraag (bevraging) to "
                                    "00000099200000000001 (BRP Bevragen (centrale voorziening)) "
                                    "for purpose BRP-bevraging: reply fields ouders"));
  EXPECT_THAT(run.output, Not(HasSubstr("reply fields bsn")));

  const CliRun same = RunCli(absl::StrCat("diff ", old_dir, " ", old_dir));
  EXPECT_EQ(same.exit_code, 0) << same.output;
  EXPECT_THAT(same.output, HasSubstr("no differences"));
}

TEST_F(PolicyCliTest, UsageErrors) {
  EXPECT_EQ(RunCli("").exit_code, 2);
  EXPECT_EQ(RunCli("frobnicate x").exit_code, 2);
  EXPECT_EQ(RunCli("diff only-one").exit_code, 2);
}

}  // namespace
