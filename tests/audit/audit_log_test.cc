// The audit log: chain, checkpoints, every kind of tampering detected with the first bad
// record named, retention, export across files, query by BSN, and fail closed.
#include "gateway/audit/audit_log.h"

#include <sys/mount.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/audit/data_subjects.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "gemeente/zaken/v1/zaken.pb.h"
#include "gtest/gtest.h"
#include "tests/testing/small_filesystem.h"
#include "tests/audit/audit_test_util.h"

namespace knooppunt::audit {
namespace {

using testing::MakeRecord;
using testing::ScratchKeys;

// Every case runs over both storages (SQLite file, PostgreSQL server): Storage/AuditLogTest.X/Sqlite
// and .../Postgres.
class AuditLogTest : public testing::AuditStorageTest {
 protected:
  // Writes n records (checkpoint every 10) and closes the log (final checkpoint).
  void Write(int n, AuditLogOptions options) {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(options);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 1; i <= n; ++i) ASSERT_TRUE((*log)->Record(MakeRecord(i)).ok());
    (*log)->Close();
  }
  void Write(int n) { Write(n, Options()); }
};
INSTANTIATE_TEST_SUITE_P(Storage, AuditLogTest,
                         ::testing::Values(testing::Storage::kSqlite, testing::Storage::kPostgres),
                         testing::StorageName);

TEST_P(AuditLogTest, IntactLogVerifies) {
  Write(35);
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 35);
  EXPECT_EQ(r.checkpoints, 4);  // 10, 20, 30 and the final one at 35 on close
  EXPECT_EQ(r.unsigned_tail, 0);
}

TEST_P(AuditLogTest, ChainResumesAfterReopen) {
  Write(5);
  Write(7);
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 12);
}

TEST_P(AuditLogTest, TimedCheckpointSignsAnIdleTail) {
  AuditLogOptions o = Options();
  o.checkpoint_every = absl::Milliseconds(100);
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  ASSERT_TRUE(log.ok());
  for (int i = 1; i <= 3; ++i) ASSERT_TRUE((*log)->Record(MakeRecord(i)).ok());
  // No more records arrive; the writer signs on its own (polled, bounded: load-tolerant).
  VerifyResult r;
  for (int i = 0; i < 300; ++i) {
    r = Verify();
    if (r.checkpoints > 0) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.checkpoints, 1);
  EXPECT_EQ(r.unsigned_tail, 0);
  (*log)->Close();
}

// Records nobody waits for (outcomes, denials, deliveries) do not start a commit of their own:
// they go with the next record somebody waits for — so a waited-for decision never queues
// behind a commit of best-effort records — and, when none comes, after lazy_commit_delay.
TEST_P(AuditLogTest, BestEffortRecordsRideWithTheNextWaitedForRecord) {
  AuditLogOptions o = Options();
  o.lazy_commit_delay = absl::Seconds(30);  // far beyond this test's waits
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  for (int i = 1; i <= 3; ++i) (*log)->RecordAsync(MakeRecord(i), nullptr);
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ((*log)->committed(), 0) << "best-effort records committed on their own";
  ASSERT_TRUE((*log)->Record(MakeRecord(4)).ok());  // somebody waits: one commit for all four
  EXPECT_EQ((*log)->committed(), 4);
  (*log)->Close();
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 4);

  // Alone, they are committed after the delay.
  o.lazy_commit_delay = absl::Milliseconds(50);
  log = AuditLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  (*log)->RecordAsync(MakeRecord(5), nullptr);
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while ((*log)->committed() < 5 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  EXPECT_EQ((*log)->committed(), 5);
}

TEST_P(AuditLogTest, SigningKeyRotationVerifiesWithBothPublicKeys) {
  Write(12);
  ScratchKeys next;
  AuditLogOptions o = Options();
  o.signing_key_file = next.signing;  // rotated key, same chain
  Write(12, o);
  auto old_key = SignatureVerifier::FromPemFile(keys_.pub);
  auto new_key = SignatureVerifier::FromPemFile(next.pub);
  auto reader = OpenReader();
  ASSERT_TRUE(reader.ok());
  absl::StatusOr<VerifyResult> both = (*reader)->Verify({old_key->get(), new_key->get()});
  ASSERT_TRUE(both.ok());
  EXPECT_TRUE(both->intact) << both->problem;
  EXPECT_EQ(both->records, 24);
  absl::StatusOr<VerifyResult> only_new = (*reader)->Verify(**new_key);
  ASSERT_TRUE(only_new.ok());
  EXPECT_FALSE(only_new->intact);
  EXPECT_EQ(only_new->first_bad_seq, 10) << only_new->problem;  // first checkpoint by the old key
}

TEST_P(AuditLogTest, AlteredRecordIsNamed) {
  Write(30);
  // Flip the purpose inside record 17's bytes.
  Tamper("UPDATE records SET record = CAST(replace(CAST(record AS TEXT), 'BRP-bevraging', "
         "'BRP-bevragin9') AS BLOB) WHERE seq = 17",
         "UPDATE audit_records SET record = set_byte(record, position('BRP-bevraging'::bytea IN "
         "record) + 11, 57) WHERE seq = 17");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 17) << r.problem;
}

TEST_P(AuditLogTest, AlteredIndexedColumnIsNamed) {
  Write(30);
  Tamper("UPDATE records SET sender = '00000099300000000363' WHERE seq = 12");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 12) << r.problem;
}

TEST_P(AuditLogTest, DeletedRecordIsNamed) {
  Write(30);
  Tamper("DELETE FROM records WHERE seq = 8");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 8) << r.problem;
}

TEST_P(AuditLogTest, InsertedRecordIsNamed) {
  Write(30);
  // Make room at 15 and insert a copy of record 3 there.
  Tamper("UPDATE records SET seq = -seq WHERE seq >= 15; UPDATE records SET seq = -seq + 1 WHERE seq < 0; "
         "INSERT INTO records SELECT 15, time_ns, sender, recipient, authenticated_oin, message_type, "
         "agreement_id, decision, trace_id, record, hash FROM records WHERE seq = 3",
         "UPDATE audit_records SET seq = -seq WHERE seq >= 15; "
         "UPDATE audit_records SET seq = -seq + 1 WHERE seq < 0; "
         "INSERT INTO audit_records SELECT chain, 15, time_ns, sender, recipient, "
         "authenticated_oin, message_type, agreement_id, decision, trace_id, record, hash "
         "FROM audit_records WHERE seq = 3");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 15) << r.problem;
}

TEST_P(AuditLogTest, ReorderedRecordsAreNamed) {
  Write(30);
  Tamper(
      "CREATE TEMP TABLE t AS SELECT * FROM records WHERE seq IN (21, 22);"
      "UPDATE records SET record = (SELECT record FROM t WHERE seq = 22), "
      "  hash = (SELECT hash FROM t WHERE seq = 22), sender = (SELECT sender FROM t WHERE seq = 22),"
      "  time_ns = (SELECT time_ns FROM t WHERE seq = 22), trace_id = (SELECT trace_id FROM t WHERE seq = 22),"
      "  authenticated_oin = (SELECT authenticated_oin FROM t WHERE seq = 22),"
      "  agreement_id = (SELECT agreement_id FROM t WHERE seq = 22), decision = (SELECT decision FROM t WHERE seq = 22)"
      "  WHERE seq = 21;"
      "UPDATE records SET record = (SELECT record FROM t WHERE seq = 21), "
      "  hash = (SELECT hash FROM t WHERE seq = 21) WHERE seq = 22;");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 21) << r.problem;
}

TEST_P(AuditLogTest, TruncationIsDetected) {
  Write(30);
  Tamper("DELETE FROM records WHERE seq > 24");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 25) << r.problem;
}

TEST_P(AuditLogTest, ForgedCheckpointIsDetected) {
  Write(30);
  // A checkpoint moved to cover fewer records (to hide a truncation): the signature no
  // longer matches.
  Tamper("DELETE FROM records WHERE seq > 20; DELETE FROM checkpoints WHERE seq = 30;"
                "UPDATE checkpoints SET time_ns = time_ns + 1 WHERE seq = 20");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 20) << r.problem;
}

TEST_P(AuditLogTest, CheckpointSignedByAnotherKeyIsRejected) {
  Write(30);
  ScratchKeys other;
  absl::StatusOr<std::unique_ptr<Signer>> forger = Signer::FromPemFile(other.signing);
  ASSERT_TRUE(forger.ok());
  // The attacker rewrites record 25 and the whole chain after it, and signs a new checkpoint
  // with a key of their own.
  Checkpoint c;
  c.seq = 30;
  c.head = std::string(32, 'x');
  c.time_ns = 1;
  c.instance_id = "test-1";
  c.key_id = (*forger)->key_id();
  c.signature = *(*forger)->Sign(CheckpointMessage(c));
  Tamper(absl::StrCat("UPDATE checkpoints SET head = x'", ToHex(c.head), "', time_ns = 1, key_id = '",
                             c.key_id, "', signature = x'", ToHex(c.signature), "' WHERE seq = 30"));
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 30) << r.problem;
}

TEST_P(AuditLogTest, RewrittenChainIsCaughtByCheckpoint) {
  Write(30);
  // Alter record 14 and recompute every hash from there: only the signed checkpoint at 20
  // can tell.
  absl::StatusOr<std::unique_ptr<AuditReader>> reader = OpenReader();
  ASSERT_TRUE(reader.ok());
  std::vector<AuditEntry> all;
  ASSERT_TRUE((*reader)->Query({}, [&](const AuditEntry& e) { all.push_back(e); return true; }).ok());
  reader->reset();
  std::string head = all[12].hash;  // hash of record 13
  std::string sql;
  for (size_t i = 13; i < all.size(); ++i) {
    v1::DecisionRecord rec = all[i].record;
    if (i == 13) rec.set_decision(v1::DECISION_ALLOWED), rec.set_agreement_id("brp-bevragen-afnemers");
    std::string bytes;
    rec.SerializeToString(&bytes);
    head = ChainHash(head, all[i].seq, bytes);
    absl::StrAppend(&sql, "UPDATE records SET record = x'", ToHex(bytes), "', hash = x'", ToHex(head),
                    "', decision = ", static_cast<int>(rec.decision()), ", agreement_id = '",
                    rec.agreement_id(), "' WHERE seq = ", all[i].seq, ";");
  }
  Tamper(sql);
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 11) << r.problem;  // records 11..20 are suspect
}

TEST_P(AuditLogTest, DeletedPrefixWithoutCheckpointIsDetected) {
  Write(30);
  Tamper("DELETE FROM records WHERE seq <= 5");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 1) << r.problem;
}

TEST_P(AuditLogTest, RetentionKeepsTheRestVerifiable) {
  AuditLogOptions o = Options();
  o.retention = absl::Hours(24);
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  ASSERT_TRUE(log.ok());
  const absl::Time old = absl::Now() - absl::Hours(48);
  for (int i = 1; i <= 25; ++i) ASSERT_TRUE((*log)->Record(MakeRecord(i, old)).ok());
  for (int i = 26; i <= 30; ++i) ASSERT_TRUE((*log)->Record(MakeRecord(i, absl::Now())).ok());
  absl::StatusOr<int64_t> deleted = (*log)->ApplyRetention(absl::Now());
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  // Up to the newest checkpoint (20) among the old records (the writer may have pruned part
  // of it already on its own schedule).
  EXPECT_GT(*deleted, 0);
  (*log)->Close();
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.first_seq, 21);
  EXPECT_EQ(r.records, 10);
}

TEST_P(AuditLogTest, HiddenDataSubjectIsDetected) {
  AuditLogOptions o = Options();
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  ASSERT_TRUE(log.ok());
  for (int i = 1; i <= 12; ++i) {
    v1::DecisionRecord r = MakeRecord(i);
    r.add_data_subjects((*log)->data_subjects().PseudonymOf(absl::StrCat("99999365", i % 10)));
    ASSERT_TRUE((*log)->Record(r).ok());
  }
  (*log)->Close();
  Tamper("DELETE FROM subjects WHERE seq = 7");
  VerifyResult r = Verify();
  EXPECT_FALSE(r.intact);
  EXPECT_EQ(r.first_bad_seq, 7) << r.problem;
}

TEST_P(AuditLogTest, QueryByBsnFindsOnlyThatCitizen) {
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options());
  ASSERT_TRUE(log.ok());
  const google::protobuf::Descriptor* type = gemeente::brp::v1::PersoonVraag::descriptor();
  for (int i = 1; i <= 6; ++i) {
    gemeente::brp::v1::PersoonVraag q;
    q.set_bsn(i % 3 == 0 ? "999993653" : "111222333");
    v1::DecisionRecord r = MakeRecord(i);
    (*log)->AddDataSubjects(type, q.SerializeAsString(), &r);
    ASSERT_EQ(r.data_subjects_size(), 1);
    ASSERT_TRUE((*log)->Record(r).ok());
  }
  const std::string pseudonym = (*log)->data_subjects().PseudonymOf("999993653");
  (*log)->Close();

  // The database never holds the BSN in clear.
  if (!pg()) {
    std::ifstream in(keys_.db, std::ios::binary);
    std::stringstream all;
    all << in.rdbuf();
    EXPECT_EQ(all.str().find("999993653"), std::string::npos);
  }

  absl::StatusOr<std::unique_ptr<AuditReader>> reader = OpenReader();
  ASSERT_TRUE(reader.ok());
  QueryFilter f;
  f.data_subject = pseudonym;
  std::vector<int64_t> seqs;
  ASSERT_TRUE((*reader)->Query(f, [&](const AuditEntry& e) { seqs.push_back(e.seq); return true; }).ok());
  EXPECT_EQ(seqs, (std::vector<int64_t>{3, 6}));

  f.decision = v1::DECISION_DENIED;  // record 6 (even) is a denial
  seqs.clear();
  ASSERT_TRUE((*reader)->Query(f, [&](const AuditEntry& e) { seqs.push_back(e.seq); return true; }).ok());
  EXPECT_EQ(seqs, (std::vector<int64_t>{6}));
}

TEST_P(AuditLogTest, QueryFilters) {
  Write(20);
  absl::StatusOr<std::unique_ptr<AuditReader>> reader = OpenReader();
  ASSERT_TRUE(reader.ok());
  auto count = [&](const QueryFilter& f) {
    int n = 0;
    EXPECT_TRUE((*reader)->Query(f, [&](const AuditEntry&) { ++n; return true; }).ok());
    return n;
  };
  QueryFilter f;
  EXPECT_EQ(count(f), 20);
  f.sender = "00000099300000000014";
  EXPECT_EQ(count(f), 10);
  f = {};
  f.agreement_id = "brp-bevragen-afnemers";
  EXPECT_EQ(count(f), 10);
  f = {};
  f.trace_id = "trace7";
  EXPECT_EQ(count(f), 1);
  f = {};
  f.from = absl::FromUnixSeconds(1767225600 + 5);
  f.until = absl::FromUnixSeconds(1767225600 + 10);
  EXPECT_EQ(count(f), 5);
  f = {};
  f.party_oin = "00000099300000000479";
  EXPECT_EQ(count(f), 10);
  f.limit = 3;
  EXPECT_EQ(count(f), 3);
}

TEST_P(AuditLogTest, ExportKeepsTheChainAcrossFilesAndVerifiesOffline) {
  const std::string out = keys_.dir + "/export";
  Write(15);
  {
    auto reader = OpenReader();
    ASSERT_TRUE(reader.ok());
    absl::StatusOr<std::string> f1 = (*reader)->Export(out);
    ASSERT_TRUE(f1.ok()) << f1.status();
    EXPECT_FALSE(f1->empty());
  }
  Write(12);
  {
    auto reader = OpenReader();
    absl::StatusOr<std::string> f2 = (*reader)->Export(out);
    ASSERT_TRUE(f2.ok()) << f2.status();
    EXPECT_NE(f2->find("audit-000000000016.log"), std::string::npos) << *f2;
  }
  auto key = SignatureVerifier::FromPemFile(keys_.pub);
  absl::StatusOr<VerifyResult> r = VerifyExport(out, **key);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->intact) << r->problem;
  EXPECT_EQ(r->records, 27);

  // Drop a record line from the second file: named.
  const std::string second = out + "/audit-000000000016.log";
  std::ifstream in(second);
  std::string text, line;
  while (std::getline(in, line)) {
    if (!absl::StartsWith(line, "R\t18\t")) absl::StrAppend(&text, line, "\n");
  }
  in.close();
  std::ofstream(second, std::ios::trunc) << text;
  r = VerifyExport(out, **key);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->intact);
  EXPECT_EQ(r->first_bad_seq, 18) << r->problem;
}

TEST(DataSubjectsTest, FindsNestedBsnsAndSkipsTypesWithout) {
  DataSubjects subjects(std::string(32, 'k'));
  gemeente::verhuizen::v1::Verhuismelding m;
  m.set_bsn("999993653");
  m.add_meeverhuizenden()->set_bsn("111222333");
  m.add_meeverhuizenden()->set_bsn("999993653");
  std::vector<std::string> p =
      subjects.Of(m.GetDescriptor(), m.SerializeAsString());
  ASSERT_EQ(p.size(), 2u);  // distinct
  EXPECT_NE(std::find(p.begin(), p.end(), subjects.PseudonymOf("999993653")), p.end());
  EXPECT_NE(std::find(p.begin(), p.end(), subjects.PseudonymOf("111222333")), p.end());
  EXPECT_EQ(p[0].size(), 64u);
  EXPECT_FALSE(subjects.HasBsnFields(gemeente::zaken::v1::ZaakStatusWijziging::descriptor()));
  // Another key, another pseudonym: without the key a pseudonym cannot be linked to a BSN.
  DataSubjects other(std::string(32, 'z'));
  EXPECT_NE(other.PseudonymOf("999993653"), subjects.PseudonymOf("999993653"));
}

// ---- fail closed ----

TEST_P(AuditLogTest, FullDatabaseRefusesRecords) {
  // A size-limited database (max_db_bytes → SQLite max_page_count): when it is full, SQLite
  // fails the commit with SQLITE_FULL, exactly as on a full disk.
  AuditLogOptions o = Options();
  // PostgreSQL: the audit tables' size (empty, with their indexes, already some 50 KB),
  // checked once a second.
  o.max_db_bytes = pg() ? 256 * 1024 : 64 * 1024;
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  ASSERT_TRUE(log.ok()) << log.status();
  int written = 0;
  absl::Status s;
  for (int i = 1; i <= 5000 && s.ok(); ++i) {
    v1::DecisionRecord r = MakeRecord(i);
    r.set_reason(std::string(200, 'r'));
    s = (*log)->Record(r);
    if (s.ok()) ++written;
  }
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_GT(written, 10);
  // Still refused, and what was acknowledged is intact.
  v1::DecisionRecord again = MakeRecord(1);
  again.set_reason(std::string(200, 'r'));
  EXPECT_FALSE((*log)->Record(again).ok());
  EXPECT_EQ((*log)->committed(), written);
  (*log)->Close();
  VerifyResult r = Verify();
  EXPECT_EQ(r.records, written);
  EXPECT_EQ(r.first_bad_seq, 0) << r.problem;
}

TEST_P(AuditLogTest, ReadOnlyDatabaseRefusesRecordsAndRecovers) {
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options());
  ASSERT_TRUE(log.ok());
  ASSERT_TRUE((*log)->Record(MakeRecord(1)).ok());
  (*log)->SetReadOnlyForTest(true);
  absl::Status s = (*log)->Record(MakeRecord(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  (*log)->SetReadOnlyForTest(false);
  EXPECT_TRUE((*log)->Record(MakeRecord(3)).ok());
  (*log)->Close();
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 2);
}

TEST_P(AuditLogTest, GroupCommitUnderConcurrency) {
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(Options());
  ASSERT_TRUE(log.ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) EXPECT_TRUE((*log)->Record(MakeRecord(t * 100 + i)).ok());
    });
  }
  for (auto& th : threads) th.join();
  (*log)->Close();
  VerifyResult r = Verify();
  EXPECT_TRUE(r.intact) << r.problem;
  EXPECT_EQ(r.records, 400);
}

// A real small file system (loop-mounted ext4 image), when this machine allows mounting: the
// disk fills up, and then is remounted read-only under the running log.
TEST_P(AuditLogTest, RealSmallFileSystemFullThenReadOnly) {
  if (pg()) GTEST_SKIP() << "a file system filling up is SQLite's case";
  auto fs = knooppunt::testing::SmallFileSystem::Mount(keys_.dir, 4);
  if (fs == nullptr) GTEST_SKIP() << "cannot loop-mount here (not root or no loop device)";
  const std::string mnt = fs->path();
  AuditLogOptions o = Options();
  o.db_path = mnt + "/audit.db";
  {
    absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
    ASSERT_TRUE(log.ok()) << log.status();
    absl::Status s;
    int written = 0;
    for (int i = 1; i <= 200000 && s.ok(); ++i) {
      v1::DecisionRecord r = MakeRecord(i);
      r.set_reason(std::string(8000, 'r'));
      s = (*log)->Record(r);
      if (s.ok()) ++written;
    }
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    EXPECT_GT(written, 10);
  }
  // Read-only: the file system is remounted read-only (as ext4 does on errors=remount-ro);
  // the log either refuses to open or refuses every record.
  ASSERT_TRUE(fs->RemountReadOnly());
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(o);
  if (log.ok()) {
    absl::Status s = (*log)->Record(MakeRecord(2));
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    (*log)->Close();
  }
}

}  // namespace
}  // namespace knooppunt::audit
