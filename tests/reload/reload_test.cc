// Policy hot reload, rate limits and field lists, against the real gateway process.
#include <dirent.h>
#include <signal.h>
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "gateway/client/envelope.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/dynamic_message.h"
#include "gtest/gtest.h"
#include "knooppunt/exchange/v1/error_details.pb.h"
#include "knooppunt/options/v1/options.pb.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kBsn[] = "999993653";

// The BRP person service's whole record: more than any agreement lets through.
gemeente::brp::v1::Persoon FullPersoon(const std::string& bsn) {
  gemeente::brp::v1::Persoon p;
  p.set_bsn(bsn);
  p.set_a_nummer("1234567890");
  p.mutable_naam()->set_voornamen("Anna Maria");
  p.mutable_naam()->set_geslachtsnaam("Berg");
  p.mutable_geboorte()->set_plaats("Amsterdam");
  p.mutable_verblijfplaats()->mutable_adres()->set_woonplaats("Groningen");
  p.add_ouders()->set_bsn("999990019");
  p.add_partners()->set_bsn("999990032");
  (*p.mutable_indicaties())["geheimhouding"] = "0";
  return p;
}

EndpointReply AnswerFullPersoon(const EndpointCall& call) {
  gemeente::brp::v1::PersoonVraag q;
  call.request.payload().UnpackTo(&q);
  return EndpointReply::WithPayload(FullPersoon(q.bsn()));
}

// The agreement file; `reply_fields` and `extra` vary per test.
std::string BrpAgreement(const std::string& reply_fields, const std::string& extra = "") {
  return absl::StrCat(R"yaml(agreements:
  - id: brp-bevragen
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    from: ["00000099300000000014", "00000099300000000363"]
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging]
    fields: {all: true}
    reply_fields:
      allow: [)yaml",
                      reply_fields, "]\n", extra);
}

// Replaces an agreements file the way an operator's deployment should: write, then rename.
void ReplaceFile(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  std::ofstream(tmp, std::ios::binary | std::ios::trunc) << content;
  std::filesystem::rename(tmp, path);
}

int CountOf(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos;
       pos = text.find(needle, pos + needle.size())) {
    ++n;
  }
  return n;
}

// Polls the gateway's standard error (bounded) until `needle` occurs at least n times.
bool WaitForLog(const GatewayProcess& gw, const std::string& needle, int n,
                absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (CountOf(gw.StderrText(), needle) >= n) return true;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

// The gateway's pid, found by its config path (the harness keeps it to itself).
pid_t GatewayPid(const GatewayProcess& gw) {
  const std::string config = gw.FilePath("gateway.yaml");
  for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (cmdline.find(config) != std::string::npos) return static_cast<pid_t>(std::stoi(name));
  }
  return -1;
}

class ReloadTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // ctest gives the binary's path; a direct run finds it where it was built.
    setenv("KNOOPPUNT_GATEWAY_BIN", KNOOPPUNT_GATEWAY_BIN_PATH, /*overwrite=*/0);
    absl::StatusOr<std::unique_ptr<TestEndpoint>> brp = TestEndpoint::Start("brp");
    ASSERT_TRUE(brp.ok()) << brp.status();
    brp_ = *std::move(brp);
    brp_->SetHandler(AnswerFullPersoon);
  }

  void StartGateway(const std::string& agreement, const std::string& extra_yaml) {
    std::vector<TestOrganisation> orgs = DevPkiOrganisations();
    SetEndpoint(&orgs, kBrpOin, brp_->address());
    GatewayConfigFiles files;
    files.registry_yaml = RegistryYaml(orgs);
    files.agreement_files["brp.yaml"] = agreement;
    files.extra_gateway_yaml = extra_yaml;
    absl::StatusOr<std::unique_ptr<GatewayProcess>> gw = GatewayProcess::Start(files);
    ASSERT_TRUE(gw.ok()) << gw.status();
    gw_ = *std::move(gw);
  }

  grpc::Status Ask(exchange::v1::Exchange::Stub& stub, absl::string_view sender,
                   const std::string& bsn, gemeente::brp::v1::Persoon* person,
                   std::string* message_id = nullptr) {
    gemeente::brp::v1::PersoonVraag q;
    q.set_bsn(bsn);
    const exchange::v1::Envelope request =
        client::NewEnvelope(std::string(sender), std::string(kBrpOin), "BRP-bevraging", q);
    if (message_id != nullptr) *message_id = request.message_id();
    exchange::v1::Envelope reply;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    grpc::Status s = stub.Request(&ctx, request, &reply);
    if (s.ok() && person != nullptr) {
      EXPECT_TRUE(reply.payload().UnpackTo(person));
    }
    return s;
  }

  std::string AgreementPath() const { return gw_->FilePath("agreements/brp.yaml"); }

  std::unique_ptr<TestEndpoint> brp_;
  std::unique_ptr<GatewayProcess> gw_;
};

TEST_F(ReloadTest, ReplyCarriesOnlyAgreedFieldsAndTheRecordNamesWhatWasRemoved) {
  StartGateway(BrpAgreement("bsn, naam.geslachtsnaam, verblijfplaats"), "");
  auto stub = ExchangeStubFor(gw_->address(), "groningen");
  gemeente::brp::v1::Persoon p;
  std::string id;
  ASSERT_TRUE(Ask(*stub, kGroningenOin, kBsn, &p, &id).ok());
  EXPECT_EQ(p.bsn(), kBsn);
  EXPECT_EQ(p.naam().geslachtsnaam(), "Berg");
  EXPECT_TRUE(p.naam().voornamen().empty());
  EXPECT_EQ(p.verblijfplaats().adres().woonplaats(), "Groningen");
  EXPECT_EQ(p.ouders_size(), 0);
  EXPECT_EQ(p.partners_size(), 0);
  EXPECT_TRUE(p.indicaties().empty());
  EXPECT_TRUE(p.a_nummer().empty());
  EXPECT_FALSE(p.has_geboorte());

  const auto outcome = gw_->WaitForRecords(id, "outcome", 1, absl::Seconds(10));
  ASSERT_EQ(outcome.size(), 1u);
  EXPECT_THAT(std::vector<std::string>(outcome[0].removed_paths().begin(),
                                       outcome[0].removed_paths().end()),
              ::testing::UnorderedElementsAre("reply:a_nummer", "reply:naam.voornamen",
                                              "reply:geboorte", "reply:ouders", "reply:partners",
                                              "reply:indicaties"));
  // Paths, never values.
  EXPECT_THAT(gw_->DecisionLogText(), Not(HasSubstr("Anna")));
  EXPECT_THAT(gw_->DecisionLogText(), Not(HasSubstr("999990019")));
}

TEST_F(ReloadTest, BadBsnIsRefusedNamingTheFieldNotTheValue) {
  StartGateway(BrpAgreement("bsn"), "");
  auto stub = ExchangeStubFor(gw_->address(), "groningen");
  std::string id;
  const grpc::Status s = Ask(*stub, kGroningenOin, "123456789", nullptr, &id);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("field bsn is not a valid BSN"));
  EXPECT_THAT(s.error_message(), Not(HasSubstr("123456789")));
  EXPECT_EQ(brp_->call_count(), 0);  // nothing was forwarded
  const auto records = gw_->WaitForRecords(id, "decision", 1, absl::Seconds(10));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].decision(), audit::v1::DECISION_DENIED);
  EXPECT_EQ(records[0].reason(), "invalid payload");
}

TEST_F(ReloadTest, ReloadsUnderLoadWithZeroFailedRequests) {
  StartGateway(BrpAgreement("bsn, naam"), "policy_watch_interval: 50ms\n");
  const pid_t pid = GatewayPid(*gw_);
  ASSERT_GT(pid, 0);

  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0}, leaked{0};
  std::vector<std::string> failures;
  std::mutex failures_mu;
  std::vector<std::thread> clients;
  for (int c = 0; c < 3; ++c) {
    clients.emplace_back([&, c] {
      auto stub = ExchangeStubFor(gw_->address(), c % 2 == 0 ? "groningen" : "amsterdam");
      const absl::string_view sender = c % 2 == 0 ? kGroningenOin : kAmsterdamOin;
      while (!stop.load()) {
        gemeente::brp::v1::Persoon p;
        grpc::Status s = Ask(*stub, sender, kBsn, &p);
        if (!s.ok()) {
          ++failed;
          std::lock_guard<std::mutex> lock(failures_mu);
          failures.push_back(absl::StrCat(s.error_code(), ": ", s.error_message()));
          continue;
        }
        ++ok;
        // Under any version in force, the reply holds no more than the union of both lists.
        if (p.ouders_size() > 0 || p.partners_size() > 0 || !p.indicaties().empty()) ++leaked;
      }
    });
  }

  // Alternate two valid versions, half of the reloads by file change, half by SIGHUP.
  constexpr int kReloads = 12;
  for (int i = 1; i <= kReloads; ++i) {
    const std::string fields = i % 2 == 1 ? "bsn, naam, geboorte" : "bsn, naam";
    const std::string version_note = absl::StrCat("# version ", i, "\n");
    ReplaceFile(AgreementPath(), version_note + BrpAgreement(fields));
    if (i % 3 == 0) ::kill(pid, SIGHUP);
    ASSERT_TRUE(WaitForLog(*gw_, "\"event\":\"policy_reloaded\"", i)) << gw_->StderrText();
    absl::SleepFor(absl::Milliseconds(50));
  }
  // Let requests run a while under the final version too.
  const int before = ok.load();
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (ok.load() < before + 20 && absl::Now() < deadline) absl::SleepFor(absl::Milliseconds(10));
  stop = true;
  for (std::thread& t : clients) t.join();

  std::printf("%d requests OK, %d failed, across %d reloads\n", ok.load(), failed.load(),
              CountOf(gw_->StderrText(), "\"event\":\"policy_reloaded\""));
  EXPECT_EQ(failed.load(), 0) << (failures.empty() ? "" : failures.front());
  EXPECT_GT(ok.load(), kReloads);
  EXPECT_EQ(leaked.load(), 0);
  EXPECT_THAT(gw_->StderrText(), HasSubstr("\"trigger\":\"sighup\""));
  EXPECT_THAT(gw_->StderrText(), HasSubstr("\"trigger\":\"file_change\""));
  EXPECT_THAT(gw_->StderrText(), Not(HasSubstr("policy_reload_rejected")));
}

TEST_F(ReloadTest, RequestInFlightFinishesUnderTheVersionItStartedWith) {
  StartGateway(BrpAgreement("bsn, naam"), "policy_watch_interval: 50ms\n");
  // The BRP service takes its time; meanwhile the agreement changes.
  brp_->SetHandler([](const EndpointCall& call) {
    return AnswerFullPersoon(call).After(absl::Seconds(2));
  });
  gemeente::brp::v1::Persoon in_flight;
  grpc::Status in_flight_status;
  std::thread request([&] {
    auto stub = ExchangeStubFor(gw_->address(), "groningen");
    in_flight_status = Ask(*stub, kGroningenOin, kBsn, &in_flight);
  });
  ASSERT_TRUE(brp_->WaitForCalls(1, absl::Seconds(20)));
  ReplaceFile(AgreementPath(), BrpAgreement("bsn, geboorte"));
  ASSERT_TRUE(WaitForLog(*gw_, "\"event\":\"policy_reloaded\"", 1)) << gw_->StderrText();
  request.join();

  // Started under "bsn, naam": its reply is filtered by that version.
  ASSERT_TRUE(in_flight_status.ok()) << in_flight_status.error_message();
  EXPECT_EQ(in_flight.naam().geslachtsnaam(), "Berg");
  EXPECT_FALSE(in_flight.has_geboorte());
  // A new request gets the new version.
  brp_->SetHandler(AnswerFullPersoon);
  auto stub = ExchangeStubFor(gw_->address(), "groningen");
  gemeente::brp::v1::Persoon fresh;
  ASSERT_TRUE(Ask(*stub, kGroningenOin, kBsn, &fresh).ok());
  EXPECT_FALSE(fresh.has_naam());
  EXPECT_EQ(fresh.geboorte().plaats(), "Amsterdam");
}

TEST_F(ReloadTest, BrokenReloadIsRejectedWithFileAndLineAndTheOldPolicyStays) {
  StartGateway(BrpAgreement("bsn, naam"), "policy_watch_interval: 50ms\n");
  auto stub = ExchangeStubFor(gw_->address(), "groningen");

  // Line 11 names a field Persoon does not have.
  ReplaceFile(AgreementPath(), BrpAgreement("bsn, naam, roepnaam"));
  ASSERT_TRUE(WaitForLog(*gw_, "\"event\":\"policy_reload_rejected\"", 1)) << gw_->StderrText();
  const std::string log = gw_->StderrText();
  EXPECT_THAT(log, HasSubstr(absl::StrCat(AgreementPath(), ":11:")));
  EXPECT_THAT(log, HasSubstr("has no field 'roepnaam'"));
  EXPECT_EQ(CountOf(log, "policy_reloaded"), 0);

  // Still the old policy: naam passes, the request succeeds.
  gemeente::brp::v1::Persoon p;
  ASSERT_TRUE(Ask(*stub, kGroningenOin, kBsn, &p).ok());
  EXPECT_EQ(p.naam().geslachtsnaam(), "Berg");
  // The broken version is not tried again and again.
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(CountOf(gw_->StderrText(), "policy_reload_rejected"), 1);

  // A broken YAML file and a SIGHUP: rejected too.
  ReplaceFile(AgreementPath(), "agreements:\n  - id: [unclosed\n");
  ::kill(GatewayPid(*gw_), SIGHUP);
  ASSERT_TRUE(WaitForLog(*gw_, "\"event\":\"policy_reload_rejected\"", 2)) << gw_->StderrText();
  ASSERT_TRUE(Ask(*stub, kGroningenOin, kBsn, &p).ok());

  // Fixed: the new policy is in force (geboorte now passes, naam no longer).
  ReplaceFile(AgreementPath(), BrpAgreement("bsn, geboorte"));
  ASSERT_TRUE(WaitForLog(*gw_, "\"event\":\"policy_reloaded\"", 1)) << gw_->StderrText();
  p.Clear();
  ASSERT_TRUE(Ask(*stub, kGroningenOin, kBsn, &p).ok());
  EXPECT_FALSE(p.has_naam());
  EXPECT_EQ(p.geboorte().plaats(), "Amsterdam");
}

// A configuration file deleted under the running gateway (here the registry): the reload is
// rejected naming the file, the policy in force stays, calls go on; when the file is back,
// the next change reloads.
TEST_F(ReloadTest, DeletedConfigFileIsRejectedAndTheOldPolicyStays) {
  StartGateway(BrpAgreement("bsn, naam"), "policy_watch_interval: 50ms\n");
  auto stub = ExchangeStubFor(gw_->address(), "groningen");
  const std::string registry = gw_->FilePath("registry.yaml");
  const std::string saved = ReadFileOrDie(registry);
  ASSERT_TRUE(std::filesystem::remove(registry));
  ASSERT_TRUE(WaitForLog(*gw_, "\"event\":\"policy_reload_rejected\"", 1)) << gw_->StderrText();
  EXPECT_THAT(gw_->StderrText(), HasSubstr(registry));
  gemeente::brp::v1::Persoon p;
  ASSERT_TRUE(Ask(*stub, kGroningenOin, kBsn, &p).ok());
  EXPECT_EQ(p.naam().geslachtsnaam(), "Berg");
  // Back, with a changed agreement: reloaded.
  ReplaceFile(registry, saved);
  ReplaceFile(AgreementPath(), BrpAgreement("bsn, geboorte"));
  ASSERT_TRUE(WaitForLog(*gw_, "\"event\":\"policy_reloaded\"", 1)) << gw_->StderrText();
  p.Clear();
  ASSERT_TRUE(Ask(*stub, kGroningenOin, kBsn, &p).ok());
  EXPECT_FALSE(p.has_naam());
}

TEST_F(ReloadTest, RateLimitPerSenderGivesRetryInfo) {
  // 0.1/s: the next token is 10 s away, far longer than this test's three requests take.
  StartGateway(BrpAgreement("bsn", "    rate: {per_second: 0.1, burst: 2, per: sender}\n"), "");
  auto groningen = ExchangeStubFor(gw_->address(), "groningen");
  auto amsterdam = ExchangeStubFor(gw_->address(), "amsterdam");
  ASSERT_TRUE(Ask(*groningen, kGroningenOin, kBsn, nullptr).ok());
  ASSERT_TRUE(Ask(*groningen, kGroningenOin, kBsn, nullptr).ok());
  std::string id;
  const grpc::Status limited = Ask(*groningen, kGroningenOin, kBsn, nullptr, &id);
  ASSERT_EQ(limited.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(limited.error_message(), HasSubstr("retry after "));
  EXPECT_THAT(limited.error_message(), HasSubstr("ms"));

  // google.rpc.Status with a google.rpc.RetryInfo detail, in wire-compatible mirrors.
  exchange::v1::RpcStatus details;
  ASSERT_TRUE(details.ParseFromString(limited.error_details()));
  EXPECT_EQ(details.code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  ASSERT_EQ(details.details_size(), 1);
  EXPECT_EQ(details.details(0).type_url(), "type.googleapis.com/google.rpc.RetryInfo");
  exchange::v1::RetryInfo retry;
  ASSERT_TRUE(retry.ParseFromString(details.details(0).value()));
  const int64_t delay_ms = retry.retry_delay().seconds() * 1000 + retry.retry_delay().nanos() / 1000000;
  EXPECT_GT(delay_ms, 0);
  EXPECT_LE(delay_ms, 10000);

  // Per sender: Amsterdam has its own bucket.
  EXPECT_TRUE(Ask(*amsterdam, kAmsterdamOin, kBsn, nullptr).ok());
  EXPECT_EQ(brp_->call_count(), 3);

  const auto records = gw_->WaitForRecords(id, "decision", 1, absl::Seconds(10));
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].decision(), audit::v1::DECISION_DENIED);
  EXPECT_EQ(records[0].reason(), "rate limit");
}

// A new collective service's message type, as `protoc --include_imports
// --descriptor_set_out` would write it; never compiled into the gateway.
google::protobuf::FileDescriptorSet ErkenningSet() {
  google::protobuf::FileDescriptorSet set;
  google::protobuf::FileDescriptorProto::descriptor()->file()->CopyTo(set.add_file());
  options::v1::PersonalData::descriptor()->file()->CopyTo(set.add_file());
  google::protobuf::FileDescriptorProto* f = set.add_file();
  f->set_name("gemeente/erkenning/v1/erkenning.proto");
  f->set_package("gemeente.erkenning.v1");
  f->set_syntax("proto3");
  f->add_dependency("knooppunt/options/v1/options.proto");
  google::protobuf::DescriptorProto* m = f->add_message_type();
  m->set_name("Erkenning");
  for (auto [name, number] : {std::pair<const char*, int>{"kind_bsn", 1}, {"toelichting", 2}}) {
    google::protobuf::FieldDescriptorProto* field = m->add_field();
    field->set_name(name);
    field->set_number(number);
    field->set_type(google::protobuf::FieldDescriptorProto::TYPE_STRING);
    field->set_label(google::protobuf::FieldDescriptorProto::LABEL_OPTIONAL);
    if (number == 1) {
      field->mutable_options()->MutableExtension(options::v1::personal)->set_bsn(true);
    }
  }
  return set;
}

TEST_F(ReloadTest, NewMessageTypeFromADescriptorSetByConfigAlone) {
  const std::string set_path = absl::StrCat(::testing::TempDir(), "/erkenning-", ::getpid(), ".pb");
  std::ofstream(set_path, std::ios::binary) << ErkenningSet().SerializeAsString();
  StartGateway(R"yaml(agreements:
  - id: erkenning
    message_type: gemeente.erkenning.v1.Erkenning
    reply_type: gemeente.erkenning.v1.Erkenning
    mode: bevraging
    from: ["00000099300000000014"]
    to: ["00000099200000000001"]
    purposes: [Erkenning]
    fields:
      allow: [kind_bsn]
    reply_fields: {all: true}
)yaml",
               absl::StrCat("descriptor_set_files:\n  - ", set_path, "\n"));
  std::filesystem::remove(set_path);
  // The endpoint echoes what it received.
  brp_->SetHandler([](const EndpointCall& call) {
    EndpointReply reply;
    *reply.envelope.mutable_payload() = call.request.payload();
    return reply;
  });

  google::protobuf::DescriptorPool pool;
  const google::protobuf::FileDescriptorSet set = ErkenningSet();
  for (const auto& file : set.file()) ASSERT_NE(pool.BuildFile(file), nullptr);
  const google::protobuf::Descriptor* type =
      pool.FindMessageTypeByName("gemeente.erkenning.v1.Erkenning");
  google::protobuf::DynamicMessageFactory factory(&pool);
  std::unique_ptr<google::protobuf::Message> msg(factory.GetPrototype(type)->New());
  msg->GetReflection()->SetString(msg.get(), type->FindFieldByName("kind_bsn"), kBsn);
  msg->GetReflection()->SetString(msg.get(), type->FindFieldByName("toelichting"), "vrij");

  auto stub = ExchangeStubFor(gw_->address(), "groningen");
  exchange::v1::Envelope reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  const grpc::Status s = stub->Request(
      &ctx, client::NewEnvelope(std::string(kGroningenOin), std::string(kBrpOin), "Erkenning", *msg),
      &reply);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(brp_->call_count(), 1);
  std::unique_ptr<google::protobuf::Message> received(factory.GetPrototype(type)->New());
  ASSERT_TRUE(received->ParseFromString(brp_->calls()[0].request.payload().value()));
  EXPECT_EQ(received->GetReflection()->GetString(*received, type->FindFieldByName("kind_bsn")), kBsn);
  EXPECT_FALSE(received->GetReflection()->HasField(*received, type->FindFieldByName("toelichting")));

  // Its BSN field is checked like a compiled-in one.
  msg->GetReflection()->SetString(msg.get(), type->FindFieldByName("kind_bsn"), "123456789");
  grpc::ClientContext ctx2;
  const grpc::Status bad = stub->Request(
      &ctx2, client::NewEnvelope(std::string(kGroningenOin), std::string(kBrpOin), "Erkenning", *msg),
      &reply);
  EXPECT_EQ(bad.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(bad.error_message(), HasSubstr("field kind_bsn"));
}

}  // namespace
}  // namespace knooppunt::testing
