// The behaviour every MessageStore gives (gateway/store/message_store.h), as a typed test
// suite run over each implementation: sqlite_message_store_test.cc and
// pg_message_store_test.cc instantiate it with a backend:
//
//   struct Backend {
//     using Store = ...;                                    // the concrete store class
//     static constexpr const char* kName = "...";
//     // Opens this test's store (again: the same data and, for a shared store, the same
//     // replica) with the limits given; called more than once per test for reopening.
//     absl::StatusOr<std::unique_ptr<Store>> Open(const StoreLimits& limits);
//     std::string SkipReason();  // non-empty: the test is skipped
//   };
// Only the MessageStore interface is used (plus Store::commits()), so the backends are
// interchangeable here; what one store does beyond it is tested in its own file.
#ifndef KNOOPPUNT_TESTS_STORE_MESSAGE_STORE_CONTRACT_H_
#define KNOOPPUNT_TESTS_STORE_MESSAGE_STORE_CONTRACT_H_

#include <atomic>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gateway/store/message_store.h"
#include "gtest/gtest.h"

namespace knooppunt::store::contract {

struct StoreLimits {
  uint64_t max_pending_messages = 1000000;
  uint64_t max_pending_bytes = uint64_t{1} << 30;
  absl::Duration retain_final = absl::Hours(24 * 30);
  absl::Duration purge_every = absl::Minutes(1);
};

inline constexpr char kSender[] = "00000099100000000001";
inline constexpr char kRecipient[] = "00000099300000000014";
inline constexpr char kId1[] = "11111111-1111-4111-8111-111111111111";
inline constexpr char kId2[] = "22222222-2222-4222-8222-222222222222";
inline constexpr char kId3[] = "33333333-3333-4333-8333-333333333333";

inline MessageRecord Record(const std::string& id, const std::string& content = "hello",
                            const std::string& correlation = "") {
  MessageRecord r;
  r.sender = kSender;
  r.message_id = id;
  r.recipient = kRecipient;
  r.correlation_id = correlation;
  r.agreement_id = "verhuizen-naar-gemeenten";
  r.content_hash = "hash-of-" + content;
  r.envelope = "envelope-" + content;
  r.accepted_at = absl::FromUnixSeconds(1790000000);
  r.expires_at = r.accepted_at + absl::Hours(120);
  return r;
}

inline absl::StatusOr<AppendResult> AppendSync(MessageStore& store, MessageRecord r) {
  std::promise<absl::StatusOr<AppendResult>> p;
  store.Append(std::move(r),
               [&p](absl::StatusOr<AppendResult> res) { p.set_value(std::move(res)); });
  return p.get_future().get();
}

inline absl::Status DoneSync(const std::function<void(MessageStore::Done)>& op) {
  std::promise<absl::Status> p;
  op([&p](absl::Status s) { p.set_value(s); });
  return p.get_future().get();
}

inline absl::StatusOr<MessageRecord> FindSync(MessageStore& store, const std::string& sender,
                                              const std::string& id) {
  std::promise<absl::StatusOr<MessageRecord>> p;
  store.Find(sender, id, [&p](absl::StatusOr<MessageRecord> r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

template <typename Backend>
class MessageStoreContract : public ::testing::Test {
 protected:
  using Store = typename Backend::Store;
  void SetUp() override {
    const std::string skip = backend_.SkipReason();
    if (!skip.empty()) GTEST_SKIP() << skip;
  }
  std::unique_ptr<Store> Open(const StoreLimits& limits = {}) {
    absl::StatusOr<std::unique_ptr<Store>> s = backend_.Open(limits);
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? *std::move(s) : nullptr;
  }
  Backend backend_;
};

TYPED_TEST_SUITE_P(MessageStoreContract);

TYPED_TEST_P(MessageStoreContract, AppendStoresAndFindReturnsHeader) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  absl::StatusOr<AppendResult> r = AppendSync(*store, Record(kId1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->duplicate);
  EXPECT_TRUE(r->owned);
  EXPECT_GT(r->record.seq, 0);
  EXPECT_EQ(r->record.state, MessageState::kAccepted);

  absl::StatusOr<MessageRecord> found = FindSync(*store, kSender, kId1);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->recipient, kRecipient);
  EXPECT_EQ(found->content_hash, "hash-of-hello");
  EXPECT_EQ(found->accepted_at, absl::FromUnixSeconds(1790000000));
  EXPECT_EQ(found->expires_at, absl::FromUnixSeconds(1790000000) + absl::Hours(120));
  EXPECT_EQ(found->delivered_at, absl::InfinitePast());
  EXPECT_TRUE(found->envelope.empty());  // headers only
  EXPECT_EQ(store->Stats().pending_messages, 1u);
  EXPECT_EQ(store->Stats().pending_bytes, std::string("envelope-hello").size());

  EXPECT_TRUE(absl::IsNotFound(FindSync(*store, kSender, kId2).status()));
  // Another sender's id space is separate.
  EXPECT_TRUE(absl::IsNotFound(FindSync(*store, "00000099300000000479", kId1).status()));
}

TYPED_TEST_P(MessageStoreContract, SameIdSameContentIsTheOriginalReceipt) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  auto first = AppendSync(*store, Record(kId1));
  ASSERT_TRUE(first.ok());
  MessageRecord again = Record(absl::AsciiStrToUpper(kId1));  // ids are case-insensitive
  again.accepted_at += absl::Seconds(30);
  auto second = AppendSync(*store, again);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->duplicate);
  EXPECT_EQ(second->record.seq, first->record.seq);
  EXPECT_EQ(second->record.accepted_at, first->record.accepted_at);
  EXPECT_EQ(store->Stats().pending_messages, 1u);
}

TYPED_TEST_P(MessageStoreContract, SameIdDifferentContentIsAlreadyExists) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(AppendSync(*store, Record(kId1, "a")).ok());
  auto conflict = AppendSync(*store, Record(kId1, "b"));
  EXPECT_TRUE(absl::IsAlreadyExists(conflict.status())) << conflict.status();
  EXPECT_EQ(store->Stats().pending_messages, 1u);
}

TYPED_TEST_P(MessageStoreContract, DuplicatesInOneBatchAreStoredOnce) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  std::vector<std::promise<absl::StatusOr<AppendResult>>> results(10);
  for (auto& p : results) {
    store->Append(Record(kId1),
                  [&p](absl::StatusOr<AppendResult> r) { p.set_value(std::move(r)); });
  }
  int fresh = 0;
  for (auto& p : results) {
    auto r = p.get_future().get();
    ASSERT_TRUE(r.ok()) << r.status();
    if (!r->duplicate) ++fresh;
  }
  EXPECT_EQ(fresh, 1);
  EXPECT_EQ(store->Stats().pending_messages, 1u);
}

TYPED_TEST_P(MessageStoreContract, FinalStatesLeavePendingAndKeepTheHeader) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  MessageStore& s = *store;
  auto a = AppendSync(s, Record(kId1));
  auto b = AppendSync(s, Record(kId2));
  ASSERT_TRUE(a.ok() && b.ok());
  const absl::Time at = absl::FromUnixSeconds(1790000100);
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.RecordAttempt(a->record.seq, 1, "refused", std::move(d));
              }).ok());
  auto attempted = FindSync(s, kSender, kId1);
  ASSERT_TRUE(attempted.ok());
  EXPECT_EQ(attempted->attempts, 1);
  EXPECT_EQ(attempted->last_error, "refused");
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(a->record.seq, at, 2, std::move(d));
              }).ok());
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkExpired(b->record.seq, 7, "gone", std::move(d));
              }).ok());
  // Final is final: a late MarkDelivered does not revive an expired message.
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(b->record.seq, at, 8, std::move(d));
              }).ok());

  auto fa = FindSync(s, kSender, kId1);
  ASSERT_TRUE(fa.ok());
  EXPECT_EQ(fa->state, MessageState::kDelivered);
  EXPECT_EQ(fa->delivered_at, at);
  EXPECT_EQ(fa->attempts, 2);
  auto fb = FindSync(s, kSender, kId2);
  ASSERT_TRUE(fb.ok());
  EXPECT_EQ(fb->state, MessageState::kExpired);
  EXPECT_EQ(fb->attempts, 7);
  EXPECT_EQ(fb->last_error, "gone");
  EXPECT_EQ(s.Stats().pending_messages, 0u);
  EXPECT_EQ(s.Stats().pending_bytes, 0u);
  auto pending = s.ClaimWork();
  ASSERT_TRUE(pending.ok()) << pending.status();
  EXPECT_TRUE(pending->empty());
}

TYPED_TEST_P(MessageStoreContract, DiscardTakesBackAnAppendAsIfNeverStored) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  MessageStore& s = *store;
  auto a = AppendSync(s, Record(kId1));
  auto b = AppendSync(s, Record(kId2));
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_EQ(s.Stats().pending_messages, 2u);
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.Discard(a->record.seq, std::move(d)); }).ok());

  EXPECT_TRUE(absl::IsNotFound(FindSync(s, kSender, kId1).status()));
  EXPECT_EQ(s.Stats().pending_messages, 1u);
  EXPECT_EQ(s.Stats().pending_bytes, b->record.envelope.size());
  // The id is free again: the sender's retry is a new message, not a duplicate.
  auto again = AppendSync(s, Record(kId1));
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->duplicate);
  EXPECT_GT(again->record.seq, b->record.seq);
  // A final message is not discarded.
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(b->record.seq, absl::Now(), 1, std::move(d));
              }).ok());
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) { s.Discard(b->record.seq, std::move(d)); }).ok());
  auto fb = FindSync(s, kSender, kId2);
  ASSERT_TRUE(fb.ok());
  EXPECT_EQ(fb->state, MessageState::kDelivered);
  // What is left to deliver: only the retried one.
  auto pending = s.ClaimWork();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].seq, again->record.seq);
}

TYPED_TEST_P(MessageStoreContract, FinalHeadersAreForgottenAfterRetainFinalPendingOnesNever) {
  StoreLimits limits;
  limits.retain_final = absl::Hours(1);
  limits.purge_every = absl::Milliseconds(20);
  auto store = this->Open(limits);
  ASSERT_NE(store, nullptr);
  MessageStore& s = *store;
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
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (FindSync(s, kSender, kId1).ok() && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(absl::IsNotFound(FindSync(s, kSender, kId1).status()));
  EXPECT_TRUE(FindSync(s, kSender, kId2).ok());  // old but still pending
  EXPECT_TRUE(FindSync(s, kSender, kId3).ok());  // final but recent
  EXPECT_EQ(s.Stats().pending_messages, 1u);
}

// Stats() names when the oldest pending message was accepted (the queue's oldest age), and
// follows deliveries; with nothing pending it is InfiniteFuture.
TYPED_TEST_P(MessageStoreContract, StatsNameTheOldestPendingMessage) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  MessageStore& s = *store;
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

TYPED_TEST_P(MessageStoreContract, FullStoreRefusesNewMessagesButNotDuplicates) {
  StoreLimits limits;
  limits.max_pending_messages = 2;
  auto store = this->Open(limits);
  ASSERT_NE(store, nullptr);
  MessageStore& s = *store;
  ASSERT_TRUE(AppendSync(s, Record(kId1)).ok());
  auto second = AppendSync(s, Record(kId2));
  ASSERT_TRUE(second.ok());
  auto third = AppendSync(s, Record(kId3));
  EXPECT_TRUE(absl::IsResourceExhausted(third.status())) << third.status();
  auto dup = AppendSync(s, Record(kId1));
  ASSERT_TRUE(dup.ok()) << dup.status();
  EXPECT_TRUE(dup->duplicate);
  // Room again once one is delivered.
  ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(second->record.seq, absl::Now(), 1, std::move(d));
              }).ok());
  EXPECT_TRUE(AppendSync(s, Record(kId3)).ok());
}

TYPED_TEST_P(MessageStoreContract, ByteLimitAlsoRefuses) {
  StoreLimits limits;
  limits.max_pending_bytes = 20;
  auto store = this->Open(limits);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(AppendSync(*store, Record(kId1, "0123")).ok());  // 13 bytes
  EXPECT_TRUE(absl::IsResourceExhausted(AppendSync(*store, Record(kId2, "0123")).status()));
}

TYPED_TEST_P(MessageStoreContract, PendingMessagesSurviveReopenInAcceptanceOrder) {
  int64_t delivered_seq = 0;
  {
    auto store = this->Open();
    ASSERT_NE(store, nullptr);
    for (const char* id : {kId1, kId2, kId3}) {
      auto r = AppendSync(*store, Record(id, id, "zaak-1"));
      ASSERT_TRUE(r.ok());
      if (std::string(id) == kId2) delivered_seq = r->record.seq;
    }
    MessageStore& s = *store;
    ASSERT_TRUE(DoneSync([&](MessageStore::Done d) {
                  s.MarkDelivered(delivered_seq, absl::Now(), 1, std::move(d));
                }).ok());
  }
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  // The gateway learns of them through ClaimWork, once.
  auto pending = store->ClaimWork();
  ASSERT_TRUE(pending.ok()) << pending.status();
  auto again = store->ClaimWork();
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->empty());
  ASSERT_EQ(pending->size(), 2u);
  EXPECT_EQ((*pending)[0].message_id, kId1);
  EXPECT_EQ((*pending)[1].message_id, kId3);
  EXPECT_LT((*pending)[0].seq, (*pending)[1].seq);
  EXPECT_EQ((*pending)[1].envelope, absl::StrCat("envelope-", kId3));
  EXPECT_EQ((*pending)[1].correlation_id, "zaak-1");
  EXPECT_EQ((*pending)[1].content_hash, absl::StrCat("hash-of-", kId3));
  EXPECT_EQ(store->Stats().pending_messages, 2u);
}

TYPED_TEST_P(MessageStoreContract, ConcurrentAppendsShareCommits) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  constexpr int kThreads = 8, kEach = 100;
  std::atomic<int> ok{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        MessageRecord r = Record(absl::StrCat("id-", t, "-", i), absl::StrCat(t, "/", i));
        std::promise<bool> done;
        store->Append(std::move(r), [&done](absl::StatusOr<AppendResult> res) {
          done.set_value(res.ok() && !res->duplicate);
        });
        if (done.get_future().get()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), kThreads * kEach);
  // Group commit: with 8 waiting appenders, transactions carry several messages each.
  EXPECT_LT(store->commits(), static_cast<uint64_t>(kThreads * kEach));
  EXPECT_EQ(store->Stats().pending_messages, static_cast<uint64_t>(kThreads * kEach));
}

TYPED_TEST_P(MessageStoreContract, ClosedStoreFailsOperations) {
  auto store = this->Open();
  ASSERT_NE(store, nullptr);
  store->Close();
  EXPECT_TRUE(absl::IsUnavailable(AppendSync(*store, Record(kId1)).status()));
  EXPECT_TRUE(absl::IsUnavailable(FindSync(*store, kSender, kId1).status()));
}

REGISTER_TYPED_TEST_SUITE_P(MessageStoreContract, AppendStoresAndFindReturnsHeader,
                            SameIdSameContentIsTheOriginalReceipt,
                            SameIdDifferentContentIsAlreadyExists,
                            DuplicatesInOneBatchAreStoredOnce,
                            FinalStatesLeavePendingAndKeepTheHeader,
                            DiscardTakesBackAnAppendAsIfNeverStored,
                            FinalHeadersAreForgottenAfterRetainFinalPendingOnesNever,
                            StatsNameTheOldestPendingMessage,
                            FullStoreRefusesNewMessagesButNotDuplicates, ByteLimitAlsoRefuses,
                            PendingMessagesSurviveReopenInAcceptanceOrder,
                            ConcurrentAppendsShareCommits, ClosedStoreFailsOperations);

// Names the instantiation after the backend (gtest_discover_tests shows it).
struct BackendName {
  template <typename T>
  static std::string GetName(int) {
    return T::kName;
  }
};

}  // namespace knooppunt::store::contract

#endif  // KNOOPPUNT_TESTS_STORE_MESSAGE_STORE_CONTRACT_H_
