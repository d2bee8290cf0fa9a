#include "gateway/store/sqlite_message_store.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

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
  MessageStore& s = **store;
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
  auto pending = (*store)->LoadPending();
  ASSERT_TRUE(pending.ok());
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
