// The audit log on PostgreSQL shared by gateway replicas (one chain per instance_id), against a
// real server the test starts: replicas writing concurrently verify together; tampering names
// the chain; one writer per chain; fail closed while the database is gone and recover when it
// is back; the auditor's role reads and verifies but cannot change anything; retention per
// chain; export per chain; the gateway's wiring and the knooppunt-audit CLI.
// (The storage-neutral cases run over PostgreSQL too: audit_log_test, Storage/...Postgres.)
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "gateway/audit/audit_log.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/audit/audit_wiring.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/audit/audit_test_util.h"

namespace knooppunt::audit {
namespace {

using ::testing::HasSubstr;

// PostgreSQL only: the AuditStorageTest fixture with the one parameter.
class PgAuditLogTest : public testing::AuditStorageTest {
 protected:
  // n records on chain `instance`, closed (final checkpoint).
  void Write(const std::string& instance, int n, int first = 1) {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options(instance));
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = first; i < first + n; ++i) {
      ASSERT_TRUE((*log)->Record(Rec(instance, i)).ok());
    }
    (*log)->Close();
  }
  static v1::DecisionRecord Rec(const std::string& instance, int i,
                                absl::Time t = absl::FromUnixSeconds(1767225600)) {
    v1::DecisionRecord r = testing::MakeRecord(i, t);
    r.set_instance_id(instance);
    return r;
  }
};
INSTANTIATE_TEST_SUITE_P(Storage, PgAuditLogTest, ::testing::Values(testing::Storage::kPostgres),
                         testing::StorageName);

TEST_P(PgAuditLogTest, TwoReplicasWriteConcurrentlyAndVerifyTogether) {
  std::vector<std::unique_ptr<AuditLog>> logs;
  for (const char* id : {"gw-a", "gw-b"}) {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options(id));
    ASSERT_TRUE(log.ok()) << log.status();
    logs.push_back(*std::move(log));
  }
  // Two threads per replica, both replicas at once.
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      AuditLog* log = logs[t % 2].get();
      const std::string id = t % 2 ? "gw-b" : "gw-a";
      for (int i = 0; i < 60; ++i) EXPECT_TRUE(log->Record(Rec(id, t * 100 + i)).ok());
    });
  }
  for (auto& th : threads) th.join();
  for (auto& log : logs) log->Close();

  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 240);
  ASSERT_EQ(r.chains.size(), 2u);
  EXPECT_EQ(r.chains[0].name, "gw-a");
  EXPECT_EQ(r.chains[0].records, 120);
  EXPECT_EQ(r.chains[1].name, "gw-b");
  EXPECT_EQ(r.chains[1].last_seq, 120);
  EXPECT_EQ(r.unsigned_tail, 0);

  // Query across chains: time order, then chain, then seq; paging by (time, chain, seq).
  auto reader = OpenReader();
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::vector<AuditEntry> all;
  ASSERT_TRUE((*reader)->Query({}, [&](const AuditEntry& e) {
    all.push_back(e);
    return true;
  }).ok());
  ASSERT_EQ(all.size(), 240u);
  for (size_t i = 1; i < all.size(); ++i) {
    const auto key = [](const AuditEntry& e) { return std::tie(e.time_ns, e.chain, e.seq); };
    EXPECT_LT(key(all[i - 1]), key(all[i])) << i;
  }
  std::vector<AuditEntry> paged;
  QueryFilter f;
  f.limit = 7;
  for (;;) {
    int got = 0;
    ASSERT_TRUE((*reader)->Query(f, [&](const AuditEntry& e) {
      paged.push_back(e);
      f.after_seq = e.seq;
      f.after_chain = e.chain;
      f.after_time_ns = e.time_ns;
      ++got;
      return true;
    }).ok());
    if (got < 7) break;
  }
  ASSERT_EQ(paged.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ(paged[i].chain, all[i].chain);
    EXPECT_EQ(paged[i].seq, all[i].seq);
  }
  f = {};
  f.sender = "00000099300000000014";
  int n = 0;
  ASSERT_TRUE((*reader)->Query(f, [&](const AuditEntry&) { return ++n, true; }).ok());
  EXPECT_EQ(n, 120);
}

// More records (and data-subject index entries) than one page of the reader (4096): read,
// verified, queried and exported page by page, nothing lost or repeated at page ends.
TEST_P(PgAuditLogTest, LongChainIsReadInPages) {
  constexpr int kThreads = 8, kEach = 1100;
  {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options("gw-long"));
    ASSERT_TRUE(log.ok()) << log.status();
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kEach; ++i) {
          v1::DecisionRecord r = Rec("gw-long", t * kEach + i);
          r.add_data_subjects((*log)->data_subjects().PseudonymOf(absl::StrCat(100000000 + i % 7)));
          EXPECT_TRUE((*log)->Record(r).ok());
        }
      });
    }
    for (auto& th : threads) th.join();
    (*log)->Close();
  }
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, kThreads * kEach);
  auto reader = OpenReader();
  ASSERT_TRUE(reader.ok());
  int64_t n = 0;
  std::set<int64_t> seqs;
  ASSERT_TRUE((*reader)->Query({}, [&](const AuditEntry& e) {
    ++n;
    seqs.insert(e.seq);
    return true;
  }).ok());
  EXPECT_EQ(n, kThreads * kEach);
  EXPECT_EQ(seqs.size(), static_cast<size_t>(kThreads * kEach));  // none twice
  absl::StatusOr<std::string> file = (*reader)->Export(keys_.dir + "/long", "gw-long");
  ASSERT_TRUE(file.ok()) << file.status();
  auto key = SignatureVerifier::FromPemFile(keys_.pub);
  absl::StatusOr<VerifyResult> e = VerifyExport(keys_.dir + "/long", **key);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_TRUE(e->intact) << e->problem;
  EXPECT_EQ(e->records, kThreads * kEach);
  // And a hidden subject deep in the second page is still found.
  Tamper("", "DELETE FROM audit_subjects WHERE chain = 'gw-long' AND seq = 6000");
  r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 6000) << r.problem;
}

TEST_P(PgAuditLogTest, AlteredRecordIsNamedWithItsChain) {
  Write("gw-a", 25);
  Write("gw-b", 25);
  ASSERT_TRUE(Verify().intact);
  // As the superuser: flip one byte of gw-b's record 14.
  Tamper("", "UPDATE audit_records SET record = set_byte(record, 3, get_byte(record, 3) # 1) "
             "WHERE chain = 'gw-b' AND seq = 14");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.bad_chain, "gw-b");
  EXPECT_EQ(r.first_bad_seq, 14) << r.problem;
  EXPECT_THAT(r.problem, HasSubstr("chain gw-b: record 14"));
}

TEST_P(PgAuditLogTest, DeletedRecordIsNamedWithItsChain) {
  Write("gw-a", 25);
  Write("gw-b", 25);
  Tamper("", "DELETE FROM audit_records WHERE chain = 'gw-a' AND seq = 7");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.bad_chain, "gw-a");
  EXPECT_EQ(r.first_bad_seq, 7) << r.problem;
  EXPECT_THAT(r.problem, HasSubstr("chain gw-a: record 7 is missing"));
}

TEST_P(PgAuditLogTest, RecordMovedToAnotherChainIsDetected) {
  Write("gw-a", 20);
  Write("gw-b", 20);
  // gw-b's record 21 would be gw-a's 21: a record smuggled from one chain into the other.
  Tamper("", "UPDATE audit_records SET chain = 'gw-b', seq = 21 WHERE chain = 'gw-a' AND seq = 20");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.bad_chain, "gw-a") << r.problem;  // sorted: gw-a (truncated) is reported first
}

TEST_P(PgAuditLogTest, CheckpointSignedForAnotherChainIsRejected) {
  // Two chains with the same record bytes have the same heads; a checkpoint of one copied
  // over the other's still has a valid signature and head — but names the other instance.
  for (const char* id : {"gw-a", "gw-b"}) {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options(id));
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 1; i <= 10; ++i) ASSERT_TRUE((*log)->Record(Rec("same", i)).ok());
    (*log)->Close();
  }
  ASSERT_TRUE(Verify().intact);
  Tamper("", "UPDATE audit_checkpoints b SET instance_id = a.instance_id, time_ns = a.time_ns, "
             "signature = a.signature FROM audit_checkpoints a "
             "WHERE a.chain = 'gw-a' AND b.chain = 'gw-b' AND a.seq = 10 AND b.seq = 10");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.bad_chain, "gw-b");
  EXPECT_THAT(r.problem, HasSubstr("signed for instance \"gw-a\""));
}

TEST_P(PgAuditLogTest, SameInstanceIdTwiceIsRefused) {
  absl::StatusOr<std::unique_ptr<AuditLog>> first = AuditLog::Open(Options("gw-a"));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<AuditLog>> second = AuditLog::Open(Options("gw-a"));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("same instance_id"));
  EXPECT_THAT(second.status().message(), HasSubstr("gw-a"));
  // Another instance is fine; and once the first is closed, its chain can be opened again.
  absl::StatusOr<std::unique_ptr<AuditLog>> other = AuditLog::Open(Options("gw-b"));
  EXPECT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*first)->Record(Rec("gw-a", 1)).ok());
  (*first)->Close();
  second = AuditLog::Open(Options("gw-a"));
  ASSERT_TRUE(second.ok()) << second.status();
  ASSERT_TRUE((*second)->Record(Rec("gw-a", 2)).ok());
  EXPECT_EQ((*second)->committed(), 2);  // resumed the chain
}

TEST_P(PgAuditLogTest, DatabaseLostFailsClosedThenRecoversByItself) {
  AuditLogOptions o = Options("gw-a");
  o.postgres->connect_timeout = absl::Milliseconds(500);
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  int ok = 0;
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE((*log)->Record(Rec("gw-a", i)).ok());
    ++ok;
  }
  ASSERT_TRUE(server_->Stop().ok());
  // Gone: refused (fail closed), the waited-for and the asynchronous alike.
  for (int i = 6; i <= 8; ++i) {
    absl::Status s = (*log)->Record(Rec("gw-a", i));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  }
  absl::Notification async_done;
  absl::Status async_status;
  (*log)->RecordAsync(Rec("gw-a", 9), [&](absl::Status s) {
    async_status = s;
    async_done.Notify();
  });
  async_done.WaitForNotification();
  EXPECT_EQ(async_status.code(), absl::StatusCode::kUnavailable) << async_status;

  ASSERT_TRUE(server_->Restart().ok());
  // Back: the log reconnects, re-takes its chain and continues it (polled, bounded).
  absl::Status s;
  const absl::Time until = absl::Now() + absl::Seconds(60);
  int i = 10;
  do {
    s = (*log)->Record(Rec("gw-a", i++));
    if (!s.ok()) absl::SleepFor(absl::Milliseconds(100));
  } while (!s.ok() && absl::Now() < until);
  ASSERT_TRUE(s.ok()) << s;
  ++ok;
  for (int k = 0; k < 12; ++k, ++i) {
    ASSERT_TRUE((*log)->Record(Rec("gw-a", i)).ok());
    ++ok;
  }
  (*log)->Close();
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, ok);  // nothing refused is in the log; nothing acknowledged is missing
  EXPECT_EQ(r.unsigned_tail, 0);
}

TEST_P(PgAuditLogTest, ConnectionEndedWhileIdleIsReopenedWithoutRefusingARecord) {
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options("gw-a"));
  ASSERT_TRUE(log.ok()) << log.status();
  ASSERT_TRUE((*log)->Record(Rec("gw-a", 1)).ok());
  // The server ends the log's session (as a failover or an administrator would) ...
  ASSERT_TRUE(server_->Sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE usename = 'knooppunt_writer'").ok());
  // ... and once that session (and its lock) is gone, the next record finds the broken
  // connection, reconnects, re-takes the chain and is written: not refused.
  const std::string gone =
      "DO $$BEGIN IF EXISTS (SELECT 1 FROM pg_stat_activity WHERE usename = 'knooppunt_writer') "
      "THEN RAISE EXCEPTION 'still there'; END IF; END$$";
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (!server_->Sql(gone).ok() && absl::Now() < until) absl::SleepFor(absl::Milliseconds(20));
  ASSERT_TRUE(server_->Sql(gone).ok());
  EXPECT_TRUE((*log)->Record(Rec("gw-a", 2)).ok());
  ASSERT_TRUE((*log)->Record(Rec("gw-a", 3)).ok());
  (*log)->Close();
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 3);
}

TEST_P(PgAuditLogTest, AuditorRoleReadsAndVerifiesButCannotWrite) {
  Write("gw-a", 12);
  auto reader = OpenReader("knooppunt_auditor");
  ASSERT_TRUE(reader.ok()) << reader.status();
  auto key = SignatureVerifier::FromPemFile(keys_.pub);
  ASSERT_TRUE(key.ok());
  absl::StatusOr<VerifyResult> r = (*reader)->Verify(**key);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->intact) << r->problem;
  EXPECT_EQ(r->records, 12);
  int n = 0;
  ASSERT_TRUE((*reader)->Query({}, [&](const AuditEntry&) { return ++n, true; }).ok());
  EXPECT_EQ(n, 12);

  auto conn = pg::Connection::Open(Connect("knooppunt_auditor"));
  ASSERT_TRUE(conn.ok()) << conn.status();
  for (const char* sql :
       {"UPDATE audit_records SET sender = 'x' WHERE seq = 3",
        "DELETE FROM audit_records WHERE seq = 3",
        "INSERT INTO audit_records SELECT * FROM audit_records WHERE seq = 3",
        "DELETE FROM audit_checkpoints", "DELETE FROM audit_subjects",
        "UPDATE audit_checkpoints SET time_ns = 1"}) {
    auto res = (*conn)->Exec(sql);
    ASSERT_FALSE(res.ok()) << sql;
    EXPECT_THAT(std::string(res.status().message()), HasSubstr("permission denied")) << sql;
  }
  // And the auditor's role cannot be a writer.
  AuditLogOptions o = Options("gw-x");
  o.postgres = Connect("knooppunt_auditor");
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  if (log.ok()) {
    EXPECT_EQ((*log)->Record(Rec("gw-x", 1)).code(), absl::StatusCode::kUnavailable);
  }
  ASSERT_TRUE(Verify().intact);
}

TEST_P(PgAuditLogTest, RetentionDeletesOnlyItsOwnChainsPrefix) {
  const absl::Time old = absl::Now() - absl::Hours(48);
  for (const char* id : {"gw-a", "gw-b"}) {
    AuditLogOptions o = Options(id);
    if (std::string(id) == "gw-a") o.retention = absl::Hours(24);
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 1; i <= 25; ++i) ASSERT_TRUE((*log)->Record(Rec(id, i, old)).ok());
    for (int i = 26; i <= 30; ++i) ASSERT_TRUE((*log)->Record(Rec(id, i, absl::Now())).ok());
    if (o.retention > absl::ZeroDuration()) {
      absl::StatusOr<int64_t> deleted = (*log)->ApplyRetention(absl::Now());
      ASSERT_TRUE(deleted.ok()) << deleted.status();
    }
    (*log)->Close();
  }
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  ASSERT_EQ(r.chains.size(), 2u);
  EXPECT_EQ(r.chains[0].first_seq, 21);  // gw-a: up to its checkpoint at 20
  EXPECT_EQ(r.chains[0].records, 10);
  EXPECT_EQ(r.chains[1].first_seq, 1);   // gw-b: untouched
  EXPECT_EQ(r.chains[1].records, 30);
}

TEST_P(PgAuditLogTest, ExportPerChainVerifiesOffline) {
  Write("gw-a", 15);
  Write("gw-b", 8);
  auto reader = OpenReader("knooppunt_auditor");
  ASSERT_TRUE(reader.ok()) << reader.status();
  EXPECT_EQ((*reader)->Export(keys_.dir + "/x").status().code(),
            absl::StatusCode::kInvalidArgument);  // several chains: name one
  auto chains = (*reader)->Chains();
  ASSERT_TRUE(chains.ok());
  ASSERT_EQ(*chains, (std::vector<std::string>{"gw-a", "gw-b"}));
  auto key = SignatureVerifier::FromPemFile(keys_.pub);
  for (const std::string& c : *chains) {
    const std::string dir = keys_.dir + "/export/" + ChainDirectory(c);
    absl::StatusOr<std::string> file = (*reader)->Export(dir, c);
    ASSERT_TRUE(file.ok()) << file.status();
    EXPECT_FALSE(file->empty());
  }
  Write("gw-a", 5, 16);  // more later: the next export continues the chain in a new file
  reader = OpenReader("knooppunt_auditor");
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<std::string> next = (*reader)->Export(keys_.dir + "/export/gw-a", "gw-a");
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_THAT(*next, HasSubstr("audit-000000000016.log"));
  absl::StatusOr<VerifyResult> a = VerifyExport(keys_.dir + "/export/gw-a", **key);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_TRUE(a->intact) << a->problem;
  EXPECT_EQ(a->records, 20);
  absl::StatusOr<VerifyResult> b = VerifyExport(keys_.dir + "/export/gw-b", **key);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_TRUE(b->intact) << b->problem;
  EXPECT_EQ(b->records, 8);
  EXPECT_EQ(ChainDirectory("../x"), "x2e2e2f78");
}

// The gateway's wiring: audit.postgres opens this log (password from its file), and the
// Auditor service's reader role is audit.postgres_reader.
TEST_P(PgAuditLogTest, WiringOpensThePostgresLogFromConfig) {
  config::v1::GatewayConfig cfg;
  cfg.set_instance_id("gw-wired");
  auto* a = cfg.mutable_audit();
  a->set_hmac_key_file(keys_.hmac);
  a->set_signing_key_file(keys_.signing);
  a->set_checkpoint_every_records(10);
  a->mutable_checkpoint_every()->set_seconds(3600);
  a->mutable_postgres()->set_conninfo(server_->Conninfo("knooppunt_writer"));
  a->mutable_postgres()->set_password_file(server_->PasswordFile("knooppunt_writer"));
  a->mutable_postgres_reader()->set_conninfo(server_->Conninfo("knooppunt_auditor"));
  a->mutable_postgres_reader()->set_password_file(server_->PasswordFile("knooppunt_auditor"));
  {
    absl::StatusOr<std::unique_ptr<DecisionLog>> log = OpenDecisionLog(cfg);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 1; i <= 3; ++i) ASSERT_TRUE((*log)->Record(Rec("gw-wired", i)).ok());
    // A second gateway with the same instance_id does not start.
    absl::StatusOr<std::unique_ptr<DecisionLog>> twin = OpenDecisionLog(cfg);
    EXPECT_EQ(twin.status().code(), absl::StatusCode::kFailedPrecondition) << twin.status();
  }
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 3);
  EXPECT_EQ(r.checkpoints, 1);  // signed on close
  auto service = MakeAuditorService(cfg, nullptr, nullptr);
  EXPECT_TRUE(service.ok()) << service.status();
}

using testing::CliRun;
CliRun Cli(const std::string& args) { return testing::RunCli(KNOOPPUNT_AUDIT_BIN, args); }

TEST_P(PgAuditLogTest, CliVerifiesQueriesAndExportsAPostgresLog) {
  Write("gw-a", 12);
  Write("gw-b", 4);
  const std::string pg = absl::StrCat("--postgres='", server_->Conninfo("knooppunt_auditor"),
                                      "' --password_file=", server_->PasswordFile("knooppunt_auditor"));
  CliRun r = Cli(absl::StrCat("verify ", pg, " --public_key=", keys_.pub));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("INTACT: 2 chains, 16 records"));
  EXPECT_THAT(r.out, HasSubstr("chain gw-b: 4 records"));

  r = Cli(absl::StrCat("query ", pg, " --sender=00000099300000000014 --format=csv"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("gw-a/1,"));
  EXPECT_THAT(r.out, HasSubstr("gw-b/3,"));

  const std::string out = keys_.dir + "/cli-export";
  r = Cli(absl::StrCat("export ", pg, " --out=", out));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = Cli(absl::StrCat("verify --export_dir=", out, " --public_key=", keys_.pub));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("INTACT: 2 chains, 16 records"));

  Tamper("", "DELETE FROM audit_records WHERE chain = 'gw-b' AND seq = 2");
  r = Cli(absl::StrCat("verify ", pg, " --public_key=", keys_.pub));
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("NOT INTACT: chain gw-b, first bad record 2"));
}

}  // namespace
}  // namespace knooppunt::audit
