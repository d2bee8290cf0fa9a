#include "gateway/delivery/delivery_scheduler.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gateway/common/log.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::delivery {
namespace {

std::string Key(absl::string_view sender, absl::string_view message_id) {
  return absl::StrCat(sender, "\x1f", store::NormalizeMessageId(std::string(message_id)));
}

}  // namespace

struct DeliveryScheduler::PushCall {
  int64_t seq = 0;
  std::string recipient;
  std::shared_ptr<const exchange::v1::Envelope> envelope;
  forward::EndpointTarget target;
  grpc::ClientContext context;
  exchange::v1::DeliverResponse response;
  std::shared_ptr<exchange::v1::Endpoint::Stub> stub;
};

DeliveryScheduler::DeliveryScheduler(store::MessageStore* store,
                                     forward::EndpointChannels* endpoints, RouteResolver routes,
                                     DeliveryOptions options)
    : store_(store), endpoints_(endpoints), routes_(std::move(routes)),
      options_(std::move(options)), rng_(std::random_device{}()) {}

DeliveryScheduler::~DeliveryScheduler() { Stop(); }

absl::Status DeliveryScheduler::Start() {
  absl::StatusOr<std::vector<store::MessageRecord>> claimed = Claim();
  if (!claimed.ok()) return claimed.status();
  {
    absl::MutexLock lock(&mu_);
    for (store::MessageRecord& r : *claimed) AddLocked(std::move(r), nullptr);
    next_claim_ = absl::Now() + options_.claim_interval;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

absl::StatusOr<std::vector<store::MessageRecord>> DeliveryScheduler::Claim() {
  absl::StatusOr<std::vector<store::MessageRecord>> claimed = store_->ClaimWork();
  if (!claimed.ok()) return claimed.status();
  for (store::MessageRecord& r : *claimed) unrecorded_.push_back(std::move(r));
  if (claim_hook_ && !unrecorded_.empty()) {
    absl::Status recorded = claim_hook_(unrecorded_);
    if (!recorded.ok()) return recorded;  // kept in unrecorded_: tried again at the next claim
  }
  return std::exchange(unrecorded_, {});
}

void DeliveryScheduler::Enqueue(store::MessageRecord record,
                                std::shared_ptr<const exchange::v1::Envelope> envelope) {
  absl::MutexLock lock(&mu_);
  AddLocked(std::move(record), std::move(envelope));
}

size_t DeliveryScheduler::pending() const {
  absl::MutexLock lock(&mu_);
  return messages_.size();
}

void DeliveryScheduler::AddLocked(store::MessageRecord record,
                                  std::shared_ptr<const exchange::v1::Envelope> envelope) {
  const int64_t seq = record.seq;
  if (envelope == nullptr) {
    auto parsed = std::make_shared<exchange::v1::Envelope>();
    if (!parsed->ParseFromString(record.envelope)) {
      // Cannot happen for what this gateway stored; never loop on it.
      store_->MarkExpired(seq, record.attempts, "stored envelope is unreadable", nullptr);
      return;
    }
    envelope = std::move(parsed);
  }
  record.envelope.clear();
  record.envelope.shrink_to_fit();
  Message m;
  m.envelope = std::move(envelope);
  if (!record.correlation_id.empty()) {
    m.order_key = absl::StrCat(record.sender, "\x1f", record.recipient, "\x1f",
                               record.correlation_id);
  }
  m.header = std::move(record);
  by_key_[Key(m.header.sender, m.header.message_id)] = seq;
  expiry_.insert({m.header.expires_at, seq});
  recipients_[m.header.recipient];  // make sure it exists
  auto [it, inserted] = messages_.emplace(seq, std::move(m));
  if (!inserted) return;
  Message& msg = it->second;
  bool head = true;
  if (!msg.order_key.empty()) {
    // In seq (acceptance) order: a message claimed later — given to this gateway by another
    // replica's Send, or taken over — can be older than one of its conversation that this
    // gateway accepted (and was handed) meanwhile. It overtakes a head not yet in delivery.
    std::deque<int64_t>& q = order_[msg.order_key];
    auto pos = std::upper_bound(q.begin(), q.end(), seq);
    if (pos == q.begin() && !q.empty()) {
      auto old = messages_.find(q.front());
      if (old != messages_.end() && old->second.in_flight) {
        ++pos;  // a delivery under way cannot be overtaken
      } else if (old != messages_.end() && old->second.ready) {
        recipients_[old->second.header.recipient].ready.erase(
            {old->second.next_attempt, q.front()});
        old->second.ready = false;  // ready again when the new head is final
      }
    }
    head = pos == q.begin();
    q.insert(pos, seq);
  }
  if (head) MakeReadyLocked(msg, absl::Now());
  wake_ = true;
}

void DeliveryScheduler::MakeReadyLocked(Message& m, absl::Time at) {
  m.next_attempt = at;
  m.ready = true;
  recipients_[m.header.recipient].ready.insert({at, m.header.seq});
  wake_ = true;
}

absl::Duration DeliveryScheduler::Backoff(int attempts) {
  absl::Duration d = options_.initial_backoff;
  for (int i = 1; i < attempts && d < options_.max_backoff; ++i) d *= 2;
  d = std::min(d, options_.max_backoff);
  std::uniform_real_distribution<double> jitter(0.5, 1.5);
  return d * jitter(rng_);
}

void DeliveryScheduler::FinishLocked(int64_t seq) {
  auto it = messages_.find(seq);
  if (it == messages_.end()) return;
  Message& m = it->second;
  Recipient& r = recipients_[m.header.recipient];
  if (m.ready) r.ready.erase({m.next_attempt, seq});
  if (m.in_flight && m.holder != nullptr) {
    invisible_.erase({m.visible_at, seq});
    ReleaseHolderLocked(m);
    if (r.in_flight > 0) --r.in_flight;
  }
  expiry_.erase({m.header.expires_at, seq});
  by_key_.erase(Key(m.header.sender, m.header.message_id));
  if (!m.order_key.empty()) {
    auto q_it = order_.find(m.order_key);
    if (q_it != order_.end()) {
      std::deque<int64_t>& q = q_it->second;
      const bool was_head = !q.empty() && q.front() == seq;
      q.erase(std::remove(q.begin(), q.end(), seq), q.end());
      if (q.empty()) {
        order_.erase(q_it);
      } else if (was_head) {
        auto next = messages_.find(q.front());
        if (next != messages_.end() && !next->second.ready && !next->second.in_flight) {
          MakeReadyLocked(next->second, absl::Now());
        }
      }
    }
  }
  messages_.erase(it);
  wake_ = true;
}

void DeliveryScheduler::ReleaseHolderLocked(Message& m) {
  if (m.holder == nullptr) return;
  Recipient& r = recipients_[m.header.recipient];
  for (ConsumerSlot& slot : r.consumers) {
    if (slot.consumer == m.holder && slot.unacked > 0) --slot.unacked;
  }
  m.holder = nullptr;
}

void DeliveryScheduler::ExpireLocked(Message& m, std::string error) {
  if (error.empty()) error = "the retry window ended before the message was delivered";
  Log(LogLevel::kWarning, "melding_expired",
      {{"message_id", m.header.message_id}, {"sender", m.header.sender},
       {"recipient", m.header.recipient}, {"attempts", absl::StrCat(m.header.attempts)},
       {"last_error", error}});
  store_->MarkExpired(m.header.seq, m.header.attempts, std::move(error), nullptr);
  FinishLocked(m.header.seq);
}

void DeliveryScheduler::FailLocked(Message& m, absl::Time now, std::string error) {
  m.header.last_error = error;
  if (now >= m.header.expires_at) return ExpireLocked(m, std::move(error));
  store_->RecordAttempt(m.header.seq, m.header.attempts, std::move(error), nullptr);
  MakeReadyLocked(m, std::min(now + Backoff(m.header.attempts), m.header.expires_at));
}

void DeliveryScheduler::DispatchLocked(absl::Time now, std::vector<PushCall*>* pushes) {
  for (auto& [oin, r] : recipients_) {
    r.blocked = false;
    if (r.ready.empty() || r.ready.begin()->first > now || r.hold_until > now) continue;
    if (r.in_flight >= options_.max_in_flight_per_recipient) continue;
    const Route route = routes_(oin);
    while (!r.ready.empty() && r.ready.begin()->first <= now &&
           r.in_flight < options_.max_in_flight_per_recipient) {
      ConsumerSlot* slot = nullptr;
      if (!route.push) {
        for (size_t i = 0; i < r.consumers.size() && slot == nullptr; ++i) {
          ConsumerSlot& candidate = r.consumers[(r.next_consumer + i) % r.consumers.size()];
          if (candidate.unacked < candidate.max_unacked) slot = &candidate;
        }
        if (slot == nullptr) {  // nobody to hand it to now
          r.blocked = true;
          break;
        }
        ++r.next_consumer;
      }
      const int64_t seq = r.ready.begin()->second;
      r.ready.erase(r.ready.begin());
      Message& m = messages_.at(seq);
      m.ready = false;
      if (now >= m.header.expires_at) {
        ExpireLocked(m, m.header.last_error);
        continue;
      }
      m.in_flight = true;
      ++m.header.attempts;
      ++r.in_flight;
      if (route.push) {
        auto call = std::make_shared<PushCall>();
        call->seq = seq;
        call->recipient = oin;
        call->envelope = m.envelope;
        call->target = route.target;
        calls_[call.get()] = call;
        pushes->push_back(call.get());
      } else {
        ++slot->unacked;
        m.holder = slot->consumer;
        m.visible_at = now + options_.visibility_timeout;
        invisible_.insert({m.visible_at, seq});
        slot->consumer->Offer(m.envelope);
      }
    }
  }
}

void DeliveryScheduler::Run() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    wake_ = false;
    const absl::Time now = absl::Now();
    // Expiry of messages waiting (in flight ones are decided when their attempt ends).
    for (auto it = expiry_.begin(); it != expiry_.end() && it->first <= now;) {
      const int64_t seq = it->second;
      ++it;
      auto m = messages_.find(seq);
      if (m != messages_.end() && !m->second.in_flight) ExpireLocked(m->second, m->second.header.last_error);
    }
    // Pulled and not acknowledged in time: hand out again.
    while (!invisible_.empty() && invisible_.begin()->first <= now) {
      const int64_t seq = invisible_.begin()->second;
      invisible_.erase(invisible_.begin());
      auto it = messages_.find(seq);
      if (it == messages_.end()) continue;
      Message& m = it->second;
      ReleaseHolderLocked(m);
      m.in_flight = false;
      Recipient& r = recipients_[m.header.recipient];
      if (r.in_flight > 0) --r.in_flight;
      FailLocked(m, now, "not acknowledged within the visibility timeout");
    }
    if (now >= next_claim_) {
      next_claim_ = now + options_.claim_interval;
      mu_.Unlock();
      absl::StatusOr<std::vector<store::MessageRecord>> claimed = Claim();
      mu_.Lock();
      if (!claimed.ok()) {
        Log(LogLevel::kWarning, "delivery_claim_failed",
            {{"error", std::string(claimed.status().message())}});
      } else {
        for (store::MessageRecord& r : *claimed) {
          if (!messages_.contains(r.seq)) AddLocked(std::move(r), nullptr);
        }
      }
      continue;
    }
    std::vector<PushCall*> pushes;
    DispatchLocked(now, &pushes);
    if (!pushes.empty()) {
      mu_.Unlock();
      for (PushCall* call : pushes) {
        call->stub = endpoints_->StubFor(call->target);
        call->context.set_deadline(absl::ToChronoTime(absl::Now() + options_.attempt_timeout));
        call->context.AddMetadata("knooppunt-agreement-id", call->envelope->agreement_id());
        call->context.AddMetadata("knooppunt-sender-oin", call->envelope->sender());
        call->context.AddMetadata("traceparent", call->envelope->trace().traceparent());
        call->stub->async()->Deliver(&call->context, call->envelope.get(), &call->response,
                                     [this, call](grpc::Status s) { OnPushDone(call, s); });
      }
      mu_.Lock();
      continue;
    }
    if (wake_) continue;
    absl::Time next = absl::InfiniteFuture();
    for (auto& [oin, r] : recipients_) {
      if (!r.ready.empty() && !r.blocked && r.in_flight < options_.max_in_flight_per_recipient) {
        next = std::min(next, std::max(r.ready.begin()->first, r.hold_until));
      }
    }
    for (const auto& [at, seq] : expiry_) {
      auto it = messages_.find(seq);
      if (it != messages_.end() && !it->second.in_flight) {
        next = std::min(next, at);
        break;
      }
    }
    if (!invisible_.empty()) next = std::min(next, invisible_.begin()->first);
    next = std::min(next, next_claim_);
    mu_.AwaitWithDeadline(absl::Condition(&wake_), next);
  }
}

void DeliveryScheduler::OnPushDone(PushCall* call, const grpc::Status& status) {
  std::shared_ptr<PushCall> keep;  // released after the lock: may destroy the context
  store::MessageRecord attempt;  // for the attempt hook, outside the lock
  bool attempted = false;
  {
    absl::MutexLock lock(&mu_);
    auto owned = calls_.find(call);
    if (owned != calls_.end()) {
      keep = std::move(owned->second);
      calls_.erase(owned);
    }
    Recipient& r = recipients_[call->recipient];
    if (r.in_flight > 0) --r.in_flight;
    wake_ = true;
    auto it = messages_.find(call->seq);
    if (it != messages_.end() && it->second.in_flight) {
      Message& m = it->second;
      m.in_flight = false;
      const absl::Time now = absl::Now();
      if (status.ok()) {
        r.consecutive_failures = 0;
        r.hold_until = absl::InfinitePast();
        store::MessageRecord header = m.header;
        header.delivered_at = now;
        FinishLocked(call->seq);
        store_->MarkDelivered(header.seq, now, header.attempts, nullptr);
        attempt = std::move(header);
      } else {
        ++r.consecutive_failures;
        r.hold_until = std::max(r.hold_until, now + Backoff(r.consecutive_failures));
        attempt = m.header;  // before FailLocked, which may expire and drop the message
        FailLocked(m, now,
                   absl::StrCat("Deliver to ", call->target.address, ": ",
                                status.error_code(), " ", status.error_message()));
      }
      attempted = true;
    }
  }
  if (attempted && attempt_hook_) attempt_hook_(attempt, *call->envelope, status);
}

void DeliveryScheduler::AddConsumer(const std::string& recipient_oin, Consumer* consumer,
                                    uint32_t max_unacked) {
  absl::MutexLock lock(&mu_);
  if (max_unacked == 0 || max_unacked > options_.max_in_flight_per_recipient) {
    max_unacked = options_.max_in_flight_per_recipient;
  }
  recipients_[recipient_oin].consumers.push_back({consumer, max_unacked, 0});
  if (stopping_) consumer->Close();
  wake_ = true;
}

void DeliveryScheduler::RemoveConsumer(const std::string& recipient_oin, Consumer* consumer) {
  absl::MutexLock lock(&mu_);
  auto it = recipients_.find(recipient_oin);
  if (it == recipients_.end()) return;
  auto& consumers = it->second.consumers;
  consumers.erase(std::remove_if(consumers.begin(), consumers.end(),
                                 [consumer](const ConsumerSlot& s) { return s.consumer == consumer; }),
                  consumers.end());
  // What it holds stays invisible until its visibility timeout (it may still be acked).
  for (auto& [seq, m] : messages_) {
    if (m.holder == consumer) m.holder = nullptr;
  }
}

void DeliveryScheduler::Ack(const std::string& caller_oin, const std::string& sender,
                            const std::string& message_id, std::function<void(absl::Status)> done) {
  enum { kUnknown, kNotTheRecipient, kAcknowledged } found = kUnknown;
  store::MessageRecord header;
  std::shared_ptr<const exchange::v1::Envelope> envelope;
  {
    absl::MutexLock lock(&mu_);
    auto key = by_key_.find(Key(sender, message_id));
    if (key != by_key_.end()) {
      Message& m = messages_.at(key->second);
      if (m.header.recipient != caller_oin) {
        found = kNotTheRecipient;
      } else {
        if (m.in_flight && m.holder == nullptr && m.visible_at != absl::Time()) {
          // Handed to a stream that has gone: release its in-flight slot.
          invisible_.erase({m.visible_at, m.header.seq});
          Recipient& r = recipients_[m.header.recipient];
          if (r.in_flight > 0) --r.in_flight;
          m.in_flight = false;
        }
        header = m.header;
        envelope = m.envelope;
        header.delivered_at = absl::Now();
        FinishLocked(header.seq);
        store_->MarkDelivered(header.seq, header.delivered_at, header.attempts,
                              [done](absl::Status s) { done(s); });
        found = kAcknowledged;
      }
    }
  }
  if (found == kNotTheRecipient) {
    done(absl::NotFoundError("no such message for this recipient"));
    return;
  }
  if (found == kAcknowledged) {
    if (attempt_hook_) attempt_hook_(header, *envelope, grpc::Status::OK);
    return;
  }
  store_->Find(sender, message_id,
               [caller_oin, done = std::move(done)](absl::StatusOr<store::MessageRecord> r) {
                 if (!r.ok()) {
                   done(absl::IsNotFound(r.status())
                            ? absl::NotFoundError("no such message for this recipient")
                            : r.status());
                 } else if (r->recipient != caller_oin) {
                   done(absl::NotFoundError("no such message for this recipient"));
                 } else if (r->state == store::MessageState::kExpired) {
                   done(absl::FailedPreconditionError(
                       "the message expired before it was acknowledged"));
                 } else {
                   done(absl::OkStatus());  // delivered (acknowledged) already
                 }
               });
}

void DeliveryScheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable() && calls_.empty()) return;
    stopping_ = true;
    wake_ = true;
    for (auto& [oin, r] : recipients_) {
      for (ConsumerSlot& slot : r.consumers) slot.consumer->Close();
    }
  }
  if (thread_.joinable()) thread_.join();
  // No new pushes start now; cancel those in flight (outside the lock: a cancelled call's
  // callback takes it) and wait for their callbacks.
  std::vector<std::shared_ptr<PushCall>> in_flight;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [raw, call] : calls_) in_flight.push_back(call);
  }
  for (auto& call : in_flight) call->context.TryCancel();
  in_flight.clear();
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](absl::flat_hash_map<PushCall*, std::shared_ptr<PushCall>>* calls) {
        return calls->empty();
      },
      &calls_));
}

}  // namespace knooppunt::delivery
