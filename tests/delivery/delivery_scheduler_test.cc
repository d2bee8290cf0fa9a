// The scheduler in pull mode (no network): hand-out, acknowledgement, visibility timeout,
// order per correlation id, per-consumer limits and expiry, against a real SQLite store.
#include "gateway/delivery/delivery_scheduler.h"

#include <stdlib.h>
#include <sys/resource.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "gateway/store/sqlite_message_store.h"
#include "gtest/gtest.h"

namespace knooppunt::delivery {
namespace {

using exchange::v1::Envelope;
using store::MessageRecord;

constexpr char kSender[] = "00000099100000000001";
constexpr char kRecipient[] = "00000099300000000363";

class FakeConsumer : public Consumer {
 public:
  void Offer(std::shared_ptr<const Envelope> e) override {
    absl::MutexLock lock(&mu_);
    offered_.push_back(e->message_id());
  }
  void Close() override {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }
  // Waits (bounded, generous for a loaded machine) until `n` offers were seen.
  std::vector<std::string> WaitFor(size_t n, absl::Duration timeout = absl::Seconds(20)) {
    absl::MutexLock lock(&mu_);
    want_ = n;
    mu_.AwaitWithTimeout(absl::Condition(this, &FakeConsumer::Enough), timeout);
    return offered_;
  }
  std::vector<std::string> offered() {
    absl::MutexLock lock(&mu_);
    return offered_;
  }
  bool closed() {
    absl::MutexLock lock(&mu_);
    return closed_;
  }

 private:
  bool Enough() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return offered_.size() >= want_; }
  absl::Mutex mu_;
  std::vector<std::string> offered_ ABSL_GUARDED_BY(mu_);
  size_t want_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

class DeliverySchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "delivery-test.XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    auto s = store::SqliteMessageStore::Open({dir_ + "/m.db"});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }
  void TearDown() override {
    if (scheduler_) scheduler_->Stop();
    scheduler_.reset();
    store_->Close();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void StartScheduler(DeliveryOptions options) {
    scheduler_ = std::make_unique<DeliveryScheduler>(
        store_.get(), nullptr, [](const std::string&) { return Route{}; }, options);
    ASSERT_TRUE(scheduler_->Start().ok());
  }

  static std::string Id(int i) { return absl::StrFormat("00000000-0000-4000-8000-%012d", i); }

  // Stores a message and hands it to the scheduler, as the Send path does.
  MessageRecord Accept(int i, const std::string& correlation = "",
                       absl::Duration window = absl::Hours(1)) {
    MessageRecord r = Store(i, correlation, window);
    Envelope e;
    EXPECT_TRUE(e.ParseFromString(r.envelope));
    scheduler_->Enqueue(r, std::make_shared<Envelope>(e));
    return r;
  }

  // A message in the store that this scheduler was not handed (with its envelope), as one
  // accepted by another replica.
  MessageRecord AcceptedElsewhere(int i) { return Store(i, "", absl::Hours(1)); }

  void ReopenStore() {
    store_->Close();
    store_.reset();
    auto s = store::SqliteMessageStore::Open({dir_ + "/m.db"});
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  MessageRecord Store(int i, const std::string& correlation, absl::Duration window) {
    Envelope e;
    e.set_message_id(Id(i));
    e.set_sender(kSender);
    e.set_recipient(kRecipient);
    e.set_correlation_id(correlation);
    MessageRecord r;
    r.sender = kSender;
    r.message_id = Id(i);
    r.recipient = kRecipient;
    r.correlation_id = correlation;
    r.agreement_id = "a";
    r.content_hash = Id(i);
    r.envelope = e.SerializeAsString();
    r.accepted_at = absl::Now();
    r.expires_at = r.accepted_at + window;
    std::promise<absl::StatusOr<store::AppendResult>> p;
    store_->Append(r, [&p](absl::StatusOr<store::AppendResult> res) { p.set_value(std::move(res)); });
    auto res = p.get_future().get();
    EXPECT_TRUE(res.ok()) << res.status();
    if (!res.ok()) return r;
    res->record.envelope = r.envelope;  // the store hands back the header only
    return res->record;
  }

  absl::Status AckSync(const std::string& caller, int i) {
    std::promise<absl::Status> p;
    scheduler_->Ack(caller, kSender, Id(i), [&p](absl::Status s) { p.set_value(s); });
    return p.get_future().get();
  }

  MessageRecord Find(int i) {
    std::promise<absl::StatusOr<MessageRecord>> p;
    store_->Find(kSender, Id(i), [&p](absl::StatusOr<MessageRecord> r) { p.set_value(std::move(r)); });
    auto r = p.get_future().get();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : MessageRecord{};
  }

  // Polls the store (bounded) until message i is in `state`.
  bool WaitForState(int i, store::MessageState state, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time until = absl::Now() + timeout;
    while (absl::Now() < until) {
      if (Find(i).state == state) return true;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  std::string dir_;
  std::unique_ptr<store::SqliteMessageStore> store_;
  std::unique_ptr<DeliveryScheduler> scheduler_;
};

TEST_F(DeliverySchedulerTest, PulledMessageIsDeliveredWhenAcknowledged) {
  StartScheduler({});
  FakeConsumer consumer;
  scheduler_->AddConsumer(kRecipient, &consumer, 0);
  Accept(1);
  EXPECT_EQ(consumer.WaitFor(1), std::vector<std::string>{Id(1)});
  EXPECT_EQ(Find(1).state, store::MessageState::kAccepted);
  // Only the recipient may acknowledge.
  EXPECT_TRUE(absl::IsNotFound(AckSync("00000099300000000479", 1)));
  ASSERT_TRUE(AckSync(kRecipient, 1).ok());
  MessageRecord r = Find(1);
  EXPECT_EQ(r.state, store::MessageState::kDelivered);
  EXPECT_EQ(r.attempts, 1);
  EXPECT_EQ(scheduler_->pending(), 0u);
  // Acknowledging again is fine; an unknown message is not.
  EXPECT_TRUE(AckSync(kRecipient, 1).ok());
  EXPECT_TRUE(absl::IsNotFound(AckSync(kRecipient, 99)));
  scheduler_->RemoveConsumer(kRecipient, &consumer);
}

TEST_F(DeliverySchedulerTest, UnacknowledgedMessageIsHandedOutAgain) {
  DeliveryOptions options;
  options.visibility_timeout = absl::Milliseconds(200);
  options.initial_backoff = absl::Milliseconds(10);
  options.max_backoff = absl::Milliseconds(20);
  StartScheduler(options);
  FakeConsumer crashed;
  scheduler_->AddConsumer(kRecipient, &crashed, 0);
  Accept(1);
  ASSERT_EQ(crashed.WaitFor(1).size(), 1u);
  scheduler_->RemoveConsumer(kRecipient, &crashed);  // the consumer dies before Ack

  FakeConsumer next;
  scheduler_->AddConsumer(kRecipient, &next, 0);
  EXPECT_EQ(next.WaitFor(1), std::vector<std::string>{Id(1)});
  ASSERT_TRUE(AckSync(kRecipient, 1).ok());
  MessageRecord r = Find(1);
  EXPECT_EQ(r.state, store::MessageState::kDelivered);
  EXPECT_EQ(r.attempts, 2);
  scheduler_->RemoveConsumer(kRecipient, &next);
}

TEST_F(DeliverySchedulerTest, SameCorrelationIdIsHandedOutInAcceptanceOrderOneAtATime) {
  StartScheduler({});
  for (int i = 1; i <= 3; ++i) Accept(i, "zaak-7");
  Accept(4);  // unordered: not held back by the others
  FakeConsumer consumer;
  scheduler_->AddConsumer(kRecipient, &consumer, 0);
  std::vector<std::string> got = consumer.WaitFor(2);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], Id(1));
  EXPECT_EQ(got[1], Id(4));
  ASSERT_TRUE(AckSync(kRecipient, 1).ok());
  EXPECT_EQ(consumer.WaitFor(3).back(), Id(2));
  ASSERT_TRUE(AckSync(kRecipient, 2).ok());
  EXPECT_EQ(consumer.WaitFor(4).back(), Id(3));
  EXPECT_EQ(consumer.offered().size(), 4u);
  scheduler_->RemoveConsumer(kRecipient, &consumer);
}

TEST_F(DeliverySchedulerTest, ConsumerLimitBoundsUnacknowledgedMessages) {
  StartScheduler({});
  for (int i = 1; i <= 5; ++i) Accept(i);
  FakeConsumer consumer;
  scheduler_->AddConsumer(kRecipient, &consumer, 2);
  ASSERT_EQ(consumer.WaitFor(2).size(), 2u);
  EXPECT_EQ(consumer.WaitFor(3, absl::Milliseconds(300)).size(), 2u);
  ASSERT_TRUE(AckSync(kRecipient, 1).ok());
  EXPECT_EQ(consumer.WaitFor(3).size(), 3u);
  scheduler_->RemoveConsumer(kRecipient, &consumer);
}

TEST_F(DeliverySchedulerTest, MessageNobodyFetchesExpiresAtTheEndOfItsWindow) {
  StartScheduler({});
  Accept(1, "", absl::Milliseconds(200));
  ASSERT_TRUE(WaitForState(1, store::MessageState::kExpired));
  EXPECT_EQ(scheduler_->pending(), 0u);
  EXPECT_TRUE(absl::IsFailedPrecondition(AckSync(kRecipient, 1)));
}

TEST_F(DeliverySchedulerTest, WaitingForAConsumerCostsNoCpu) {
  StartScheduler({});
  Accept(1);  // a pull recipient nobody fetches for: nothing to do until someone connects
  absl::SleepFor(absl::Milliseconds(50));
  struct rusage before, after;
  getrusage(RUSAGE_SELF, &before);
  absl::SleepFor(absl::Milliseconds(500));
  getrusage(RUSAGE_SELF, &after);
  auto cpu = [](const struct rusage& r) {
    return absl::DurationFromTimeval(r.ru_utime) + absl::DurationFromTimeval(r.ru_stime);
  };
  // A scheduler that spins on the waiting message would burn most of the half second.
  EXPECT_LT(cpu(after) - cpu(before), absl::Milliseconds(50));
}

TEST_F(DeliverySchedulerTest, StopClosesConsumers) {
  StartScheduler({});
  FakeConsumer consumer;
  scheduler_->AddConsumer(kRecipient, &consumer, 0);
  scheduler_->Stop();
  EXPECT_TRUE(consumer.closed());
  scheduler_->RemoveConsumer(kRecipient, &consumer);
}

TEST_F(DeliverySchedulerTest, RecoveredMessagesAreDeliveredAfterRestart) {
  StartScheduler({});
  Accept(1);
  Accept(2);
  scheduler_->Stop();
  scheduler_.reset();
  ReopenStore();  // as after a restart
  std::vector<std::string> hooked;
  scheduler_ = std::make_unique<DeliveryScheduler>(
      store_.get(), nullptr, [](const std::string&) { return Route{}; }, DeliveryOptions{});
  scheduler_->set_claim_hook([&hooked](const std::vector<MessageRecord>& claimed) {
    for (const MessageRecord& r : claimed) hooked.push_back(r.message_id);
    return absl::OkStatus();
  });
  ASSERT_TRUE(scheduler_->Start().ok());
  EXPECT_EQ(hooked, (std::vector<std::string>{Id(1), Id(2)}));  // on record before delivery
  FakeConsumer consumer;
  scheduler_->AddConsumer(kRecipient, &consumer, 0);
  EXPECT_EQ(consumer.WaitFor(2), (std::vector<std::string>{Id(1), Id(2)}));
  scheduler_->RemoveConsumer(kRecipient, &consumer);
}

TEST_F(DeliverySchedulerTest, DoesNotStartWhenClaimedWorkCannotBePutOnRecord) {
  StartScheduler({});
  Accept(1);
  scheduler_->Stop();
  scheduler_.reset();
  ReopenStore();
  scheduler_ = std::make_unique<DeliveryScheduler>(
      store_.get(), nullptr, [](const std::string&) { return Route{}; }, DeliveryOptions{});
  scheduler_->set_claim_hook([](const std::vector<MessageRecord>&) {
    return absl::UnavailableError("audit log full");
  });
  EXPECT_EQ(scheduler_->Start().code(), absl::StatusCode::kUnavailable);
  scheduler_.reset();
}

// A store shared by replicas hands this gateway more work later (ClaimWork): messages taken
// over from a stopped replica. The scheduler asks every claim_interval, puts them on record
// (retrying while that fails), then delivers them.
class SharedStore final : public store::MessageStore {
 public:
  explicit SharedStore(store::MessageStore* local) : local_(local) {}
  void TakeOver(MessageRecord r) {
    absl::MutexLock lock(&mu_);
    taken_over_.push_back(std::move(r));
  }
  void Append(MessageRecord r, AppendDone d) override { local_->Append(std::move(r), std::move(d)); }
  void RecordAttempt(int64_t seq, int n, std::string e, Done d) override {
    local_->RecordAttempt(seq, n, std::move(e), std::move(d));
  }
  void MarkDelivered(int64_t seq, absl::Time at, int n, Done d) override {
    local_->MarkDelivered(seq, at, n, std::move(d));
  }
  void MarkExpired(int64_t seq, int n, std::string e, Done d) override {
    local_->MarkExpired(seq, n, std::move(e), std::move(d));
  }
  void Discard(int64_t seq, Done d) override { local_->Discard(seq, std::move(d)); }
  void Find(std::string s, std::string id, FindDone d) override {
    local_->Find(std::move(s), std::move(id), std::move(d));
  }
  absl::StatusOr<std::vector<MessageRecord>> ClaimWork() override {
    absl::StatusOr<std::vector<MessageRecord>> mine = local_->ClaimWork();
    if (!mine.ok()) return mine;
    absl::MutexLock lock(&mu_);
    for (MessageRecord& r : taken_over_) mine->push_back(std::move(r));
    taken_over_.clear();
    ++claims_;
    return mine;
  }
  store::StoreStats Stats() const override { return local_->Stats(); }
  void Close() override { local_->Close(); }
  int claims() const {
    absl::MutexLock lock(&mu_);
    return claims_;
  }

 private:
  store::MessageStore* const local_;
  mutable absl::Mutex mu_;
  std::vector<MessageRecord> taken_over_ ABSL_GUARDED_BY(mu_);
  int claims_ ABSL_GUARDED_BY(mu_) = 0;
};

TEST_F(DeliverySchedulerTest, WorkTakenOverFromAStoppedReplicaIsRecordedThenDelivered) {
  SharedStore shared(store_.get());
  DeliveryOptions options;
  options.claim_interval = absl::Milliseconds(20);
  std::atomic<int> hook_calls{0};
  absl::Mutex mu;
  std::vector<std::string> recorded;
  scheduler_ = std::make_unique<DeliveryScheduler>(
      &shared, nullptr, [](const std::string&) { return Route{}; }, options);
  scheduler_->set_claim_hook([&](const std::vector<MessageRecord>& claimed) {
    // The first attempt at recording the taken-over message fails (audit unavailable).
    if (hook_calls++ == 0) return absl::UnavailableError("audit unavailable");
    absl::MutexLock lock(&mu);
    for (const MessageRecord& r : claimed) recorded.push_back(r.message_id);
    return absl::OkStatus();
  });
  // Nothing pending at start: the hook is not called for an empty claim.
  ASSERT_TRUE(scheduler_->Start().ok());
  EXPECT_EQ(hook_calls.load(), 0);

  // Another replica accepted message 7 and stopped; the store moves it to this gateway.
  MessageRecord other = AcceptedElsewhere(7);
  shared.TakeOver(other);
  FakeConsumer consumer;
  scheduler_->AddConsumer(kRecipient, &consumer, 0);
  EXPECT_EQ(consumer.WaitFor(1), (std::vector<std::string>{Id(7)}));
  EXPECT_GE(hook_calls.load(), 2);  // failed once, then recorded
  {
    absl::MutexLock lock(&mu);
    EXPECT_EQ(recorded, (std::vector<std::string>{Id(7)}));
  }
  scheduler_->RemoveConsumer(kRecipient, &consumer);
  scheduler_->Stop();
  scheduler_.reset();
}

// A conversation's older message claimed after a newer one was handed over directly (a
// replica's Send gave the older one to this gateway, which owns the conversation): it is
// delivered first, in acceptance order.
TEST_F(DeliverySchedulerTest, AnOlderMessageClaimedLaterIsDeliveredFirstInItsConversation) {
  SharedStore shared(store_.get());
  DeliveryOptions options;
  options.claim_interval = absl::Milliseconds(20);
  scheduler_ = std::make_unique<DeliveryScheduler>(
      &shared, nullptr, [](const std::string&) { return Route{}; }, options);
  ASSERT_TRUE(scheduler_->Start().ok());
  MessageRecord older = Store(1, "zaak-1", absl::Hours(1));
  MessageRecord newer = Accept(2, "zaak-1");
  ASSERT_LT(older.seq, newer.seq);
  shared.TakeOver(older);
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (scheduler_->pending() < 2 && absl::Now() < until) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(scheduler_->pending(), 2u);
  FakeConsumer consumer;
  scheduler_->AddConsumer(kRecipient, &consumer, 0);
  EXPECT_EQ(consumer.WaitFor(1), (std::vector<std::string>{Id(1)}));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(consumer.offered().size(), 1u) << "the newer one waits for the older";
  ASSERT_TRUE(AckSync(kRecipient, 1).ok());
  EXPECT_EQ(consumer.WaitFor(2), (std::vector<std::string>{Id(1), Id(2)}));
  scheduler_->RemoveConsumer(kRecipient, &consumer);
  scheduler_->Stop();
  scheduler_.reset();
}

}  // namespace
}  // namespace knooppunt::delivery
