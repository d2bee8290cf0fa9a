// Step 7 of a melding's path: deliver. Takes accepted meldingen (from the MessageStore) to
// their recipients — pushed to the recipient's endpoint (Endpoint.Deliver) or handed to the
// recipient's open Exchange.Receive streams — until delivered or the retry window ends.
//
// Guarantees:
//  - At least once: a message leaves the scheduler only when delivered (Deliver returned OK,
//    or the recipient acknowledged it) or expired; both are recorded in the store. After a
//    crash the store's pending messages are claimed again (MessageStore::ClaimWork, at start
//    and every claim_interval — which also picks up a stopped replica's messages when the
//    store is shared) and delivered again, after the claim hook has put them on record.
//  - Retries with exponential backoff (initial_backoff doubling up to max_backoff, jitter
//    ±50%) until the message's expires_at; then it is marked expired. A push recipient whose
//    endpoint fails is also held as a whole for the same backoff over its consecutive
//    failures, so a large backlog is probed, not hammered, while the endpoint is down.
//  - At most max_in_flight_per_recipient concurrent deliveries (push) or unacknowledged
//    messages (pull) per recipient.
//  - Order: of the messages with the same sender, recipient and non-empty correlation_id,
//    only the oldest undelivered one (lowest seq) is in delivery at any time, so they are
//    delivered in acceptance order. Messages without correlation_id are independent.
//  - Pull: a message handed out and not acknowledged within visibility_timeout is handed
//    out again.
//  - No thread blocks on a delivery: pushes are asynchronous gRPC calls; one scheduler
//    thread does the bookkeeping and timing.
#ifndef KNOOPPUNT_GATEWAY_DELIVERY_DELIVERY_SCHEDULER_H_
#define KNOOPPUNT_GATEWAY_DELIVERY_DELIVERY_SCHEDULER_H_

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/forward/endpoint_channels.h"
#include "gateway/store/message_store.h"
#include "knooppunt/exchange/v1/envelope.pb.h"

namespace knooppunt::delivery {

struct DeliveryOptions {
  uint32_t max_in_flight_per_recipient = 16;
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Minutes(5);
  absl::Duration attempt_timeout = absl::Seconds(30);
  absl::Duration visibility_timeout = absl::Seconds(60);
  // How often the store is asked for work this gateway has become responsible for besides its
  // own Sends (MessageStore::ClaimWork: messages taken over from a stopped replica).
  absl::Duration claim_interval = absl::Seconds(5);
};

// Called with messages the store handed this gateway (ClaimWork) before any of them is
// delivered — at start, what survived a restart; later, what was taken over from a stopped
// replica. Their decision records may have been lost with the gateway that accepted them,
// so this puts them on record again; until it returns OK they are not delivered (at start,
// the scheduler does not start). Called on the scheduler's thread (or Start's caller), with
// no lock held; it may wait.
using ClaimHook = std::function<absl::Status(const std::vector<store::MessageRecord>& claimed)>;

// How a recipient is reached now (resolved at every attempt, so registry changes apply).
struct Route {
  bool push = false;               // false: pull (the recipient calls Receive)
  forward::EndpointTarget target;  // for push
};
using RouteResolver = std::function<Route(const std::string& recipient_oin)>;

// An open Exchange.Receive stream of a recipient.
class Consumer {
 public:
  virtual ~Consumer() = default;
  // Hands a message to the stream. Called with the scheduler's lock held: must not block
  // and must not call back into the scheduler.
  virtual void Offer(std::shared_ptr<const exchange::v1::Envelope> envelope) = 0;
  // The scheduler stops (gateway shutdown): end the stream. Same rules as Offer.
  virtual void Close() = 0;
};

// Called after every delivery attempt with the message's header (attempts set; delivered_at
// set when delivered), its envelope and the attempt's outcome: OK for a push that succeeded
// or an Ack, the endpoint's error for a failed push. On the thread that saw the outcome,
// outside the scheduler's lock (for the audit record of each attempt; it must not block and
// must not call back into the scheduler).
using AttemptHook = std::function<void(const store::MessageRecord& header,
                                       const exchange::v1::Envelope& envelope,
                                       const grpc::Status& outcome)>;

class DeliveryScheduler {
 public:
  DeliveryScheduler(store::MessageStore* store, forward::EndpointChannels* endpoints,
                    RouteResolver routes, DeliveryOptions options);
  ~DeliveryScheduler();

  // Claims the store's pending work (ClaimWork), puts it on record (the claim hook), and
  // starts the scheduler thread; an error of either leaves it not started.
  absl::Status Start();

  // A message just accepted (durable in the store and its decision on record). Messages of
  // one order key are delivered in the order they are enqueued: for a sender that waits for
  // each Receipt before the next Send, the order it sent them in. `envelope` may be null:
  // then record.envelope is parsed.
  void Enqueue(store::MessageRecord record, std::shared_ptr<const exchange::v1::Envelope> envelope);

  void AddConsumer(const std::string& recipient_oin, Consumer* consumer, uint32_t max_unacked);
  // After it returns, the consumer is not called again.
  void RemoveConsumer(const std::string& recipient_oin, Consumer* consumer);

  // The recipient `caller_oin` acknowledges (sender, message_id). `done` gets OK, NOT_FOUND
  // or FAILED_PRECONDITION (expired); called on another thread once recorded.
  void Ack(const std::string& caller_oin, const std::string& sender,
           const std::string& message_id, std::function<void(absl::Status)> done);

  void set_attempt_hook(AttemptHook hook) { attempt_hook_ = std::move(hook); }
  // Before Start().
  void set_claim_hook(ClaimHook hook) { claim_hook_ = std::move(hook); }

  // Closes consumers, cancels deliveries in flight and waits for them; idempotent.
  void Stop();

  size_t pending() const;

 private:
  struct Message {
    store::MessageRecord header;  // envelope bytes dropped after parsing
    std::shared_ptr<const exchange::v1::Envelope> envelope;
    std::string order_key;        // empty: unordered
    absl::Time next_attempt;
    bool ready = false;           // in its recipient's ready set
    bool in_flight = false;
    Consumer* holder = nullptr;   // pull: the stream it was handed to
    absl::Time visible_at;        // pull, in flight: when it is handed out again
  };
  struct ConsumerSlot {
    Consumer* consumer;
    uint32_t max_unacked;
    uint32_t unacked = 0;
  };
  struct Recipient {
    std::set<std::pair<absl::Time, int64_t>> ready;  // (next_attempt, seq)
    uint32_t in_flight = 0;
    std::vector<ConsumerSlot> consumers;
    size_t next_consumer = 0;
    bool blocked = false;  // pull, and no stream can take more: wait for a consumer or an Ack
    // Push: after a failed attempt, the whole recipient rests (backoff on consecutive
    // failures), so a backlog does not hammer an endpoint that is down.
    int consecutive_failures = 0;
    absl::Time hold_until = absl::InfinitePast();
  };
  struct PushCall;

  void Run();
  // ClaimWork, then the claim hook over everything claimed and not yet on record; returns
  // what may be delivered now. Scheduler thread (or Start) only, no lock held.
  absl::StatusOr<std::vector<store::MessageRecord>> Claim();
  void AddLocked(store::MessageRecord record, std::shared_ptr<const exchange::v1::Envelope> env)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void MakeReadyLocked(Message& m, absl::Time at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DispatchLocked(absl::Time now, std::vector<PushCall*>* pushes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Removes a final message and lets the next of its order key become ready.
  void FinishLocked(int64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FailLocked(Message& m, absl::Time now, std::string error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ExpireLocked(Message& m, std::string error) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ReleaseHolderLocked(Message& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnPushDone(PushCall* call, const grpc::Status& status);
  absl::Duration Backoff(int attempts) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  store::MessageStore* const store_;
  forward::EndpointChannels* const endpoints_;
  const RouteResolver routes_;
  const DeliveryOptions options_;
  AttemptHook attempt_hook_;
  ClaimHook claim_hook_;
  std::vector<store::MessageRecord> unrecorded_;  // claimed, hook not yet OK (Claim() only)

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool wake_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<int64_t, Message> messages_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_map<std::string, int64_t> by_key_ ABSL_GUARDED_BY(mu_);  // sender\x1fid
  absl::flat_hash_map<std::string, std::deque<int64_t>> order_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Recipient> recipients_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, int64_t>> expiry_ ABSL_GUARDED_BY(mu_);
  std::set<std::pair<absl::Time, int64_t>> invisible_ ABSL_GUARDED_BY(mu_);  // pull in flight
  absl::flat_hash_map<PushCall*, std::shared_ptr<PushCall>> calls_ ABSL_GUARDED_BY(mu_);
  std::mt19937_64 rng_ ABSL_GUARDED_BY(mu_);
  absl::Time next_claim_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::thread thread_;
};

}  // namespace knooppunt::delivery

#endif  // KNOOPPUNT_GATEWAY_DELIVERY_DELIVERY_SCHEDULER_H_
