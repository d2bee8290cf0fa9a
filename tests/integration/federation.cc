#include "tests/integration/federation.h"

#include <openssl/evp.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gateway/client/envelope.h"

namespace knooppunt::testing {
namespace {

// Defaults for the environment ctest should set (tests/integration/CMakeLists.txt explains
// why they are needed); an explicitly set variable always wins.
const bool kEnvironmentDefaults = [] {
  setenv("KNOOPPUNT_GATEWAY_BIN", KNOOPPUNT_DEFAULT_GATEWAY_BIN, /*overwrite=*/0);
  setenv("KNOOPPUNT_TEST_PKI_DIR", KNOOPPUNT_DEFAULT_TEST_PKI_DIR, /*overwrite=*/0);
  return true;
}();

}  // namespace

std::unique_ptr<TestEndpoint> FederationTest::brp_;
std::unique_ptr<TestEndpoint> FederationTest::groningen_;
std::unique_ptr<TestEndpoint> FederationTest::mirror_;
std::unique_ptr<ClosedPort> FederationTest::closed_;
std::unique_ptr<GatewayProcess> FederationTest::gateway_;
std::map<std::string, std::unique_ptr<exchange::v1::Exchange::Stub>>* FederationTest::stubs_ =
    nullptr;
std::string FederationTest::setup_error_;

std::map<std::string, std::string> FederationAgreements() {
  const std::string brp_yaml = absl::StrReplaceAll(R"yaml(# Test federation: person queries.
agreements:
  - id: brp-bevragen-afnemers
    description: BRP afnemers query the central BRP person service.
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields:
      all: true
    reply_fields:
      all: true
    from: [group:brp-afnemers]
    to: ["$BRP"]
    purposes: [BRP-bevraging, BRP-bijhouding]
    valid_from: 2020-01-01
  - id: brp-bevragen-testregisters
    description: Registers whose endpoints misbehave, and one without an endpoint.
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields:
      all: true
    reply_fields:
      all: true
    from: ["$GRONINGEN"]
    to: ["$MIRROR", "$CLOSED", "$ZAANSTAD"]
    purposes: [BRP-bevraging]
  - id: brp-bevragen-verlopen
    description: Expired.
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields:
      all: true
    reply_fields:
      all: true
    from: ["$AMSTERDAM"]
    to: ["$BRP"]
    purposes: [BRP-bevraging]
    valid_from: 2020-01-01
    valid_until: 2021-01-01
  - id: brp-bevragen-toekomstig
    description: Not yet in force.
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields:
      all: true
    reply_fields:
      all: true
    from: ["$VERHUIZEN"]
    to: ["$BRP"]
    purposes: [BRP-bevraging]
    valid_from: 2099-01-01
  - id: brp-lokaal-groningen
    description: Amsterdam queries Groningen's local BRP, addressed by gemeentecode.
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields:
      all: true
    reply_fields:
      all: true
    from: ["$AMSTERDAM"]
    to: ["gemeente:0014"]
    purposes: [BRP-bevraging]
)yaml",
                                                   {{"$BRP", kBrpOin},
                                                    {"$GRONINGEN", kGroningenOin},
                                                    {"$AMSTERDAM", kAmsterdamOin},
                                                    {"$VERHUIZEN", kVerhuizenOin},
                                                    {"$ZAANSTAD", kZaanstadOin},
                                                    {"$MIRROR", kMirrorRegisterOin},
                                                    {"$CLOSED", kClosedRegisterOin}});
  const std::string verhuizen_yaml = absl::StrReplaceAll(R"yaml(# Test federation: meldingen.
agreements:
  - id: verhuizen-naar-gemeenten
    description: The Verhuizen service notifies the new municipality of a move.
    message_type: gemeente.verhuizen.v1.Verhuismelding
    mode: melding
    fields:
      all: true
    from: ["$VERHUIZEN"]
    to: [group:gemeenten]
    purposes: [BRP-bijhouding]
)yaml",
                                                         {{"$VERHUIZEN", kVerhuizenOin}});
  return {{"brp.yaml", brp_yaml}, {"verhuizen.yaml", verhuizen_yaml}};
}

std::string FederationRegistry(const std::string& brp_address, const std::string& groningen_address,
                               const std::string& mirror_address,
                               const std::string& closed_address) {
  std::vector<TestOrganisation> orgs = DevPkiOrganisations();
  SetEndpoint(&orgs, kBrpOin, brp_address);
  SetEndpoint(&orgs, kGroningenOin, groningen_address);
  orgs.push_back({std::string(kMirrorRegisterOin), "Spiegelregister (test)", "register", "",
                  mirror_address, {}});
  orgs.push_back({std::string(kClosedRegisterOin), "Register zonder luisteraar (test)",
                  "register", "", closed_address, {}});
  return RegistryYaml(orgs);
}

exchange::v1::Envelope PersoonVraagEnvelope(absl::string_view sender, absl::string_view recipient,
                                            absl::string_view purpose) {
  gemeente::brp::v1::PersoonVraag vraag;
  vraag.set_bsn(std::string(kTestBsn));
  vraag.add_velden("naam");
  return client::NewEnvelope(std::string(sender), std::string(recipient), std::string(purpose),
                             vraag);
}

std::string Sha256Hex(absl::string_view bytes) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(bytes.data(), bytes.size(), digest, &len, EVP_sha256(), nullptr);
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<char*>(digest), len));
}

void FederationTest::SetUpTestSuite() {
  setup_error_.clear();
  stubs_ = new std::map<std::string, std::unique_ptr<exchange::v1::Exchange::Stub>>();
  for (auto [endpoint, stem] : {std::pair{&brp_, "brp"}, std::pair{&groningen_, "groningen"},
                                std::pair{&mirror_, "zaanstad"}}) {
    absl::StatusOr<std::unique_ptr<TestEndpoint>> started = TestEndpoint::Start(stem);
    if (!started.ok()) {
      setup_error_ = std::string(started.status().message());
      return;
    }
    *endpoint = *std::move(started);
  }
  closed_ = std::make_unique<ClosedPort>();

  GatewayConfigFiles files;
  files.registry_yaml = FederationRegistry(brp_->address(), groningen_->address(),
                                           mirror_->address(), closed_->address());
  files.agreement_files = FederationAgreements();
  files.max_payload_bytes = kFederationMaxPayloadBytes;
  files.default_deadline = "5s";
  files.max_deadline = "10s";
  files.handshake_timeout = std::string(kFederationHandshakeTimeout);
  files.max_concurrent_streams = kFederationMaxConcurrentStreams;
  files.check_crl = true;
  absl::StatusOr<std::unique_ptr<GatewayProcess>> gateway = GatewayProcess::Start(files);
  if (!gateway.ok()) {
    setup_error_ = std::string(gateway.status().message());
    return;
  }
  gateway_ = *std::move(gateway);
}

void FederationTest::TearDownTestSuite() {
  if (stubs_ != nullptr) {
    delete stubs_;
    stubs_ = nullptr;
  }
  gateway_.reset();
  brp_.reset();
  groningen_.reset();
  mirror_.reset();
  closed_.reset();
}

void FederationTest::SetUp() {
  ASSERT_NE(gateway_, nullptr) << "the test federation did not start: " << setup_error_;
  brp_->Reset();
  groningen_->Reset();
  mirror_->Reset();
}

void FederationTest::TearDown() {
  if (gateway_ == nullptr) return;
  // The gateway keeps serving whatever the test threw at it.
  EXPECT_TRUE(gateway_->running()) << "the gateway is no longer running";
  if (gateway_->running()) {
    brp_->Reset();
    const exchange::v1::Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
    exchange::v1::Envelope reply;
    const grpc::Status status = Request("groningen", request, &reply);
    EXPECT_TRUE(status.ok()) << "after this test an allowed bevraging fails: "
                             << status.error_code() << " " << status.error_message();
  }
  if (HasFailure()) {
    std::string log = gateway_->StderrText();
    if (log.size() > 8000) log = absl::StrCat("...", log.substr(log.size() - 8000));
    std::fprintf(stderr, "---- gateway stderr (%s) ----\n%s---- end ----\n",
                 gateway_->dir().c_str(), log.c_str());
  }
}

exchange::v1::Exchange::Stub& FederationTest::StubFor(absl::string_view cert_stem) {
  std::unique_ptr<exchange::v1::Exchange::Stub>& stub = (*stubs_)[std::string(cert_stem)];
  if (stub == nullptr) stub = ExchangeStubFor(gateway_->address(), cert_stem);
  return *stub;
}

grpc::Status FederationTest::Request(exchange::v1::Exchange::Stub& stub,
                                     const exchange::v1::Envelope& request,
                                     exchange::v1::Envelope* reply, absl::Duration timeout) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return stub.Request(&context, request, reply);
}

audit::v1::DecisionRecord FederationTest::ExpectDeniedRecord(const exchange::v1::Envelope& request,
                                                             grpc::StatusCode code) {
  const std::vector<audit::v1::DecisionRecord> records =
      gateway_->RecordsFor(request.message_id());
  EXPECT_EQ(records.size(), 1u) << "a denial is one decision record and no outcome record";
  if (records.empty()) return {};
  const audit::v1::DecisionRecord& r = records.front();
  EXPECT_EQ(r.event(), "decision");
  EXPECT_EQ(r.decision(), audit::v1::DECISION_DENIED);
  EXPECT_EQ(r.grpc_status(), static_cast<int>(code));
  EXPECT_EQ(r.sender(), request.sender());
  EXPECT_EQ(r.recipient(), request.recipient());
  EXPECT_EQ(r.operation(), "Request");
  EXPECT_TRUE(r.agreement_id().empty()) << r.agreement_id();
  return r;
}

}  // namespace knooppunt::testing
