#include "gateway/store/sqlite_message_store.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/small_filesystem.h"

namespace knooppunt::store {
namespace {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "store-test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

MessageRecord Record(const std::string& id, const std::string& content = "hello",
                     const std::string& correlation = "") {
  MessageRecord r;
  r.sender = "00000099100000000001";
  r.message_id = id;
  r.recipient = "00000099300000000014";
  r.correlation_id = correlation;
  r.agreement_id = "verhuizen-naar-gemeenten";
  r.content_hash = "hash-of-" + content;
  r.envelope = "envelope-" + content;
  r.accepted_at = absl::FromUnixSeconds(1790000000);
  r.expires_at = r.accepted_at + absl::Hours(120);
  return r;
}

absl::StatusOr<AppendResult> AppendSync(MessageStore& store, MessageRecord r) {
  std::promise<absl::StatusOr<AppendResult>> p;
  store.Append(std::move(r), [&p](absl::StatusOr<AppendResult> res) { p.set_value(std::move(res)); });
  return p.get_future().get();
}

absl::Status DoneSync(const std::function<void(MessageStore::Done)>& op) {
  std::promise<absl::Status> p;
  op([&p](absl::Status s) { p.set_value(s); });
  return p.get_future().get();
}

absl::StatusOr<MessageRecord> FindSync(MessageStore& store, const std::string& sender,
                                       const std::string& id) {
  std::promise<absl::StatusOr<MessageRecord>> p;
  store.Find(sender, id, [&p](absl::StatusOr<MessageRecord> r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

constexpr char kId1[] = "11111111-1111-4111-8111-111111111111";
constexpr char kId2[] = "22222222-2222-4222-8222-222222222222";
constexpr char kId3[] = "33333333-3333-4333-8333-333333333333";

TEST(SqliteMessageStore, AppendStoresAndFindReturnsHeader) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<AppendResult> r = AppendSync(**store, Record(kId1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->duplicate);
  EXPECT_GT(r->record.seq, 0);
  EXPECT_EQ(r->record.state, MessageState::kAccepted);

  absl::StatusOr<MessageRecord> found = FindSync(**store, "00000099100000000001", kId1);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->recipient, "00000099300000000014");
  EXPECT_EQ(found->accepted_at, absl::FromUnixSeconds(1790000000));
  EXPECT_EQ(found->expires_at, absl::FromUnixSeconds(1790000000) + absl::Hours(120));
  EXPECT_TRUE(found->envelope.empty());  // headers only
  EXPECT_EQ((*store)->Stats().pending_messages, 1u);
  EXPECT_EQ((*store)->Stats().pending_bytes, std::string("envelope-hello").size());

  EXPECT_TRUE(absl::IsNotFound(FindSync(**store, "00000099100000000001", kId2).status()));
  // Another sender's id space is separate.
  EXPECT_TRUE(absl::IsNotFound(FindSync(**store, "00000099300000000479", kId1).status()));
}

TEST(SqliteMessageStore, SameIdSameContentIsTheOriginalReceipt) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  auto first = AppendSync(**store, Record(kId1));
  ASSERT_TRUE(first.ok());
  MessageRecord again = Record(absl::AsciiStrToUpper(kId1));  // ids are case-insensitive
  again.accepted_at += absl::Seconds(30);
  auto second = AppendSync(**store, again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->duplicate);
  EXPECT_EQ(second->record.seq, first->record.seq);
  EXPECT_EQ(second->record.accepted_at, first->record.accepted_at);
  EXPECT_EQ((*store)->Stats().pending_messages, 1u);
}

TEST(SqliteMessageStore, SameIdDifferentContentIsAlreadyExists) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(AppendSync(**store, Record(kId1, "a")).ok());
  auto conflict = AppendSync(**store, Record(kId1, "b"));
  EXPECT_TRUE(absl::IsAlreadyExists(conflict.status())) << conflict.status();
  EXPECT_EQ((*store)->Stats().pending_messages, 1u);
}

TEST(SqliteMessageStore, DuplicatesInOneBatchAreStoredOnce) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  std::vector<std::promise<absl::StatusOr<AppendResult>>> results(10);
  for (auto& p : results) {
    (*store)->Append(Record(kId1), [&p](absl::StatusOr<AppendResult> r) { p.set_value(std::move(r)); });
  }
  int fresh = 0;
  for (auto& p : results) {
    auto r = p.get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
    if (!r->duplicate) ++fresh;
  }
  EXPECT_EQ(fresh, 1);
  EXPECT_EQ((*store)->Stats().pending_messages, 1u);
}

TEST(SqliteMessageStore, FinalStatesLeavePendingAndKeepTheHeader) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  auto a = AppendSync(**store, Record(kId1));
  auto b = AppendSync(**store, Record(kId2));
  ASSERT_TRUE(a.ok() && b.ok());
  SqliteMessageStore& s = **store;
  const absl::Time at = absl::FromUnixSeconds(1790000100);
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.RecordAttempt(a->record.seq, 1, "refused", std::move(d)); }).ok());
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.MarkDelivered(a->record.seq, at, 2, std::move(d)); }).ok());
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.MarkExpired(b->record.seq, 7, "gone", std::move(d)); }).ok());
  // Final is final: a late MarkDelivered does not revive an expired message.
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.MarkDelivered(b->record.seq, at, 8, std::move(d)); }).ok());

  auto fa = FindSync(s, "00000099100000000001", kId1);
  ASSERT_TRUE(fa.ok());
  EXPECT_EQ(fa->state, MessageState::kDelivered);
  EXPECT_EQ(fa->delivered_at, at);
  EXPECT_EQ(fa->attempts, 2);
  auto fb = FindSync(s, "00000099100000000001", kId2);
  ASSERT_TRUE(fb.ok());
  EXPECT_EQ(fb->state, MessageState::kExpired);
  EXPECT_EQ(fb->attempts, 7);
  EXPECT_EQ(fb->last_error, "gone");
  EXPECT_EQ(s.Stats().pending_messages, 0u);
  EXPECT_EQ(s.Stats().pending_bytes, 0u);
  auto pending = s.LoadPending();
  ASSERT_TRUE(pending.ok());
  EXPECT_TRUE(pending->empty());
}

TEST(SqliteMessageStore, DiscardTakesBackAnAppendAsIfNeverStored) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  SqliteMessageStore& s = **store;
  auto a = AppendSync(s, Record(kId1));
  auto b = AppendSync(s, Record(kId2));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(s.Stats().pending_messages, 2u);
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.Discard(a->record.seq, std::move(d)); }).ok());

  EXPECT_TRUE(absl::IsNotFound(FindSync(s, "00000099100000000001", kId1).status()));
  EXPECT_EQ(s.Stats().pending_messages, 1u);
  EXPECT_EQ(s.Stats().pending_bytes, b->record.envelope.size());
  auto pending = s.LoadPending();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].message_id, kId2);
  // The id is free again: the sender's retry is a new message, not a duplicate.
  auto again = AppendSync(s, Record(kId1));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->duplicate);
  // A final message is not discarded.
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(b->record.seq, absl::Now(), 1, std::move(d));
              }).ok());
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.Discard(b->record.seq, std::move(d)); }).ok());
  auto fb = FindSync(s, "00000099100000000001", kId2);
  ASSERT_TRUE(fb.ok());
  EXPECT_EQ(fb->state, MessageState::kDelivered);
}

TEST(SqliteMessageStore, FinalHeadersAreForgottenAfterRetainFinalPendingOnesNever) {
  TempDir dir;
  SqliteStoreOptions options{dir.File("m.db")};
  options.retain_final = absl::Hours(1);
  options.purge_every = absl::Milliseconds(20);
  auto store = SqliteMessageStore::Open(options);
  ASSERT_TRUE(store.ok());
  MessageStore& s = **store;
  const absl::Time now = absl::Now();
  MessageRecord old_delivered = Record(kId1, "a");
  old_delivered.accepted_at = absl::FromUnixMicros(absl::ToUnixMicros(now - absl::Hours(2)));
  MessageRecord old_pending = Record(kId2, "b");
  old_pending.accepted_at = old_delivered.accepted_at;
  MessageRecord recent_delivered = Record(kId3, "c");
  recent_delivered.accepted_at = absl::FromUnixMicros(absl::ToUnixMicros(now));
  auto a = AppendSync(s, old_delivered);
  auto b = AppendSync(s, old_pending);
  auto c = AppendSync(s, recent_delivered);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  for (int64_t seq : {a->record.seq, c->record.seq}) {
    ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                  s.MarkDelivered(seq, now, 1, std::move(d));
                }).ok());
  }
  // The writer purges at least every purge_every; poll (bounded) for the old final one.
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (FindSync(s, "00000099100000000001", kId1).ok() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(absl::IsNotFound(FindSync(s, "00000099100000000001", kId1).status()));
  EXPECT_TRUE(FindSync(s, "00000099100000000001", kId2).ok());  // old but still pending
  EXPECT_TRUE(FindSync(s, "00000099100000000001", kId3).ok());  // final but recent
  EXPECT_EQ(s.Stats().pending_messages, 1u);
}

// The store's disk fills up (a real 4 MiB file system, where this machine allows mounting):
// Appends fail with UNAVAILABLE, none is reported durable that is not, and every message
// that was acknowledged is still there after reopening; a read-only remount refuses too.
TEST(SqliteMessageStore, RealDiskFullRefusesAppendsAndLosesNothingAcknowledged) {
  TempDir dir;
  auto fs = knooppunt::testing::SmallFileSystem::Mount(dir.File(""), 4);
  if (fs == nullptr) GTEST_SKIP() << "cannot loop-mount here (not root or no loop device)";
  const std::string path = fs->path() + "/m.db";
  std::set<std::string> acknowledged;
  {
    auto store = SqliteMessageStore::Open({path});
    ASSERT_TRUE(store.ok()) << store.status();
    absl::Status failed;
    for (int i = 0; i < 100000 && failed.ok(); ++i) {
      const std::string id = absl::StrFormat("00000000-0000-4000-8000-%012d", i);
      MessageRecord r = Record(id, std::string(8000, 'x') + id);
      auto res = AppendSync(**store, r);
      if (res.ok()) {
        acknowledged.insert(id);
      } else {
        failed = res.status();
      }
    }
    EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
    EXPECT_GT(acknowledged.size(), 10u);
  }
  {
    auto store = SqliteMessageStore::Open({path});
    ASSERT_TRUE(store.ok()) << store.status();
    auto pending = (*store)->LoadPending();
    ASSERT_TRUE(pending.ok()) << pending.status();
    std::set<std::string> found;
    for (const MessageRecord& r : *pending) found.insert(r.message_id);
    EXPECT_EQ(found, acknowledged);
  }
  ASSERT_TRUE(fs->RemountReadOnly());
  auto store = SqliteMessageStore::Open({path});
  if (store.ok()) {
    auto res = AppendSync(**store, Record("ffffffff-0000-4000-8000-000000000001"));
    EXPECT_FALSE(res.ok());
  }
}

// One gateway per store file: a second store on the same file is refused at once with a
// clear error; once the first is closed, the file is free.
TEST(SqliteMessageStore, SecondWriterIsRefusedAtOnce) {
  TempDir dir;
  const std::string path = dir.File("m.db");
  auto store = SqliteMessageStore::Open({path});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(AppendSync(**store, Record(kId1)).ok());
  const absl::Time before = absl::Now();
  auto second = SqliteMessageStore::Open({path});
  ASSERT_FALSE(second.ok());
  EXPECT_LT(absl::Now() - before, absl::Seconds(2)) << "no waiting on SQLite's busy timeout";
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::HasSubstr("locked by another process"));
  store->reset();
  auto third = SqliteMessageStore::Open({path});
  ASSERT_TRUE(third.ok()) << third.status();
  auto pending = (*third)->LoadPending();
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->size(), 1u);
}

// Stats() names when the oldest pending message was accepted (the queue's oldest age), and
// follows deliveries; with nothing pending it is InfiniteFuture.
TEST(SqliteMessageStore, StatsNameTheOldestPendingMessage) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  SqliteMessageStore& s = **store;
  EXPECT_EQ(s.Stats().oldest_pending_accepted_at, absl::InfiniteFuture());
  MessageRecord first = Record(kId1, "a");
  MessageRecord second = Record(kId2, "b");
  second.accepted_at = first.accepted_at + absl::Seconds(5);
  auto a = AppendSync(s, first);
  auto b = AppendSync(s, second);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(s.Stats().oldest_pending_accepted_at, first.accepted_at);
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(a->record.seq, absl::Now(), 1, std::move(d));
              }).ok());
  EXPECT_EQ(s.Stats().oldest_pending_accepted_at, second.accepted_at);
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkExpired(b->record.seq, 1, "gone", std::move(d));
              }).ok());
  EXPECT_EQ(s.Stats().oldest_pending_accepted_at, absl::InfiniteFuture());
}

TEST(SqliteMessageStore, FullStoreRefusesNewMessagesButNotDuplicates) {
  TempDir dir;
  SqliteStoreOptions options{dir.File("m.db")};
  options.max_pending_messages = 2;
  auto store = SqliteMessageStore::Open(options);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(AppendSync(**store, Record(kId1)).ok());
  auto second = AppendSync(**store, Record(kId2));
  ASSERT_TRUE(second.ok());
  auto third = AppendSync(**store, Record(kId3));
  EXPECT_TRUE(absl::IsResourceExhausted(third.status())) << third.status();
  auto dup = AppendSync(**store, Record(kId1));
  ASSERT_TRUE(dup.ok()) << dup.status();
  EXPECT_TRUE(dup->duplicate);
  // Room again once one is delivered.
  MessageStore& s = **store;
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(second->record.seq, absl::Now(), 1, std::move(d));
              }).ok());
  EXPECT_TRUE(AppendSync(s, Record(kId3)).ok());
}

TEST(SqliteMessageStore, ByteLimitAlsoRefuses) {
  TempDir dir;
  SqliteStoreOptions options{dir.File("m.db")};
  options.max_pending_bytes = 20;
  auto store = SqliteMessageStore::Open(options);
  ASSERT_TRUE(store.ok());
  ASSERT_TRUE(AppendSync(**store, Record(kId1, "0123")).ok());  // 13 bytes
  EXPECT_TRUE(absl::IsResourceExhausted(AppendSync(**store, Record(kId2, "0123")).status()));
}

TEST(SqliteMessageStore, PendingMessagesSurviveReopenInAcceptanceOrder) {
  TempDir dir;
  int64_t delivered_seq = 0;
  {
    auto store = SqliteMessageStore::Open({dir.File("m.db")});
    ASSERT_TRUE(store.ok());
    for (const char* id : {kId1, kId2, kId3}) {
      auto r = AppendSync(**store, Record(id, id, "zaak-1"));
      ASSERT_TRUE(r.ok());
      if (std::string(id) == kId2) delivered_seq = r->record.seq;
    }
    MessageStore& s = **store;
    ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                  s.MarkDelivered(delivered_seq, absl::Now(), 1, std::move(d));
                }).ok());
  }
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok()) << store.status();
  // The gateway learns of them through ClaimWork, once: this store has one owner.
  auto pending = (*store)->ClaimWork();
  ASSERT_TRUE(pending.ok());
  auto again = (*store)->ClaimWork();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_EQ((*pending)[0].message_id, kId1);
  EXPECT_EQ((*pending)[1].message_id, kId3);
  EXPECT_LT((*pending)[0].seq, (*pending)[1].seq);
  EXPECT_EQ((*pending)[1].envelope, absl::StrCat("envelope-", kId3));
  EXPECT_EQ((*pending)[1].correlation_id, "zaak-1");
  EXPECT_EQ((*store)->Stats().pending_messages, 2u);
}

TEST(SqliteMessageStore, ConcurrentAppendsShareCommits) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  constexpr int kThreads = 8, kEach = 250;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        MessageRecord r = Record(absl::StrCat("id-", t, "-", i), absl::StrCat(t, "/", i));
        std::promise<bool> done;
        (*store)->Append(std::move(r), [&done](absl::StatusOr<AppendResult> res) {
          done.set_value(res.ok() && !res->duplicate);
        });
        if (done.get_future().get()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  // Group commit: with 8 waiting appenders, transactions carry several messages each.
  EXPECT_LT((*store)->commits(), static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ((*store)->Stats().pending_messages, static_cast<uint64_t>(kThreads * kEach));
}

TEST(SqliteMessageStore, ClosedStoreFailsOperations) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok());
  (*store)->Close();
  EXPECT_TRUE(absl::IsUnavailable(AppendSync(**store, Record(kId1)).status()));
}

}  // namespace
}  // namespace knooppunt::store
