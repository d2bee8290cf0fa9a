// Operator tooling end to end through the real gateway binary: the Admin service (operator
// certificates only; auditors and parties refused), its CLI knooppunt-admin, Drain, and a
// graceful shutdown on SIGTERM (a slow bevraging in flight completes, acknowledged meldingen
// are in the store after a restart, the audit log verifies with no unsigned tail).
#include <sys/wait.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <future>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/client/envelope.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "knooppunt/admin/v1/admin.grpc.pb.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

const bool kEnvironmentDefaults = [] {
  setenv("KNOOPPUNT_GATEWAY_BIN", KNOOPPUNT_DEFAULT_GATEWAY_BIN, /*overwrite=*/0);
  setenv("KNOOPPUNT_TEST_PKI_DIR", KNOOPPUNT_DEFAULT_TEST_PKI_DIR, /*overwrite=*/0);
  return true;
}();

constexpr absl::string_view kBsn = "999993653";

std::string Agreements() {
  return absl::StrCat(R"yaml(
agreements:
  - id: brp-bevragen-afnemers
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields: {all: true}
    reply_fields: {all: true}
    from: [group:brp-afnemers]
    to: [")yaml", kBrpOin, R"yaml("]
    purposes: [BRP-bevraging]
    valid_from: 2020-01-01
  - id: verhuizen-naar-gemeenten
    message_type: gemeente.verhuizen.v1.Verhuismelding
    mode: melding
    from: [")yaml", kVerhuizenOin, R"yaml("]
    to: [group:gemeenten]
    purposes: [BRP-bijhouding]
    fields: {all: true}
)yaml");
}

class AdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("kp-admin-", getpid(), "-", counter_++);
    std::filesystem::create_directories(dir_);
    ASSERT_TRUE(audit::GenerateKeys(dir_ + "/hmac.key", dir_ + "/sign.key", dir_ + "/sign.pub").ok());
    absl::StatusOr<std::unique_ptr<TestEndpoint>> brp = TestEndpoint::Start("brp");
    ASSERT_TRUE(brp.ok()) << brp.status();
    brp_ = *std::move(brp);
  }
  void TearDown() override {
    gateway_.reset();
    brp_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  void StartGateway() {
    std::vector<TestOrganisation> orgs = DevPkiOrganisations();
    SetEndpoint(&orgs, kBrpOin, brp_->address());
    GatewayConfigFiles files;
    files.registry_yaml = RegistryYaml(orgs);
    files.agreement_files["agreements.yaml"] = Agreements();
    // Store and audit log outside the gateway's directory, so they survive a restart.
    files.extra_gateway_yaml = absl::StrCat(
        "\nshutdown_grace: 15s\nmelding:\n  store_path: ", dir_, "/meldingen.db\n",
        "audit:\n  db_path: ", dir_, "/audit.db\n  hmac_key_file: ", dir_,
        "/hmac.key\n  signing_key_file: ", dir_, "/sign.key\n  checkpoint_every: 60s\n"
        "  checkpoint_every_records: 100000\n");
    absl::StatusOr<std::unique_ptr<GatewayProcess>> gw = GatewayProcess::Start(files);
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = *std::move(gw);
  }

  std::shared_ptr<grpc::Channel> ChannelFor(absl::string_view stem) {
    return grpc::CreateChannel(
        gateway_->address(),
        tls::MutualTlsChannelCredentials(ReadPkiFile("ca.crt"), ReadPkiFile(absl::StrCat(stem, ".crt")),
                                         ReadPkiFile(absl::StrCat(stem, ".key")),
                                         std::string(kGatewayOin)));
  }
  std::unique_ptr<admin::v1::Admin::Stub> AdminAs(absl::string_view stem) {
    return admin::v1::Admin::NewStub(ChannelFor(stem));
  }
  static void Deadline(grpc::ClientContext* ctx, int seconds = 10) {
    ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(seconds));
  }
  grpc::Status GetStatus(absl::string_view stem, admin::v1::GatewayStatus* out) {
    grpc::ClientContext ctx;
    Deadline(&ctx);
    return AdminAs(stem)->GetStatus(&ctx, {}, out);
  }
  grpc::Status Ask(absl::string_view stem = "groningen", absl::string_view sender = kGroningenOin) {
    auto stub = exchange::v1::Exchange::NewStub(ChannelFor(stem));
    gemeente::brp::v1::PersoonVraag q;
    q.set_bsn(std::string(kBsn));
    exchange::v1::Envelope reply;
    grpc::ClientContext ctx;
    Deadline(&ctx, 20);
    return stub->Request(
        &ctx, client::NewEnvelope(std::string(sender), std::string(kBrpOin), "BRP-bevraging", q),
        &reply);
  }
  // A melding from Verhuizen to Groningen (no endpoint: it stays in Groningen's inbox).
  grpc::Status SendMelding(std::string* message_id) {
    gemeente::verhuizen::v1::Verhuismelding m;
    m.set_bsn(std::string(kBsn));
    m.mutable_nieuw_adres()->set_straat("Grote Markt");
    m.mutable_nieuw_adres()->set_huisnummer(1);
    m.mutable_nieuw_adres()->set_woonplaats("Groningen");
    m.mutable_nieuw_adres()->set_gemeentecode("0014");
    exchange::v1::Envelope env =
        client::NewEnvelope(std::string(kVerhuizenOin), "gemeente:0014", "BRP-bijhouding", m);
    *message_id = env.message_id();
    exchange::v1::Receipt receipt;
    grpc::ClientContext ctx;
    Deadline(&ctx);
    return exchange::v1::Exchange::NewStub(ChannelFor("verhuizen"))->Send(&ctx, env, &receipt);
  }

  static int counter_;
  std::string dir_;
  std::unique_ptr<TestEndpoint> brp_;
  std::unique_ptr<GatewayProcess> gateway_;
};
int AdminTest::counter_ = 0;

TEST_F(AdminTest, OperatorSeesStatusOrganisationsAgreementsAndQueue) {
  StartGateway();
  admin::v1::GatewayStatus status;
  grpc::Status s = GetStatus("operator", &status);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(status.config_hash().size(), 64u);
  EXPECT_EQ(status.policy_version().size(), 64u);
  EXPECT_FALSE(status.version().empty());
  EXPECT_GE(status.uptime_seconds(), 0);
  EXPECT_FALSE(status.draining());

  admin::v1::ListOrganisationsReply orgs;
  grpc::ClientContext c1;
  Deadline(&c1);
  ASSERT_TRUE(AdminAs("operator")->ListOrganisations(&c1, {}, &orgs).ok());
  bool operator_listed = false;
  for (const auto& o : orgs.organisations()) {
    if (o.oin() == kOperatorOin) operator_listed = o.kind() == "operator";
  }
  EXPECT_TRUE(operator_listed);
  EXPECT_EQ(orgs.organisations_size(), static_cast<int>(DevPkiOrganisations().size()));

  admin::v1::ListAgreementsReply agreements;
  grpc::ClientContext c2;
  Deadline(&c2);
  ASSERT_TRUE(AdminAs("operator")->ListAgreements(&c2, {}, &agreements).ok());
  ASSERT_EQ(agreements.agreements_size(), 2);
  EXPECT_EQ(agreements.agreements(0).id(), "brp-bevragen-afnemers");
  EXPECT_EQ(agreements.agreements(0).mode(), "bevraging");
  EXPECT_TRUE(agreements.agreements(0).in_force_now());
  EXPECT_EQ(agreements.agreements(1).mode(), "melding");

  std::string id;
  ASSERT_TRUE(SendMelding(&id).ok());
  admin::v1::QueueFigures queue;
  grpc::ClientContext c3;
  Deadline(&c3);
  ASSERT_TRUE(AdminAs("operator")->GetQueue(&c3, {}, &queue).ok());
  EXPECT_EQ(queue.pending_messages(), 1u);
  EXPECT_GT(queue.pending_bytes(), 0u);
  ASSERT_TRUE(queue.has_oldest_pending_age());  // accepted a moment ago
  EXPECT_GE(queue.oldest_pending_age().seconds(), 0);
  EXPECT_LT(queue.oldest_pending_age().seconds(), 300);

  admin::v1::ReloadReply reload;
  grpc::ClientContext c4;
  Deadline(&c4);
  ASSERT_TRUE(AdminAs("operator")->Reload(&c4, {}, &reload).ok());
  EXPECT_EQ(reload.policy_version(), status.policy_version());  // files unchanged
}

TEST_F(AdminTest, AuditorsAndPartiesAreRefused) {
  StartGateway();
  admin::v1::GatewayStatus status;
  EXPECT_EQ(GetStatus("auditor", &status).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(GetStatus("groningen", &status).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  admin::v1::DrainReply drain;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  EXPECT_EQ(AdminAs("auditor")->Drain(&ctx, {}, &drain).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(Ask().ok());  // not drained by the refused call
}

TEST_F(AdminTest, DrainRefusesNewExchangesWhileCallsInFlightFinish) {
  StartGateway();
  brp_->SetHandler([](const EndpointCall& call) {
    return AnswerPersoonVraag(call).After(absl::Seconds(2));
  });
  std::future<grpc::Status> slow = std::async(std::launch::async, [this] { return Ask(); });
  ASSERT_TRUE(brp_->WaitForCalls(1, absl::Seconds(10)));
  admin::v1::DrainReply drain;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  ASSERT_TRUE(AdminAs("operator")->Drain(&ctx, {}, &drain).ok());
  EXPECT_FALSE(drain.already_draining());
  grpc::Status refused = Ask();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(refused.error_message(), "draining");
  std::string id;
  EXPECT_EQ(SendMelding(&id).error_code(), grpc::StatusCode::UNAVAILABLE);
  grpc::Status in_flight = slow.get();
  EXPECT_TRUE(in_flight.ok()) << in_flight.error_message();
  admin::v1::GatewayStatus status;
  ASSERT_TRUE(GetStatus("operator", &status).ok());
  EXPECT_TRUE(status.draining());
}

// Runs knooppunt-admin; returns its exit code and standard output.
int RunCli(const std::string& args, std::string* out) {
  const std::string cmd = absl::StrCat(KNOOPPUNT_ADMIN_BIN, " ", args, " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return -1;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out->append(buf, n);
  const int status = pclose(p);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

TEST_F(AdminTest, CliUsesTheAdminService) {
  StartGateway();
  const auto flags = [this](absl::string_view stem) {
    return absl::StrCat("--gateway=", gateway_->address(), " --gateway_oin=", kGatewayOin,
                        " --ca=", PkiPath("ca.crt"), " --cert=", PkiPath(absl::StrCat(stem, ".crt")),
                        " --key=", PkiPath(absl::StrCat(stem, ".key")));
  };
  std::string out;
  EXPECT_EQ(RunCli(flags("operator") + " status", &out), 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "config_hash")) << out;
  out.clear();
  EXPECT_EQ(RunCli(flags("operator") + " agreements", &out), 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "brp-bevragen-afnemers  IN_FORCE")) << out;
  out.clear();
  EXPECT_EQ(RunCli(flags("operator") + " orgs", &out), 0) << out;
  EXPECT_TRUE(absl::StrContains(out, std::string(kGroningenOin))) << out;
  out.clear();
  EXPECT_EQ(RunCli(flags("operator") + " queue", &out), 0) << out;
  EXPECT_TRUE(absl::StrContains(out, "pending_messages  0")) << out;
  out.clear();
  EXPECT_EQ(RunCli(flags("auditor") + " status", &out), 1) << out;
  EXPECT_TRUE(absl::StrContains(out, "separation of duties")) << out;
  out.clear();
  EXPECT_EQ(RunCli(flags("operator") + " bogus", &out), 2) << out;
  out.clear();
  EXPECT_EQ(RunCli(flags("operator") + " drain", &out), 0) << out;
  EXPECT_EQ(Ask().error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(AdminTest, SigtermFinishesInFlightKeepsMeldingenAndLeavesAVerifiableAuditLog) {
  StartGateway();
  std::string id;
  ASSERT_TRUE(SendMelding(&id).ok());  // acknowledged: must survive the restart
  brp_->SetHandler([](const EndpointCall& call) {
    return AnswerPersoonVraag(call).After(absl::Seconds(2));
  });
  std::future<grpc::Status> slow = std::async(std::launch::async, [this] { return Ask(); });
  ASSERT_TRUE(brp_->WaitForCalls(1, absl::Seconds(10)));
  ASSERT_TRUE(gateway_->Signal(SIGTERM));
  grpc::Status in_flight = slow.get();
  EXPECT_TRUE(in_flight.ok()) << in_flight.error_message();
  const int wait_status = gateway_->Stop(absl::Seconds(20));
  EXPECT_TRUE(WIFEXITED(wait_status) && WEXITSTATUS(wait_status) == 0) << gateway_->StderrText();
  const std::string stderr_text = gateway_->StderrText();
  EXPECT_TRUE(absl::StrContains(stderr_text, "\"stopped\"")) << stderr_text;

  // The audit log verifies, and the shutdown signed everything (no unsigned tail).
  auto key = audit::SignatureVerifier::FromPemFile(dir_ + "/sign.pub");
  ASSERT_TRUE(key.ok());
  auto reader = audit::AuditReader::Open(dir_ + "/audit.db");
  ASSERT_TRUE(reader.ok()) << reader.status();
  absl::StatusOr<audit::VerifyResult> verified = (*reader)->Verify(**key);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->intact) << verified->problem;
  EXPECT_EQ(verified->unsigned_tail, 0);
  EXPECT_GE(verified->records, 2);
  reader->reset();

  // After a restart on the same store the melding is still there, not yet delivered.
  gateway_.reset();
  brp_->Reset();
  StartGateway();
  exchange::v1::StatusRequest req;
  req.set_message_id(id);
  exchange::v1::DeliveryStatus st;
  grpc::ClientContext ctx;
  Deadline(&ctx);
  grpc::Status s = exchange::v1::Exchange::NewStub(ChannelFor("verhuizen"))->GetStatus(&ctx, req, &st);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(st.state(), exchange::v1::DELIVERY_STATE_ACCEPTED);
}

}  // namespace
}  // namespace knooppunt::testing
