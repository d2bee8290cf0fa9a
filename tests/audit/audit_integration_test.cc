// The audit log end to end through the real gateway binary: every decision lands in the
// hash-chained SQLite log with the citizen as a pseudonym; the Auditor service answers "who
// received data about this BSN" and verifies the log; role checks (auditor, operator, party);
// fail closed when the log cannot be written (size-limited database, as a full disk). And with
// audit.postgres: two gateway replicas share one PostgreSQL audit log (a chain each), the
// Auditor service reads and verifies both chains with the read-only role, a third gateway with
// a replica's instance_id does not start, and exchanges are refused while the database is
// gone and served again when it is back.
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/client/envelope.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "knooppunt/audit/v1/auditor.grpc.pb.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

constexpr absl::string_view kBsn = "999993653";

// Defaults for the environment ctest should set (see tests/integration/CMakeLists.txt).
const bool kEnvironmentDefaults = [] {
  setenv("KNOOPPUNT_GATEWAY_BIN", KNOOPPUNT_DEFAULT_GATEWAY_BIN, /*overwrite=*/0);
  setenv("KNOOPPUNT_TEST_PKI_DIR", KNOOPPUNT_DEFAULT_TEST_PKI_DIR, /*overwrite=*/0);
  return true;
}();

constexpr const char* kAgreements = R"yaml(
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
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging]
    valid_from: 2020-01-01
)yaml";

class AuditIntegrationTest : public ::testing::Test {
 protected:
  // The gateway's files; with `pg`, its audit log is in that PostgreSQL server.
  GatewayConfigFiles Files(uint64_t max_db_bytes = 0, const PostgresServer* pg = nullptr,
                           const std::string& instance_id = "") {
    if (brp_ == nullptr) {
      absl::StatusOr<std::unique_ptr<TestEndpoint>> brp = TestEndpoint::Start("brp");
      EXPECT_TRUE(brp.ok()) << brp.status();
      if (brp.ok()) brp_ = *std::move(brp);
    }
    if (keys_dir_.empty()) {
      keys_dir_ = std::filesystem::temp_directory_path() /
                  absl::StrCat("kp-audit-it-", getpid(), "-", counter_++);
      std::filesystem::create_directories(keys_dir_);
      EXPECT_TRUE(audit::GenerateKeys(keys_dir_ + "/hmac.key", keys_dir_ + "/sign.key",
                                      keys_dir_ + "/sign.pub")
                      .ok());
      db_ = keys_dir_ + "/audit.db";
    }
    std::vector<TestOrganisation> orgs = DevPkiOrganisations();
    SetEndpoint(&orgs, kBrpOin, brp_->address());
    GatewayConfigFiles files;
    files.registry_yaml = RegistryYaml(orgs);
    files.agreement_files["brp.yaml"] = kAgreements;
    files.instance_id = instance_id;
    files.extra_gateway_yaml =
        absl::StrCat("\naudit:\n  hmac_key_file: ", keys_dir_, "/hmac.key\n  signing_key_file: ",
                     keys_dir_, "/sign.key\n  checkpoint_every_records: 4\n  checkpoint_every: 1s\n");
    if (pg == nullptr) {
      absl::StrAppend(&files.extra_gateway_yaml, "  db_path: ", db_, "\n");
    } else {
      for (const char* role : {"knooppunt_writer", "knooppunt_auditor"}) {
        absl::StrAppend(&files.extra_gateway_yaml,
                        role == std::string("knooppunt_writer") ? "  postgres:\n"
                                                                : "  postgres_reader:\n",
                        "    conninfo: \"", pg->Conninfo(role), "\"\n    password_file: ",
                        pg->PasswordFile(role), "\n    connect_timeout: 1s\n");
      }
    }
    if (max_db_bytes > 0) absl::StrAppend(&files.extra_gateway_yaml, "  max_db_bytes: ", max_db_bytes, "\n");
    return files;
  }
  void StartGateway(uint64_t max_db_bytes = 0) {
    GatewayConfigFiles files = Files(max_db_bytes);
    ASSERT_NE(brp_, nullptr);
    absl::StatusOr<std::unique_ptr<GatewayProcess>> gw = GatewayProcess::Start(files);
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = *std::move(gw);
  }
  void TearDown() override {
    gateway_.reset();
    brp_.reset();
    std::error_code ec;
    if (!keys_dir_.empty()) std::filesystem::remove_all(keys_dir_, ec);
  }

  // To `gw` (default: gateway_).
  std::shared_ptr<grpc::Channel> ChannelFor(absl::string_view stem, GatewayProcess* gw = nullptr) {
    auto creds = tls::MutualTlsChannelCredentials(
        ReadPkiFile("ca.crt"), ReadPkiFile(absl::StrCat(stem, ".crt")),
        ReadPkiFile(absl::StrCat(stem, ".key")), std::string(kGatewayOin));
    return grpc::CreateChannel((gw ? gw : gateway_.get())->address(), creds);
  }

  grpc::Status Ask(absl::string_view stem, absl::string_view sender, GatewayProcess* gw = nullptr) {
    auto stub = exchange::v1::Exchange::NewStub(ChannelFor(stem, gw));
    gemeente::brp::v1::PersoonVraag q;
    q.set_bsn(std::string(kBsn));
    exchange::v1::Envelope env =
        client::NewEnvelope(std::string(sender), std::string(kBrpOin), "BRP-bevraging", q);
    exchange::v1::Envelope reply;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub->Request(&ctx, env, &reply);
  }

  // Auditor.Query as `stem`; the status, and the entries received.
  grpc::Status Query(absl::string_view stem, const audit::v1::QueryRequest& req,
                     std::vector<audit::v1::AuditEntry>* out) {
    auto stub = audit::v1::Auditor::NewStub(ChannelFor(stem));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto reader = stub->Query(&ctx, req);
    audit::v1::AuditEntry e;
    while (reader->Read(&e)) out->push_back(e);
    return reader->Finish();
  }
  grpc::Status Verify(absl::string_view stem, audit::v1::VerifyReply* reply) {
    auto stub = audit::v1::Auditor::NewStub(ChannelFor(stem));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return stub->Verify(&ctx, audit::v1::VerifyRequest(), reply);
  }
  // Denials and outcomes are written without the caller waiting: poll (bounded) until the
  // auditor sees `n` records.
  void WaitForRecords(size_t n) {
    for (int i = 0; i < 200; ++i) {
      std::vector<audit::v1::AuditEntry> all;
      if (Query("auditor", {}, &all).ok() && all.size() >= n) return;
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "fewer than " << n << " audit records after 10s";
  }
  std::string Pseudonym() {
    return audit::Pseudonym(*audit::ReadHmacKeyFile(keys_dir_ + "/hmac.key"), kBsn);
  }

  static int counter_;
  std::unique_ptr<TestEndpoint> brp_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::string keys_dir_, db_;
};
int AuditIntegrationTest::counter_ = 0;

TEST_F(AuditIntegrationTest, AuditorListsWhoReceivedDataAboutABsnAndVerifies) {
  StartGateway();
  ASSERT_TRUE(Ask("groningen", kGroningenOin).ok());
  EXPECT_EQ(Ask("zaanstad", kZaanstadOin).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  WaitForRecords(3);

  audit::v1::QueryRequest req;
  req.set_data_subject(Pseudonym());
  std::vector<audit::v1::AuditEntry> entries;
  grpc::Status s = Query("auditor", req, &entries);
  ASSERT_TRUE(s.ok()) << s.error_message();
  // Groningen: decision + outcome (allowed); Zaanstad: the denial.
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].record().sender(), kGroningenOin);
  EXPECT_EQ(entries[0].record().decision(), audit::v1::DECISION_ALLOWED);
  EXPECT_EQ(entries[0].record().agreement_id(), "brp-bevragen-afnemers");
  EXPECT_EQ(entries[0].record().event(), "decision");
  EXPECT_EQ(entries[1].record().event(), "outcome");
  EXPECT_EQ(entries[2].record().sender(), kZaanstadOin);
  EXPECT_EQ(entries[2].record().decision(), audit::v1::DECISION_DENIED);
  for (const auto& e : entries) {
    EXPECT_EQ(e.record().data_subjects_size(), 1);
    EXPECT_EQ(e.record().trace_id().size(), 32u);
  }

  audit::v1::VerifyReply v;
  s = Verify("auditor", &v);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(v.intact()) << v.problem();
  EXPECT_EQ(v.records(), 3);

  // No BSN in clear anywhere in the database.
  gateway_->Stop();
  for (const char* suffix : {"", "-wal"}) {
    std::ifstream f(db_ + suffix, std::ios::binary);
    std::stringstream t;
    t << f.rdbuf();
    EXPECT_EQ(t.str().find(std::string(kBsn)), std::string::npos) << suffix;
  }
  // And the shutdown signed a final checkpoint: the whole log is under a signature.
  auto key = audit::SignatureVerifier::FromPemFile(keys_dir_ + "/sign.pub");
  auto reader = audit::AuditReader::Open(db_);
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<audit::VerifyResult> r = (*reader)->Verify(**key);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->intact) << r->problem;
  EXPECT_EQ(r->unsigned_tail, 0);
}

TEST_F(AuditIntegrationTest, RoleChecks) {
  StartGateway();
  ASSERT_TRUE(Ask("groningen", kGroningenOin).ok());
  EXPECT_FALSE(Ask("zaanstad", kZaanstadOin).ok());
  WaitForRecords(3);
  std::vector<audit::v1::AuditEntry> entries;
  audit::v1::VerifyReply v;

  // Operators read nothing (separation of duties).
  grpc::Status s = Query("operator", {}, &entries);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  EXPECT_TRUE(entries.empty());
  EXPECT_EQ(Verify("operator", &v).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // An organisation reads only the records that name it.
  s = Query("groningen", {}, &entries);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(entries.size(), 2u);
  for (const auto& e : entries) EXPECT_EQ(e.record().sender(), kGroningenOin);
  entries.clear();
  s = Query("zaanstad", {}, &entries);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].record().sender(), kZaanstadOin);
  entries.clear();
  s = Query("amsterdam", {}, &entries);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(entries.empty());
  EXPECT_EQ(Verify("groningen", &v).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  // The auditor reads all.
  s = Query("auditor", {}, &entries);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(entries.size(), 3u);

  // A BSN in clear is refused: only pseudonyms travel.
  audit::v1::QueryRequest clear;
  clear.set_data_subject(std::string(kBsn));
  entries.clear();
  EXPECT_EQ(Query("auditor", clear, &entries).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // An auditor certificate changes nothing: the Auditor service has only read methods, and
  // through the Exchange it is an organisation without any agreement.
  const google::protobuf::ServiceDescriptor* service =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(
          audit::v1::Auditor::service_full_name());
  ASSERT_NE(service, nullptr);
  EXPECT_EQ(service->method_count(), 2);
  EXPECT_EQ(Ask("auditor", kAuditorOin).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuditIntegrationTest, ExchangeIsRefusedWhenTheAuditLogIsFull) {
  // A size-limited audit database: when it is full, writes fail with SQLITE_FULL as on a full
  // disk, and the gateway must refuse (UNAVAILABLE) rather than forward unaudited.
  StartGateway(/*max_db_bytes=*/64 * 1024);
  int ok = 0;
  grpc::Status s;
  for (int i = 0; i < 2000; ++i) {
    s = Ask("groningen", kGroningenOin);
    if (!s.ok()) break;
    ++ok;
  }
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_GT(ok, 0);
  // Nothing reached the endpoint that was not on record first.
  EXPECT_EQ(brp_->call_count(), ok);
  // Near full, a failed commit rolls back a whole batch (best-effort records included), so
  // a later, smaller commit may still fit: each further call is either refused or on record
  // and forwarded — never forwarded unrecorded.
  for (int i = 0; i < 20; ++i) {
    s = Ask("groningen", kGroningenOin);
    if (s.ok()) {
      ++ok;
    } else {
      EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
    }
  }
  EXPECT_EQ(brp_->call_count(), ok);
  EXPECT_TRUE(gateway_->running());
}

TEST_F(AuditIntegrationTest, ReplicasShareAPostgresAuditLogWithAChainEach) {
  if (!PostgresServer::Available()) GTEST_SKIP() << "no PostgreSQL server binaries (postgresql-15)";
  absl::StatusOr<std::unique_ptr<PostgresServer>> pg = PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  absl::StatusOr<std::unique_ptr<GatewayProcess>> gw1 =
      GatewayProcess::Start(Files(0, pg->get(), "replica-1"));
  ASSERT_TRUE(gw1.ok()) << gw1.status();
  gateway_ = *std::move(gw1);  // the Auditor service is asked here
  absl::StatusOr<std::unique_ptr<GatewayProcess>> gw2 =
      GatewayProcess::Start(Files(0, pg->get(), "replica-2"));
  ASSERT_TRUE(gw2.ok()) << gw2.status();

  // A third gateway claiming replica-1's chain does not start, and says why.
  GatewayExit twin = RunGatewayExpectingFailure(Files(0, pg->get(), "replica-1"));
  EXPECT_FALSE(twin.served);
  EXPECT_NE(twin.stderr_text.find("same instance_id"), std::string::npos) << twin.stderr_text;

  ASSERT_TRUE(Ask("groningen", kGroningenOin).ok());
  ASSERT_TRUE(Ask("groningen", kGroningenOin, gw2->get()).ok());
  EXPECT_EQ(Ask("zaanstad", kZaanstadOin, gw2->get()).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  WaitForRecords(5);  // decision + outcome on each replica, and the denial

  // The auditor, through replica-1's Auditor service (read-only role), sees both chains.
  audit::v1::QueryRequest req;
  req.set_data_subject(Pseudonym());
  std::vector<audit::v1::AuditEntry> entries;
  grpc::Status s = Query("auditor", req, &entries);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(entries.size(), 5u);
  int on_2 = 0;
  for (const auto& e : entries) on_2 += e.record().instance_id() == "replica-2";
  EXPECT_EQ(on_2, 3);
  audit::v1::VerifyReply v;
  s = Verify("auditor", &v);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(v.intact()) << v.problem();
  EXPECT_EQ(v.records(), 5);

  // The database goes away: exchanges are refused (never forwarded unrecorded) ...
  const int forwarded = brp_->call_count();
  ASSERT_TRUE((*pg)->Stop().ok());
  s = Ask("groningen", kGroningenOin, gw2->get());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_EQ(brp_->call_count(), forwarded);
  // ... and served again once it is back (the log reconnects by itself; polled, bounded).
  ASSERT_TRUE((*pg)->Restart().ok());
  const absl::Time until = absl::Now() + absl::Seconds(60);
  do {
    s = Ask("groningen", kGroningenOin, gw2->get());
    if (!s.ok()) absl::SleepFor(absl::Milliseconds(200));
  } while (!s.ok() && absl::Now() < until);
  ASSERT_TRUE(s.ok()) << s.error_message();

  gateway_->Stop();
  (*gw2)->Stop();
  // Both replicas signed their chains at shutdown; everything verifies, chain by chain.
  pg::ConnectOptions o;
  o.conninfo = (*pg)->Conninfo("knooppunt_auditor");
  o.password = *pg::ReadPasswordFile((*pg)->PasswordFile("knooppunt_auditor"));
  auto reader = audit::AuditReader::OpenPostgres(o);
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto key = audit::SignatureVerifier::FromPemFile(keys_dir_ + "/sign.pub");
  absl::StatusOr<audit::VerifyResult> r = (*reader)->Verify(**key);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->intact) << r->problem;
  ASSERT_EQ(r->chains.size(), 2u);
  EXPECT_EQ(r->chains[0].name, "replica-1");
  EXPECT_EQ(r->chains[1].name, "replica-2");
  EXPECT_EQ(r->unsigned_tail, 0);
}

}  // namespace
}  // namespace knooppunt::testing
