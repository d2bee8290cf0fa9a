// The real gateway binary on broken configuration: it refuses to start (non-zero exit), names
// file:line of the first error on standard error, and never listens. Plus its clean shutdown.
#include <sys/wait.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"

namespace knooppunt::testing {
namespace {

using ::testing::HasSubstr;

// A valid configuration (the endpoints are never contacted).
GatewayConfigFiles BaseConfig() {
  GatewayConfigFiles files;
  files.registry_yaml =
      FederationRegistry("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:4");
  files.agreement_files = FederationAgreements();
  return files;
}

// 1-based number of the first line of `text` containing `marker`; 0 when none does.
int LineOf(absl::string_view text, absl::string_view marker) {
  int n = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++n;
    if (absl::StrContains(line, marker)) return n;
  }
  return 0;
}

// Inserts `new_line` after the first line containing `marker`.
std::string InsertAfter(absl::string_view text, absl::string_view marker,
                        absl::string_view new_line) {
  std::string out;
  bool done = false;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    absl::StrAppend(&out, line, "\n");
    if (!done && absl::StrContains(line, marker)) {
      absl::StrAppend(&out, new_line, "\n");
      done = true;
    }
  }
  EXPECT_TRUE(done) << "no line contains " << marker;
  return out;
}

// The gateway refuses `files`, naming `file` (relative to its directory) and `line`, and
// `message_part`.
void ExpectRefused(const GatewayConfigFiles& files, absl::string_view file, int line,
                   absl::string_view message_part) {
  ASSERT_GT(line, 0) << "the test's marker line was not found";
  const GatewayExit exit = RunGatewayExpectingFailure(files);
  EXPECT_TRUE(exit.exited) << "the gateway did not exit by itself";
  EXPECT_FALSE(exit.served) << "the gateway started serving on a broken configuration";
  EXPECT_NE(exit.exit_code, 0);
  EXPECT_EQ(exit.signal, 0) << "the gateway crashed";
  EXPECT_FALSE(exit.listening) << "something listens on the configured port";
  EXPECT_THAT(exit.stderr_text, HasSubstr(absl::StrCat(exit.dir, "/", file, ":", line, ":")));
  EXPECT_THAT(exit.stderr_text, HasSubstr(std::string(message_part)));
}

TEST(ConfigErrorIntegrationTest, BaseConfigurationStarts) {
  // The control for the tests below: without their one fault the configuration is accepted.
  const GatewayExit exit = RunGatewayExpectingFailure(BaseConfig());
  EXPECT_TRUE(exit.served) << exit.stderr_text;
  EXPECT_TRUE(exit.listening) << exit.stderr_text;
}

TEST(ConfigErrorIntegrationTest, UnknownKeyInRegistry) {
  GatewayConfigFiles files = BaseConfig();
  files.registry_yaml =
      InsertAfter(files.registry_yaml, "name: \"Gemeente Groningen\"", "    telefoon: \"050\"");
  ExpectRefused(files, "registry.yaml", LineOf(files.registry_yaml, "telefoon"), "telefoon");
}

TEST(ConfigErrorIntegrationTest, UnknownGroupInRegistry) {
  GatewayConfigFiles files = BaseConfig();
  files.registry_yaml = absl::StrReplaceAll(
      files.registry_yaml, {{"groups: [gemeenten, brp-afnemers]", "groups: [gemeenten, afnemers]"}});
  ExpectRefused(files, "registry.yaml", LineOf(files.registry_yaml, "[gemeenten, afnemers]"),
                "unknown group 'afnemers'");
}

constexpr char kAgreementTemplate[] = R"yaml(agreements:
  - id: kapot
    description: One fault at a time.
    message_type: $TYPE
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields:
      all: true
    reply_fields:
      all: true
    from: [$FROM]
    to: [$TO]
    purposes: [BRP-bevraging]
)yaml";

std::string BrokenAgreement(absl::string_view type, absl::string_view from, absl::string_view to) {
  return absl::StrReplaceAll(kAgreementTemplate, {{"$TYPE", type}, {"$FROM", from}, {"$TO", to}});
}

TEST(ConfigErrorIntegrationTest, MalformedOinInAgreement) {
  GatewayConfigFiles files = BaseConfig();
  const std::string yaml = BrokenAgreement("gemeente.brp.v1.PersoonVraag", "\"12345\"",
                                           absl::StrCat("\"", kBrpOin, "\""));
  files.agreement_files["zz-kapot.yaml"] = yaml;
  ExpectRefused(files, "agreements/zz-kapot.yaml", LineOf(yaml, "12345"), "'12345'");
}

TEST(ConfigErrorIntegrationTest, UnregisteredOinInAgreement) {
  GatewayConfigFiles files = BaseConfig();
  const std::string yaml = BrokenAgreement("gemeente.brp.v1.PersoonVraag",
                                           absl::StrCat("\"", kGroningenOin, "\""),
                                           "\"00000099999999999999\"");
  files.agreement_files["zz-kapot.yaml"] = yaml;
  ExpectRefused(files, "agreements/zz-kapot.yaml", LineOf(yaml, "00000099999999999999"),
                "not in the registry");
}

TEST(ConfigErrorIntegrationTest, UnknownGroupInAgreement) {
  GatewayConfigFiles files = BaseConfig();
  const std::string yaml = BrokenAgreement("gemeente.brp.v1.PersoonVraag", "group:bestaat-niet",
                                           absl::StrCat("\"", kBrpOin, "\""));
  files.agreement_files["zz-kapot.yaml"] = yaml;
  ExpectRefused(files, "agreements/zz-kapot.yaml", LineOf(yaml, "group:bestaat-niet"),
                "unknown group 'group:bestaat-niet'");
}

TEST(ConfigErrorIntegrationTest, UnknownMessageTypeInAgreement) {
  GatewayConfigFiles files = BaseConfig();
  const std::string yaml = BrokenAgreement("gemeente.brp.v1.Bestaatniet", "group:brp-afnemers",
                                           absl::StrCat("\"", kBrpOin, "\""));
  files.agreement_files["zz-kapot.yaml"] = yaml;
  ExpectRefused(files, "agreements/zz-kapot.yaml", LineOf(yaml, "Bestaatniet"),
                "unknown message type 'gemeente.brp.v1.Bestaatniet'");
}

TEST(ConfigErrorIntegrationTest, UnknownKeyInGatewayConfig) {
  GatewayConfigFiles files = BaseConfig();
  files.extra_gateway_yaml = "max_conections: 10\n";
  ExpectRefused(files, "gateway.yaml",
                LineOf(GatewayConfigYaml(files, "127.0.0.1:0"), "max_conections"),
                "max_conections");
}

// The PostgreSQL melding store (melding.postgres) without its connection string.
TEST(ConfigErrorIntegrationTest, MeldingPostgresWithoutConninfo) {
  GatewayConfigFiles files = BaseConfig();
  files.extra_gateway_yaml = "melding:\n  postgres:\n    connect_timeout: 1s\n";
  ExpectRefused(files, "gateway.yaml",
                LineOf(GatewayConfigYaml(files, "127.0.0.1:0"), "  postgres:"),
                "melding.postgres needs conninfo");
}

TEST(GatewayLifecycleIntegrationTest, StopsCleanlyOnSigterm) {
  absl::StatusOr<std::unique_ptr<GatewayProcess>> gateway = GatewayProcess::Start(BaseConfig());
  ASSERT_TRUE(gateway.ok()) << gateway.status();
  const int port = (*gateway)->port();
  EXPECT_TRUE(SomethingListensOn(port));
  const int status = (*gateway)->Stop(absl::Seconds(5));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status;
  EXPECT_THAT((*gateway)->StderrText(), HasSubstr("\"event\":\"serving\""));
  EXPECT_THAT((*gateway)->StderrText(), HasSubstr("\"event\":\"stopped\""));
  EXPECT_FALSE(SomethingListensOn(port));
}

}  // namespace
}  // namespace knooppunt::testing
