// PgMessageStore against a real PostgreSQL started for this test binary
// (tests/testing/postgres_server.h): the MessageStore contract shared with the SQLite store,
// then what replicas sharing one database add — duplicates across replicas, one owner per
// conversation, takeover of a replica whose lease lapsed (by exactly one other), and failing
// closed while the database is away, recovering without reopening.
#include "gateway/store/pg_message_store.h"

#include <algorithm>
#include <cstdio>
#include <future>
#include <atomic>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "tests/store/message_store_contract.h"
#include "tests/testing/postgres_server.h"

namespace knooppunt::store {
namespace {

using contract::AppendSync;
using contract::DoneSync;
using contract::FindSync;
using contract::kId1;
using contract::kId2;
using contract::kSender;
using contract::Record;
using ::knooppunt::testing::PostgresServer;

// One server for the whole binary; every test starts from an empty schema.
PostgresServer* g_server = nullptr;

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    absl::StatusOr<PostgresServer*> shared = ::knooppunt::testing::SharedPostgresServer();
    if (absl::IsFailedPrecondition(shared.status())) return;  // no server binaries: skip
    ASSERT_TRUE(shared.ok()) << shared.status();
    g_server = *shared;
  }
};
[[maybe_unused]] ::testing::Environment* const kEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

constexpr char kSkip[] = "no PostgreSQL server binaries (postgresql-15)";

absl::Status ResetSchema() {
  if (g_server != nullptr && !g_server->running()) {
    if (absl::Status s = g_server->Restart(); !s.ok()) return s;
  }
  return g_server->Sql(
      "SET client_min_messages = warning; "
      "DROP TABLE IF EXISTS meldingen, meldingen_replicas, knooppunt_schema_migrations");
}

PgStoreOptions Options(const std::string& instance_id,
                       const contract::StoreLimits& limits = {}) {
  PgStoreOptions o;
  o.connect.conninfo = g_server->Conninfo();
  auto pw = pg::ReadPasswordFile(g_server->PasswordFile());
  EXPECT_TRUE(pw.ok()) << pw.status();
  o.connect.password = pw.value_or("");
  o.connect.connect_timeout = absl::Seconds(1);
  o.connect.application_name = absl::StrCat(instance_id, "/meldingen-test");
  o.instance_id = instance_id;
  o.max_pending_messages = limits.max_pending_messages;
  o.max_pending_bytes = limits.max_pending_bytes;
  o.retain_final = limits.retain_final;
  o.purge_every = limits.purge_every;
  return o;
}

// The MessageStore contract (message_store_contract.h): one replica, "replica-a".
struct PgBackend {
  using Store = PgMessageStore;
  static constexpr const char* kName = "Postgres";
  PgBackend() {
    if (g_server != nullptr) {
      absl::Status reset = ResetSchema();
      EXPECT_TRUE(reset.ok()) << reset;
    }
  }
  absl::StatusOr<std::unique_ptr<Store>> Open(const contract::StoreLimits& limits) {
    return PgMessageStore::Open(Options("replica-a", limits));
  }
  std::string SkipReason() { return g_server == nullptr ? kSkip : ""; }
};

}  // namespace
// (gtest names the suite unqualified: instantiated in its namespace.)
namespace contract {
INSTANTIATE_TYPED_TEST_SUITE_P(Postgres, MessageStoreContract, ::testing::Types<PgBackend>,
                               BackendName);
}  // namespace contract
namespace {

class PgMessageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (g_server == nullptr) GTEST_SKIP() << kSkip;
    ASSERT_TRUE(ResetSchema().ok());
  }
  std::unique_ptr<PgMessageStore> Replica(const std::string& id,
                                          absl::Duration lease = absl::Seconds(30)) {
    PgStoreOptions o = Options(id);
    o.lease = lease;
    auto s = PgMessageStore::Open(o);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  // The test's own view of the table (as the gateway's role).
  std::unique_ptr<pg::Connection> Connect() {
    auto c = pg::Connection::Open(Options("test").connect);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }
  std::map<int64_t, std::string> Owners() {
    std::map<int64_t, std::string> out;
    auto c = Connect();
    if (c == nullptr) return out;
    auto r = c->Exec("SELECT seq, owner FROM meldingen WHERE state = 1");
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return out;
    for (int i = 0; i < r->rows(); ++i) out[r->Int(i, 0)] = std::string(r->Text(i, 1));
    return out;
  }
};

std::set<int64_t> Seqs(const std::vector<MessageRecord>& records) {
  std::set<int64_t> out;
  for (const MessageRecord& r : records) out.insert(r.seq);
  return out;
}

std::string Id(int i) { return absl::StrFormat("00000000-0000-4000-8000-%012d", i); }

TEST_F(PgMessageStoreTest, DuplicatesAcrossReplicasAreStoredOnce) {
  auto a = Replica("replica-a");
  auto b = Replica("replica-b");
  ASSERT_TRUE(a && b);
  auto first = AppendSync(*a, Record(kId1));
  ASSERT_TRUE(first.ok()) << first.status();
  auto again = AppendSync(*b, Record(kId1));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->record.seq, first->record.seq);
  EXPECT_TRUE(absl::IsAlreadyExists(AppendSync(*b, Record(kId1, "other")).status()));

  // Both replicas append the same ids at once: each is stored once, and every Append of it
  // answers either "new" (exactly one) or "duplicate" of that one.
  constexpr int kIds = 100;
  std::vector<absl::StatusOr<AppendResult>> from_a(kIds), from_b(kIds);
  std::thread ta([&] {
    for (int i = 0; i < kIds; ++i) from_a[i] = AppendSync(*a, Record(Id(i), Id(i)));
  });
  std::thread tb([&] {
    for (int i = kIds - 1; i >= 0; --i) from_b[i] = AppendSync(*b, Record(Id(i), Id(i)));
  });
  ta.join();
  tb.join();
  for (int i = 0; i < kIds; ++i) {
    ASSERT_TRUE(from_a[i].ok()) << from_a[i].status();
    ASSERT_TRUE(from_b[i].ok()) << from_b[i].status();
    EXPECT_NE(from_a[i]->duplicate, from_b[i]->duplicate) << Id(i);
    EXPECT_EQ(from_a[i]->record.seq, from_b[i]->record.seq) << Id(i);
  }
  EXPECT_EQ(Owners().size(), static_cast<size_t>(kIds + 1));
}

// A conversation (sender, recipient, correlation_id) is delivered by one replica: a new
// message of it goes to the replica owning its pending ones, which learns of it at its next
// claim; with none pending, the appending replica owns it.
TEST_F(PgMessageStoreTest, AConversationStaysWithItsOwner) {
  auto a = Replica("replica-a");
  auto b = Replica("replica-b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->ClaimWork().ok());  // the first claims (at start): nothing yet
  ASSERT_TRUE(b->ClaimWork().ok());
  auto first = AppendSync(*a, Record(kId1, "1", "zaak-1"));
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(first->owned);
  auto second = AppendSync(*b, Record(kId2, "2", "zaak-1"));
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->owned) << "replica-a delivers zaak-1";
  auto other = AppendSync(*b, Record(contract::kId3, "3", "zaak-2"));
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE(other->owned);
  // replica-a's own next message of zaak-1 must follow the one replica-b gave it, which it
  // has not been handed yet: it comes with its next claim too, after it.
  auto third = AppendSync(*a, Record("55555555-5555-4555-8555-555555555555", "5", "zaak-1"));
  ASSERT_TRUE(third.ok());
  EXPECT_FALSE(third->owned);

  auto claimed_b = b->ClaimWork();
  ASSERT_TRUE(claimed_b.ok());
  EXPECT_TRUE(claimed_b->empty());
  auto claimed_a = a->ClaimWork();
  ASSERT_TRUE(claimed_a.ok());
  ASSERT_EQ(claimed_a->size(), 2u);
  EXPECT_EQ((*claimed_a)[0].seq, second->record.seq);
  EXPECT_EQ((*claimed_a)[0].envelope, "envelope-2");
  EXPECT_EQ((*claimed_a)[1].seq, third->record.seq);
  // Handed over now: the next one of zaak-1 that replica-a accepts it delivers directly.
  auto fourth = AppendSync(*a, Record("66666666-6666-4666-8666-666666666666", "6", "zaak-1"));
  ASSERT_TRUE(fourth.ok());
  EXPECT_TRUE(fourth->owned);
  auto again = a->ClaimWork();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  std::map<int64_t, std::string> owners = Owners();
  EXPECT_EQ(owners[first->record.seq], "replica-a");
  EXPECT_EQ(owners[second->record.seq], "replica-a");
  EXPECT_EQ(owners[other->record.seq], "replica-b");
  EXPECT_EQ(owners[third->record.seq], "replica-a");

  // Once zaak-1 has nothing pending, it is free: the next one stays where it is appended.
  for (int64_t seq :
       {first->record.seq, second->record.seq, third->record.seq, fourth->record.seq}) {
    ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                  a->MarkDelivered(seq, absl::Now(), 1, std::move(d));
                }).ok());
  }
  auto fresh = AppendSync(*b, Record("44444444-4444-4444-8444-444444444444", "4", "zaak-1"));
  ASSERT_TRUE(fresh.ok());
  EXPECT_TRUE(fresh->owned);
}

// Both replicas append to one conversation at the same time: it still ends up with one owner
// (the Appends of one conversation are serialised across replicas).
TEST_F(PgMessageStoreTest, ConcurrentAppendsToOneConversationHaveOneOwner) {
  auto a = Replica("replica-a");
  auto b = Replica("replica-b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->ClaimWork().ok());  // the first claims (at start): nothing yet
  ASSERT_TRUE(b->ClaimWork().ok());
  constexpr int kEach = 60;
  absl::Mutex mu;
  std::set<int64_t> not_handed;  // Appends answered owned = false
  auto run = [&](PgMessageStore* s, int base) {
    for (int i = 0; i < kEach; ++i) {
      // Several conversations, so batches hold more than one order key.
      auto r = AppendSync(*s, Record(Id(base + i), Id(base + i), absl::StrCat("zaak-", i % 3)));
      ASSERT_TRUE(r.ok()) << r.status();
      if (!r->owned) {
        absl::MutexLock lock(&mu);
        not_handed.insert(r->record.seq);
      }
    }
  };
  std::thread ta(run, a.get(), 0);
  std::thread tb(run, b.get(), 1000);
  ta.join();
  tb.join();
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto r = c->Exec(
      "SELECT correlation_id, count(DISTINCT owner) FROM meldingen WHERE state = 1 "
      "GROUP BY correlation_id ORDER BY 1");
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows(), 3);
  for (int i = 0; i < r->rows(); ++i) EXPECT_EQ(r->Int(i, 1), 1) << r->Text(i, 0);
  // What the Appends did not hand over, the owners claim: all of it, each once.
  auto ca = a->ClaimWork();
  auto cb = b->ClaimWork();
  ASSERT_TRUE(ca.ok() && cb.ok());
  std::set<int64_t> sa = Seqs(*ca), sb = Seqs(*cb);
  for (int64_t seq : sa) EXPECT_EQ(sb.count(seq), 0u);
  std::set<int64_t> claimed = sa;
  claimed.insert(sb.begin(), sb.end());
  absl::MutexLock lock(&mu);
  EXPECT_EQ(claimed, not_handed);
  std::printf("%zu of %d meldingen were given to the other replica's claim\n", not_handed.size(),
              2 * kEach);
}

// A replica that stops renewing its lease (crashed, paused) loses all its pending messages to
// a live replica at that one's next claim, in seq order; a message appended later to one of
// its conversations goes to the new owner.
TEST_F(PgMessageStoreTest, ALapsedReplicaIsTakenOverAsAWhole) {
  auto dead = Replica("replica-dead", absl::Seconds(1));
  auto live = Replica("replica-live");
  ASSERT_TRUE(dead && live);
  ASSERT_TRUE(live->ClaimWork().ok());
  std::vector<int64_t> seqs;
  for (int i = 0; i < 4; ++i) {
    auto r = AppendSync(*dead, Record(Id(i), Id(i), i % 2 == 0 ? "zaak-1" : ""));
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->owned);
    seqs.push_back(r->record.seq);
  }
  // "dead" never claims again: after its 1s lease the live replica takes everything.
  std::vector<MessageRecord> taken;
  const absl::Time until = absl::Now() + absl::Seconds(60);
  while (taken.empty() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(200));
    auto c = live->ClaimWork();
    ASSERT_TRUE(c.ok()) << c.status();
    taken = *std::move(c);
  }
  ASSERT_EQ(taken.size(), 4u);
  for (size_t i = 0; i < taken.size(); ++i) {
    EXPECT_EQ(taken[i].seq, seqs[i]);
    EXPECT_EQ(taken[i].envelope, absl::StrCat("envelope-", Id(static_cast<int>(i))));
  }
  for (const auto& [seq, owner] : Owners()) EXPECT_EQ(owner, "replica-live") << seq;

  // The presumed-dead replica resumes: zaak-1 now belongs to the live one.
  auto late = AppendSync(*dead, Record(Id(10), Id(10), "zaak-1"));
  ASSERT_TRUE(late.ok()) << late.status();
  EXPECT_FALSE(late->owned);
  auto own = AppendSync(*dead, Record(Id(11), Id(11), "zaak-9"));
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_TRUE(own->owned);  // it re-registered and owns what it appends again
  auto resumed = dead->ClaimWork();  // its first claim: all it owns now
  ASSERT_TRUE(resumed.ok());
  auto next = live->ClaimWork();
  ASSERT_TRUE(next.ok());
  std::set<int64_t> to_live = Seqs(*next), to_dead = Seqs(*resumed);
  EXPECT_EQ(to_live.count(late->record.seq), 1u);
  EXPECT_EQ(to_dead.count(late->record.seq), 0u);
  // Its own new message is its own, unless its (1s) lease lapsed again meanwhile on this
  // loaded machine and the live replica took it too: once, either way.
  EXPECT_EQ(to_live.count(own->record.seq) + to_dead.count(own->record.seq), 1u);
}

// Two live replicas claim while a third stops: every one of its messages is taken by exactly
// one of them. Close() ends the lease at once.
TEST_F(PgMessageStoreTest, AStoppedReplicaIsTakenOverByExactlyOneOther) {
  auto stopping = Replica("replica-c");
  auto a = Replica("replica-a");
  auto b = Replica("replica-b");
  ASSERT_TRUE(stopping && a && b);
  ASSERT_TRUE(a->ClaimWork().ok());
  ASSERT_TRUE(b->ClaimWork().ok());
  constexpr int kMessages = 200;
  std::set<int64_t> appended;
  for (int i = 0; i < kMessages; ++i) {
    auto r = AppendSync(*stopping, Record(Id(i), Id(i), absl::StrCat("zaak-", i % 7)));
    ASSERT_TRUE(r.ok());
    appended.insert(r->record.seq);
  }
  stopping->Close();
  std::set<int64_t> got_a, got_b;
  std::atomic<bool> stop{false};
  auto claim = [&](PgMessageStore* s, std::set<int64_t>* got) {
    const absl::Time until = absl::Now() + absl::Seconds(60);
    while (!stop && absl::Now() < until) {
      auto c = s->ClaimWork();
      ASSERT_TRUE(c.ok()) << c.status();
      for (const MessageRecord& r : *c) EXPECT_TRUE(got->insert(r.seq).second);
      if (!c->empty()) stop = true;
      absl::SleepFor(absl::Milliseconds(10));
    }
  };
  std::thread ta(claim, a.get(), &got_a);
  std::thread tb(claim, b.get(), &got_b);
  ta.join();
  tb.join();
  std::set<int64_t> all = got_a;
  all.insert(got_b.begin(), got_b.end());
  EXPECT_EQ(all, appended);
  EXPECT_EQ(got_a.size() + got_b.size(), appended.size()) << "a message claimed twice";
  // Taken over as a whole, not split.
  EXPECT_TRUE(got_a.empty() || got_b.empty());
  for (const auto& [seq, owner] : Owners()) {
    EXPECT_EQ(owner, got_a.empty() ? "replica-b" : "replica-a") << seq;
  }
}

// The database goes away: Appends (and so Sends) fail with UNAVAILABLE, nothing hangs; when
// it is back the same store works again, with everything acknowledged before still there.
TEST_F(PgMessageStoreTest, LosingTheDatabaseFailsClosedAndRecovers) {
  auto store = Replica("replica-a");
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->ClaimWork().ok());
  auto before = AppendSync(*store, Record(kId1, "1", "zaak-1"));
  ASSERT_TRUE(before.ok());

  ASSERT_TRUE(g_server->Stop().ok());
  for (int i = 0; i < 3; ++i) {
    auto refused = AppendSync(*store, Record(Id(i), Id(i)));
    EXPECT_TRUE(absl::IsUnavailable(refused.status())) << refused.status();
  }
  EXPECT_TRUE(absl::IsUnavailable(FindSync(*store, kSender, kId1).status()));
  EXPECT_TRUE(absl::IsUnavailable(store->ClaimWork().status()));

  ASSERT_TRUE(g_server->Restart().ok());
  absl::StatusOr<AppendResult> after = absl::UnavailableError("not tried");
  const absl::Time until = absl::Now() + absl::Seconds(60);
  for (int i = 100; !after.ok() && absl::Now() < until; ++i) {
    after = AppendSync(*store, Record(Id(i), Id(i), "zaak-1"));
    if (!after.ok()) {
      EXPECT_TRUE(absl::IsUnavailable(after.status())) << after.status();
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_TRUE(after->owned);
  auto found = FindSync(*store, kSender, kId1);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->state, MessageState::kAccepted);
  // After a lost connection the next claim hands over everything owned again (a COMMIT
  // cut off may have happened): the scheduler skips those it already has.
  auto claimed = store->ClaimWork();
  ASSERT_TRUE(claimed.ok()) << claimed.status();
  EXPECT_EQ(Seqs(*claimed), (std::set<int64_t>{before->record.seq, after->record.seq}));
  EXPECT_EQ(store->Stats().pending_messages, 2u);
}

// An operation whose own statement fails (here: bytes that are not UTF-8, which the
// database refuses) fails alone; the operations batched with it are run again without it.
TEST_F(PgMessageStoreTest, AnOperationThatFailsOnItsOwnFailsAlone) {
  auto store = Replica("replica-a");
  ASSERT_NE(store, nullptr);
  for (int round = 0; round < 5; ++round) {
    std::vector<std::promise<absl::StatusOr<AppendResult>>> results(9);
    for (int i = 0; i < 9; ++i) {
      MessageRecord r = Record(Id(round * 10 + i), Id(round * 10 + i));
      if (i == 4) r.correlation_id = "bad \xff\xfe utf-8";
      store->Append(std::move(r), [&results, i](absl::StatusOr<AppendResult> res) {
        results[i].set_value(std::move(res));
      });
    }
    for (int i = 0; i < 9; ++i) {
      auto r = results[i].get_future().get();
      if (i == 4) {
        EXPECT_FALSE(r.ok());
        EXPECT_FALSE(absl::IsUnavailable(r.status())) << r.status();
      } else {
        EXPECT_TRUE(r.ok()) << i << ": " << r.status();
      }
    }
  }
  EXPECT_EQ(store->Stats().pending_messages, 40u);
  EXPECT_EQ(Owners().size(), 40u);
}

TEST_F(PgMessageStoreTest, SchemaIsAppliedOnceAndTheAuditorRoleCannotWrite) {
  auto a = Replica("replica-a");
  auto b = Replica("replica-b");  // a second Open finds the schema in place
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(AppendSync(*a, Record(kId1)).ok());
  PgStoreOptions o = Options("auditor");
  o.connect.conninfo = g_server->Conninfo("knooppunt_auditor");
  auto pw = pg::ReadPasswordFile(g_server->PasswordFile("knooppunt_auditor"));
  ASSERT_TRUE(pw.ok());
  o.connect.password = *pw;
  auto c = pg::Connection::Open(o.connect);
  ASSERT_TRUE(c.ok()) << c.status();
  auto write = (*c)->Exec("DELETE FROM meldingen");
  EXPECT_FALSE(write.ok());
  // Nor read them: meldingen carry payloads; the auditor reads the audit tables only.
  auto read = (*c)->Exec("SELECT count(*) FROM meldingen");
  EXPECT_FALSE(read.ok());
  EXPECT_NE(read.status().message().find("permission denied"), std::string::npos)
      << read.status();
}

// Two gateways with one instance_id would both deliver its messages: the second is refused
// while the first is connected, and welcome once it is gone.
TEST_F(PgMessageStoreTest, ASecondGatewayWithTheSameInstanceIdIsRefused) {
  auto first = Replica("replica-a");
  ASSERT_NE(first, nullptr);
  auto second = PgMessageStore::Open(Options("replica-a"));
  ASSERT_FALSE(second.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  EXPECT_NE(second.status().message().find("instance_id"), std::string::npos);
  // The refused gateway did not end the running one's lease on its way out (others would
  // take over messages the first is still delivering).
  auto c = Connect();
  ASSERT_NE(c, nullptr);
  auto lease = c->Exec(
      "SELECT lease_until > clock_timestamp() FROM meldingen_replicas WHERE instance_id = $1",
      {"replica-a"});
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_EQ(lease->rows(), 1);
  EXPECT_EQ(lease->Text(0, 0), "t") << "the running replica's lease was ended";
  first.reset();
  auto third = PgMessageStore::Open(Options("replica-a"));
  EXPECT_TRUE(third.ok()) << third.status();
}

TEST(PgMessageStoreOptions, InstanceIdIsRequired) {
  PgStoreOptions o;
  o.connect.conninfo = "host=127.0.0.1 port=1";
  auto s = PgMessageStore::Open(o);
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
}

}  // namespace
}  // namespace knooppunt::store
