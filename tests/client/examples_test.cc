// The integration kit's examples in other languages (examples/python, examples/node), run as
// a new backoffice would run them: against the real gateway binary with real mutual TLS, as
// Gemeente Groningen (no endpoint of its own: it pulls its inbox). Each example asks the BRP
// (a C++ test endpoint) for a person, is denied a bevraging without agreement, sends a
// melding to Zaanstad (twice, the second time recognised as a duplicate), reads its status,
// and receives and acknowledges the Verhuismelding this test sent it beforehand.
//
// ctest runs each example as its own test (example_python, example_node) with the
// interpreter, the generated Python modules and the Node packages in the environment
// (tests/client/CMakeLists.txt).
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gateway/client/knooppunt_client.h"
#include "gemeente/zaken/v1/zaken.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/melding/melding_fixture.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using ::testing::HasSubstr;

// Municipalities may hand cases (zaken) to each other as meldingen.
constexpr char kZaakAgreement[] =
    "agreements:\n"
    "  - id: zaak-overdracht\n"
    "    message_type: gemeente.zaken.v1.ZaakAanmaken\n"
    "    mode: melding\n"
    "    from: [group:gemeenten]\n"
    "    to: [group:gemeenten]\n"
    "    purposes: [Zaakoverdracht]\n"
    "    fields:\n"
    "      all: true\n"
    "    retry_window: 1d\n";

std::string RequiredEnv(const char* name) {
  const char* value = std::getenv(name);
  return value == nullptr ? "" : value;
}

std::string ShellQuoted(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out.push_back(c);
    }
  }
  return out + "'";
}

struct ProgramRun {
  int exit_code = -1;
  std::string output;  // stdout and stderr
};

// Runs `argv` with `env` added, bounded by `timeout_seconds` (coreutils timeout), with
// standard input from `stdin_path` (empty: none).
ProgramRun RunProgram(const std::vector<std::string>& argv,
                      const std::vector<std::string>& env, int timeout_seconds,
                      const std::string& stdin_path = "") {
  std::vector<std::string> words = {"env"};
  for (const std::string& e : env) words.push_back(ShellQuoted(e));
  words.push_back("timeout");
  words.push_back(absl::StrCat(timeout_seconds));
  for (const std::string& a : argv) words.push_back(ShellQuoted(a));
  const std::string command =
      absl::StrCat(absl::StrJoin(words, " "), " <", ShellQuoted(stdin_path.empty() ? "/dev/null" : stdin_path), " 2>&1");
  ProgramRun run;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return run;
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) run.output.append(buffer, n);
  const int status = ::pclose(pipe);
  run.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return run;
}

class ExamplesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto brp = TestEndpoint::Start("brp");
    ASSERT_TRUE(brp.ok()) << brp.status();
    brp_ = std::move(*brp);
    GatewayConfigFiles files;
    files.registry_yaml = DefaultRegistryYaml(brp_->address());
    files.agreement_files = MeldingAgreements();
    files.agreement_files["zaken.yaml"] = kZaakAgreement;
    files.extra_gateway_yaml = FastMeldingYaml();
    auto gateway = GatewayProcess::Start(files);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = std::move(*gateway);

    verhuizen_ = Connect("verhuizen");
    zaanstad_ = Connect("zaanstad");
    ASSERT_NE(verhuizen_, nullptr);
    ASSERT_NE(zaanstad_, nullptr);
    // Something for the example to find in its inbox.
    verhuismelding_ = Verhuismelding("gemeente:0014");
    auto receipt = verhuizen_->SendEnvelope(verhuismelding_);
    ASSERT_TRUE(receipt.ok()) << receipt.status();
  }

  std::unique_ptr<client::KnooppuntClient> Connect(absl::string_view stem) {
    client::ClientOptions options;
    options.gateway_address = gateway_->address();
    options.cert_file = PkiPath(absl::StrCat(stem, ".crt"));
    options.key_file = PkiPath(absl::StrCat(stem, ".key"));
    options.ca_file = PkiPath("ca.crt");
    options.gateway_oin = std::string(kGatewayOin);
    auto connected = client::KnooppuntClient::Connect(options);
    EXPECT_TRUE(connected.ok()) << connected.status();
    return connected.ok() ? std::move(*connected) : nullptr;
  }

  // What every example gets: where the gateway is and who it is, as Groningen.
  std::vector<std::string> ExampleEnvironment() const {
    return {
        absl::StrCat("KNOOPPUNT_GATEWAY=", gateway_->address()),
        absl::StrCat("KNOOPPUNT_GATEWAY_OIN=", kGatewayOin),
        absl::StrCat("KNOOPPUNT_OIN=", kGroningenOin),
        absl::StrCat("KNOOPPUNT_CERT=", PkiPath("groningen.crt")),
        absl::StrCat("KNOOPPUNT_KEY=", PkiPath("groningen.key")),
        absl::StrCat("KNOOPPUNT_CA=", PkiPath("ca.crt")),
        absl::StrCat("BRP_OIN=", kBrpOin),
        "BSN=999993653",
        "MELDING_RECIPIENT=gemeente:0479",
        "INBOX_EXPECT=1",
        "INBOX_WAIT_SECONDS=15",
    };
  }

  // What the gateway and the other parties must have seen after an example ran.
  void ExpectTheExampleDidItsWork(const ProgramRun& run, absl::string_view prefix) {
    std::fputs(run.output.c_str(), stdout);  // what the example did, in the test log
    ASSERT_EQ(run.exit_code, 0) << run.output << "\n--- gateway stderr ---\n"
                                << gateway_->StderrText();
    EXPECT_THAT(run.output, HasSubstr(absl::StrCat(prefix, " bevraging: BSN ******653 is Jansen "
                                                           "(agreement brp-bevragen")));
    EXPECT_THAT(run.output, HasSubstr(absl::StrCat(prefix, " denied: PERMISSION_DENIED (from the gateway)")));
    EXPECT_THAT(run.output, HasSubstr("resent: duplicate=")) << run.output;
    EXPECT_THAT(run.output,
                HasSubstr(absl::StrCat("received and acknowledged Verhuismelding ",
                                       verhuismelding_.message_id(), " from ", kVerhuizenOin)));
    EXPECT_THAT(run.output, HasSubstr(absl::StrCat(prefix, " done: every step behaved as expected")));

    // The BRP endpoint answered exactly one query (the denied one never reached it).
    EXPECT_EQ(brp_->call_count(), 1);
    // Groningen acknowledged the Verhuismelding: its sender sees it delivered.
    EXPECT_TRUE(WaitForState(verhuizen_->stub(), verhuismelding_.message_id(),
                             exchange::v1::DELIVERY_STATE_DELIVERED)
                    .ok());
    // Zaanstad finds Groningen's melding in its inbox, once.
    std::vector<exchange::v1::Envelope> zaken;
    auto acknowledged = zaanstad_->ProcessInbox(
        [&](const exchange::v1::Envelope& e) {
          zaken.push_back(e);
          return absl::OkStatus();
        },
        10, absl::Seconds(3));
    ASSERT_TRUE(acknowledged.ok()) << acknowledged.status();
    ASSERT_EQ(zaken.size(), 1u);
    EXPECT_EQ(zaken[0].sender(), kGroningenOin);
    EXPECT_EQ(zaken[0].agreement_id(), "zaak-overdracht");
    gemeente::zaken::v1::ZaakAanmaken zaak;
    ASSERT_TRUE(zaken[0].payload().UnpackTo(&zaak));
    EXPECT_EQ(zaak.omschrijving(), "Bezwaarschrift");
  }

  // The same example told to expect another gateway OIN must refuse this gateway before it
  // sends anything.
  void ExpectTheExampleRefusesAnotherGatewayOin(const std::vector<std::string>& argv,
                                                std::vector<std::string> env) {
    const int brp_calls_before = brp_->call_count();
    env.push_back(absl::StrCat("KNOOPPUNT_GATEWAY_OIN=", kBrpOin));  // later entries win
    ProgramRun run = RunProgram(argv, env, 60);
    EXPECT_NE(run.exit_code, 0) << run.output;
    EXPECT_THAT(run.output, HasSubstr(absl::StrCat("not the gateway's ", kBrpOin))) << run.output;
    EXPECT_EQ(brp_->call_count(), brp_calls_before);
  }

  std::unique_ptr<TestEndpoint> brp_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<client::KnooppuntClient> verhuizen_;
  std::unique_ptr<client::KnooppuntClient> zaanstad_;
  exchange::v1::Envelope verhuismelding_;
};

TEST_F(ExamplesTest, PythonBackoffice) {
  const std::string python = RequiredEnv("KNOOPPUNT_EXAMPLE_PYTHON");
  const std::string generated = RequiredEnv("KNOOPPUNT_PY_GEN");
  ASSERT_FALSE(python.empty() || generated.empty())
      << "run through ctest: KNOOPPUNT_EXAMPLE_PYTHON and KNOOPPUNT_PY_GEN are set there";
  std::vector<std::string> env = ExampleEnvironment();
  env.push_back(absl::StrCat("KNOOPPUNT_PY_GEN=", generated));
  const std::vector<std::string> argv = {
      python, absl::StrCat(RequiredEnv("KNOOPPUNT_SOURCE_DIR"), "/examples/python/backoffice.py")};
  ExpectTheExampleDidItsWork(RunProgram(argv, env, 90), "[python]");
  ExpectTheExampleRefusesAnotherGatewayOin(argv, env);
}

TEST_F(ExamplesTest, NodeBackoffice) {
  const std::string node = RequiredEnv("KNOOPPUNT_EXAMPLE_NODE");
  const std::string modules = RequiredEnv("KNOOPPUNT_NODE_MODULES");
  ASSERT_FALSE(node.empty() || modules.empty())
      << "run through ctest: KNOOPPUNT_EXAMPLE_NODE and KNOOPPUNT_NODE_MODULES are set there";
  std::vector<std::string> env = ExampleEnvironment();
  // The packages were installed into the build directory (npm ci), not next to the script.
  env.push_back(absl::StrCat("NODE_PATH=", modules));
  env.push_back(absl::StrCat("KNOOPPUNT_PROTO_DIR=", RequiredEnv("KNOOPPUNT_SOURCE_DIR"), "/proto"));
  const std::vector<std::string> argv = {
      node, absl::StrCat(RequiredEnv("KNOOPPUNT_SOURCE_DIR"), "/examples/node/backoffice.js")};
  ExpectTheExampleDidItsWork(RunProgram(argv, env, 90), "[node]");
  ExpectTheExampleRefusesAnotherGatewayOin(argv, env);
}

// docs/onboarding.md's grpcurl calls, done with the Python equivalent: health, the list of
// services from reflection, and a bevraging from a JSON envelope.
TEST_F(ExamplesTest, PythonByHand) {
  const std::string python = RequiredEnv("KNOOPPUNT_EXAMPLE_PYTHON");
  const std::string generated = RequiredEnv("KNOOPPUNT_PY_GEN");
  ASSERT_FALSE(python.empty() || generated.empty()) << "run through ctest";
  std::vector<std::string> env = ExampleEnvironment();
  env.push_back(absl::StrCat("KNOOPPUNT_PY_GEN=", generated));
  const std::string tool =
      absl::StrCat(RequiredEnv("KNOOPPUNT_SOURCE_DIR"), "/examples/python/grpc_by_hand.py");

  ProgramRun health = RunProgram({python, tool, "health"}, env, 60);
  EXPECT_EQ(health.exit_code, 0) << health.output;
  EXPECT_EQ(health.output, "SERVING\n");

  ProgramRun list = RunProgram({python, tool, "list"}, env, 60);
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_THAT(list.output, HasSubstr("knooppunt.exchange.v1.Exchange\n"));
  EXPECT_THAT(list.output, HasSubstr("grpc.health.v1.Health\n"));

  const std::string question = gateway_->FilePath("question.json");
  {
    std::FILE* f = std::fopen(question.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs(absl::StrCat("{\"messageId\": \"0b9cbd57-1b8a-4b7e-9a55-8f3c2f6f1e01\",\n"
                            " \"sender\": \"", kGroningenOin, "\",\n"
                            " \"recipient\": \"", kBrpOin, "\",\n"
                            " \"purpose\": \"BRP-bevraging\",\n"
                            " \"payload\": {\"@type\": \"type.googleapis.com/gemeente.brp.v1.PersoonVraag\",\n"
                            "             \"bsn\": \"999993653\"}}\n")
                   .c_str(),
               f);
    std::fclose(f);
  }
  ProgramRun request = RunProgram({python, tool, "request"}, env, 60, question);
  std::fputs(request.output.c_str(), stdout);
  EXPECT_EQ(request.exit_code, 0) << request.output;
  EXPECT_THAT(request.output, HasSubstr("\"@type\": \"type.googleapis.com/gemeente.brp.v1.Persoon\""));
  EXPECT_THAT(request.output, HasSubstr("\"geslachtsnaam\": \"Jansen\""));
  EXPECT_THAT(request.output, HasSubstr("\"correlationId\": \"0b9cbd57-1b8a-4b7e-9a55-8f3c2f6f1e01\""));
  EXPECT_EQ(brp_->call_count(), 1);
}

}  // namespace
}  // namespace knooppunt::testing
