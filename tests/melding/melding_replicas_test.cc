// Three gateway replicas share one PostgreSQL database (meldingen queue and audit log), as
// behind a load balancer: kill -9 one of them during a burst of Sends; every acknowledged
// message is delivered (the dead replica's by the others, once its lease lapsed), nothing
// delivered was not sent, nothing went out unrecorded, and the audit chains verify together.
// Then the database goes away: a replica refuses Sends (fail closed) and serves again by
// itself once the database is back. The PostgreSQL server is the test's own (initdb in a
// temp dir, tests/testing/postgres_server.h).
#include <sys/wait.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gateway/audit/audit_crypto.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "knooppunt/audit/v1/decision_record.pb.h"
#include "tests/melding/melding_fixture.h"
#include "tests/testing/postgres_server.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;
using exchange::v1::Receipt;

constexpr int kReplicas = 3;

std::string RunCommand(const std::string& cmd, int* exit_code) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  *exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return out;
}

class MeldingReplicasTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PostgresServer::Available()) GTEST_SKIP() << "no PostgreSQL server (postgresql-15)";
    auto pg = PostgresServer::Start();
    ASSERT_TRUE(pg.ok()) << pg.status();
    pg_ = *std::move(pg);
    keys_ = pg_->dir() + "-keys";
    std::filesystem::create_directories(keys_);
    ASSERT_TRUE(audit::GenerateKeys(keys_ + "/hmac.key", keys_ + "/sign.key", keys_ + "/sign.pub")
                    .ok());
    groningen_ = DeliverEndpoint::Start("groningen");
    ASSERT_NE(groningen_, nullptr);
    for (int i = 0; i < kReplicas; ++i) {
      GatewayConfigFiles files = MeldingFiles(groningen_->address(), "5d", MeldingPostgres());
      files.instance_id = absl::StrCat("replica-", i);
      absl::StrAppend(&files.extra_gateway_yaml, AuditPostgres());
      replicas_.push_back(std::make_unique<MeldingGateway>(files));
    }
    for (auto& r : replicas_) ASSERT_TRUE(r->Start()) << r->Stderr();
  }
  void TearDown() override {
    replicas_.clear();
    groningen_.reset();
    pg_.reset();
    std::error_code ec;
    if (!keys_.empty()) std::filesystem::remove_all(keys_, ec);
  }

  std::string Connection(absl::string_view indent, absl::string_view role) const {
    return absl::StrCat(indent, "conninfo: \"", pg_->Conninfo(role), "\"\n", indent,
                        "password_file: ", pg_->PasswordFile(role), "\n", indent,
                        "connect_timeout: 1s\n");
  }
  std::string MeldingPostgres() const {
    return absl::StrCat("  replica_lease: 2s\n  postgres:\n",
                        Connection("    ", "knooppunt_writer"));
  }
  std::string AuditPostgres() const {
    return absl::StrCat("audit:\n  hmac_key_file: ", keys_, "/hmac.key\n  signing_key_file: ",
                        keys_, "/sign.key\n  checkpoint_every: 1s\n  postgres:\n",
                        Connection("    ", "knooppunt_writer"));
  }

  // knooppunt-audit verify on the shared database, with the auditor's read-only role.
  std::string VerifyAudit(int* exit_code) const {
    const std::string bin = KNOOPPUNT_AUDIT_BIN;
    return RunCommand(absl::StrCat(bin, " verify --postgres=\"", pg_->Conninfo("knooppunt_auditor"),
                                   "\" --password_file=", pg_->PasswordFile("knooppunt_auditor"),
                                   " --public_key=", keys_, "/sign.pub 2>&1"),
                      exit_code);
  }

  std::unique_ptr<PostgresServer> pg_;
  std::string keys_;
  std::unique_ptr<DeliverEndpoint> groningen_;
  std::vector<std::unique_ptr<MeldingGateway>> replicas_;
};

TEST_F(MeldingReplicasTest, Kill9OfOneReplicaDuringABurstLosesNothingAndTheAuditVerifies) {
  constexpr int kSenders = 24;
  constexpr int kTotal = 1500;
  const unsigned seed = std::random_device{}();
  std::mt19937 rng(seed);
  const size_t kill_after = std::uniform_int_distribution<size_t>(100, 700)(rng);
  std::printf("seed %u: replica-1 is killed after %zu receipts\n", seed, kill_after);

  // Groningen refuses every delivery until after the kill, so the killed replica still holds
  // every message it acknowledged: those can only arrive through a takeover.
  groningen_->FailEvery(1);
  absl::Mutex mu;
  std::vector<std::string> acknowledged;
  std::set<std::string> acknowledged_by_killed;
  std::set<std::string> sent;
  std::atomic<int> next{0};
  std::vector<std::string> addresses;
  for (auto& r : replicas_) addresses.push_back(r->address());
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&, t] {
      // Like a load balancer: each sender starts on "its" replica and moves on to the next
      // when a call fails, resending the same message (same id: idempotent).
      std::vector<std::unique_ptr<exchange::v1::Exchange::Stub>> stubs;
      for (const std::string& a : addresses) stubs.push_back(ExchangeStubFor(a, "verhuizen"));
      int at = t % kReplicas;
      for (int i = next++; i < kTotal; i = next++) {
        Envelope e = Verhuismelding("gemeente:0014", "", absl::StrCat("replicas ", i));
        {
          absl::MutexLock lock(&mu);
          sent.insert(e.message_id());
        }
        for (int attempt = 0; attempt < 2 * kReplicas; ++attempt) {
          Receipt r;
          if (SendMelding(*stubs[at], e, &r, absl::Seconds(20)).ok()) {
            absl::MutexLock lock(&mu);
            acknowledged.push_back(e.message_id());
            if (at == 1) acknowledged_by_killed.insert(e.message_id());
            break;
          }
          at = (at + 1) % kReplicas;
        }
      }
    });
  }
  {
    absl::MutexLock lock(&mu);
    auto reached = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu) { return acknowledged.size() >= kill_after; };
    mu.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(120));
  }
  replicas_[1]->Kill9();
  for (std::thread& t : senders) t.join();
  groningen_->FailEvery(0);
  std::vector<std::string> acked;
  {
    absl::MutexLock lock(&mu);
    acked = acknowledged;
  }
  ASSERT_GE(acked.size(), kill_after) << "the burst was too slow to reach the kill point";
  std::printf("%zu acknowledged of %zu sent, %zu of them by the killed replica\n", acked.size(),
              sent.size(), acknowledged_by_killed.size());
  ASSERT_FALSE(acknowledged_by_killed.empty());

  // The dead replica's messages are delivered by the others once its lease (2s) lapsed.
  EXPECT_TRUE(groningen_->WaitForIds(acked, absl::Seconds(180)))
      << "acknowledged messages missing";
  std::map<std::string, int> copies;
  for (const auto& d : groningen_->delivered()) ++copies[d.envelope.message_id()];
  int duplicates = 0;
  for (const auto& [id, n] : copies) {
    EXPECT_EQ(sent.count(id), 1u) << "delivered something never sent: " << id;
    duplicates += n - 1;
  }
  std::printf("%zu distinct delivered, %d duplicate deliveries (at-least-once)\n", copies.size(),
              duplicates);

  // Nothing went out unrecorded: across the replicas' decision logs, every delivered message
  // has its Send decision, or a "resumed" record from the replica that took it over.
  std::set<std::string> on_record, taken_over;
  for (auto& r : replicas_) {
    for (absl::string_view line :
         absl::StrSplit(ReadFileOrDie(r->dir() + "/decisions.jsonl"), '\n')) {
      audit::v1::DecisionRecord rec;
      google::protobuf::util::JsonParseOptions lenient;
      lenient.ignore_unknown_fields = true;
      if (!google::protobuf::util::JsonStringToMessage(std::string(line), &rec, lenient).ok()) {
        continue;
      }
      if (rec.event() == "resumed" ||
          (rec.event() == "decision" && rec.operation() == "Send" &&
           rec.decision() == audit::v1::DECISION_ALLOWED)) {
        on_record.insert(rec.message_id());
      }
      if (rec.event() == "resumed" && r != replicas_[1]) taken_over.insert(rec.message_id());
    }
  }
  for (const auto& [id, n] : copies) EXPECT_EQ(on_record.count(id), 1u) << "unrecorded: " << id;
  // The killed replica's messages were taken over (and put on record) by the others.
  for (const std::string& id : acknowledged_by_killed) {
    EXPECT_EQ(taken_over.count(id), 1u) << "not taken over: " << id;
  }
  std::printf("%zu messages taken over from the killed replica\n", taken_over.size());

  // The audit log in PostgreSQL: one chain per replica, verified together by the auditor.
  for (int i : {0, 2}) EXPECT_TRUE(replicas_[i]->Stop()) << replicas_[i]->Stderr();
  int code = -1;
  const std::string report = VerifyAudit(&code);
  EXPECT_EQ(code, 0) << report;
  for (int i = 0; i < kReplicas; ++i) {
    EXPECT_TRUE(absl::StrContains(report, absl::StrCat("replica-", i))) << report;
  }
}

TEST_F(MeldingReplicasTest, AReplicaThatLosesTheDatabaseRefusesSendsAndRecoversWhenItIsBack) {
  auto stub = ExchangeStubFor(replicas_[0]->address(), "verhuizen");
  Receipt receipt;
  Envelope before = Verhuismelding("gemeente:0014", "", "before");
  ASSERT_TRUE(SendMelding(*stub, before, &receipt).ok());

  ASSERT_TRUE(pg_->Stop().ok());
  Envelope during = Verhuismelding("gemeente:0014", "", "during");
  grpc::Status refused = SendMelding(*stub, during, &receipt, absl::Seconds(20));
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE) << refused.error_message();
  EXPECT_TRUE(replicas_[0]->pid() > 0 && waitpid(replicas_[0]->pid(), nullptr, WNOHANG) == 0)
      << "the replica must keep running without its database";

  ASSERT_TRUE(pg_->Restart().ok());
  // Back by itself: the same message is accepted once the database answers again.
  grpc::Status accepted;
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  do {
    absl::SleepFor(absl::Milliseconds(200));
    accepted = SendMelding(*stub, during, &receipt, absl::Seconds(20));
  } while (!accepted.ok() && absl::Now() < deadline);
  ASSERT_TRUE(accepted.ok()) << accepted.error_message() << "\n" << replicas_[0]->Stderr();
  EXPECT_TRUE(groningen_->WaitForIds({before.message_id(), during.message_id()},
                                     absl::Seconds(60)));
}

}  // namespace
}  // namespace knooppunt::testing
