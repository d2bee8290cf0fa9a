// The MessageStore for several gateway replicas sharing one PostgreSQL database (libpq,
// gateway/common/pg_util.h). Chosen by config (melding.postgres); the embedded default is
// sqlite_message_store.h.
//
// Guarantees (beyond MessageStore's, which all hold with any number of replicas):
//  - Group commit as group_commit_store.h gives it: one writer thread runs every queued
//    operation in one transaction; `done` is called (on the completion thread, in order) only
//    after COMMIT returned — with synchronous_commit on (the server's default, never changed
//    here) the batch is then durable on the database server. An operation whose statement
//    fails for a reason of its own (not the connection) is taken out of the batch and fails
//    alone; the others are run again without it. A deadlock or serialization failure re-runs
//    the batch.
//  - Idempotency across replicas: (sender, message_id) is UNIQUE in the database; an Append
//    racing another replica's Append of the same key waits for it (INSERT ... ON CONFLICT)
//    and then answers duplicate or ALREADY_EXISTS exactly as for a local duplicate.
//  - Fail closed: when the database is lost, the batch in progress and every later operation
//    fail with UNAVAILABLE (Append → Send refused) until a reconnect succeeds; reconnecting is
//    tried on later operations, at most once per connect_timeout. No reopening needed. A
//    COMMIT whose outcome is unknown (connection lost during it) is reported UNAVAILABLE; the
//    next ClaimWork() then returns every pending message this replica owns, so a message that
//    was committed after all is still delivered (the scheduler skips those it already has).
//  - Ownership: every pending message has one owner, a replica (instance_id). Append makes
//    this replica the owner (AppendResult::owned) — except when a pending message with the
//    same order key (sender, recipient, non-empty correlation_id) is owned by another replica:
//    then the new one is given to that replica too (owned = false; it learns of it at its next
//    ClaimWork), so one replica delivers a conversation, in seq order. Likewise (owned = false,
//    though this replica owns it) while the conversation's latest message waits for this
//    replica's next claim: the new one comes with it, after it. Appends of one order
//    key are serialised by a transaction-scoped advisory lock, so two replicas cannot both
//    start owning one conversation; an owner's replicas row is locked FOR KEY SHARE while a
//    message is given to it, so a takeover cannot miss it.
//  - Leases: each replica has a row in meldingen_replicas whose lease_until (database clock)
//    every ClaimWork() renews to now + lease. A replica whose lease lapsed is taken over as a
//    whole by the first live replica that claims (its row locked FOR UPDATE SKIP LOCKED, so
//    only one takes it): all its pending messages get the new owner, in one transaction, and
//    its row is deleted. Close() ends this replica's lease at once, so others take over
//    without waiting for it to lapse.
//  - Stats() counts the pending messages of the whole database (the shared queue: the
//    back-pressure limits apply to all replicas together). The count is read from the
//    database at every ClaimWork() and after a reconnect, and kept up to date with this
//    replica's own operations in between, so another replica's recent Appends may be missed
//    for up to one claim interval (the limit is approximate by that much).
//  - Final messages older than retain_final are deleted in small transactions, by any replica.
//
// Limits:
//  - A replica paused (or cut off from the database) longer than its lease loses its messages
//    to another replica, but may still deliver those it held in memory when it resumes, so a
//    message can be delivered twice, and two replicas may then each have one message of a
//    conversation in delivery. At-least-once delivery with deduplication by (sender,
//    message_id) at the recipient allows the former; keep the lease well above the longest
//    expected pause (GC-free C++, but VM or container freezes).
//  - A conversation whose meldingen reach several replicas is delivered by its owner alone:
//    those accepted elsewhere (and the owner's own that follow them) wait for the owner's
//    next claim, up to a claim interval (lease/3) of extra latency.
//  - Two gateways must never share an instance_id (they would be one owner): Open() refuses
//    (FAILED_PRECONDITION) while another session holds this instance_id's advisory lock,
//    which every connection of the store takes (released by the server when the session
//    ends). A replica cut off by a network fault may have to wait, after the database is
//    reachable again, until the server drops its old session (TCP keepalive) to reconnect.
//  - seq comes from one database sequence: it orders the messages of one order key exactly
//    (their Appends are serialised); between unrelated messages of concurrent transactions it
//    is the order the values were drawn, not the commit order.
#ifndef KNOOPPUNT_GATEWAY_STORE_PG_MESSAGE_STORE_H_
#define KNOOPPUNT_GATEWAY_STORE_PG_MESSAGE_STORE_H_

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gateway/common/pg_util.h"
#include "gateway/store/group_commit_store.h"

namespace knooppunt::store {

struct PgStoreOptions {
  pg::ConnectOptions connect;  // connect_timeout is also the pause between reconnects
  std::string instance_id;     // this replica (required)
  absl::Duration lease = absl::Seconds(30);
  uint64_t max_pending_messages = 1000000;
  uint64_t max_pending_bytes = uint64_t{1} << 30;
  size_t max_batch = 1024;  // operations per transaction
  absl::Duration retain_final = absl::Hours(24 * 30);  // 0: kept forever
  absl::Duration purge_every = absl::Minutes(1);
};

class PgMessageStore final : public GroupCommitStore {
 public:
  // Connects, applies the "meldingen" schema migrations, registers this replica (a fresh
  // lease) and starts the writer thread. UNAVAILABLE when the database cannot be reached.
  static absl::StatusOr<std::unique_ptr<PgMessageStore>> Open(PgStoreOptions options);
  ~PgMessageStore() override;  // Close()s first

  // Renews the lease, takes over replicas whose lease lapsed, and returns (with envelopes, in
  // seq order) the pending messages this replica owns and has not been handed yet: at the
  // first call (and after a failure) all it owns. Waits for the writer thread.
  absl::StatusOr<std::vector<MessageRecord>> ClaimWork() override;

  const std::string& instance_id() const { return options_.instance_id; }

 private:
  struct Attempt;
  explicit PgMessageStore(PgStoreOptions options);
  void RunBatch(std::deque<Op>& batch) override;
  void BetweenBatches() override { PurgeFinal(absl::Now()); }
  void AfterClose() override;  // ends this replica's lease, disconnects
  // One try at running the not yet excluded ops of `batch` in one transaction.
  absl::Status TryBatch(std::deque<Op>& batch, Attempt& attempt);
  void RunClaim(Op& op);
  absl::StatusOr<std::vector<MessageRecord>> ClaimTransaction();
  absl::Status EnsureConnected();
  void DropConnection();
  absl::Status LockInstance();  // the session lock on instance_id
  void Recount();
  void RefreshOldestPending();
  void PurgeFinal(absl::Time now);

  const PgStoreOptions options_;
  std::unique_ptr<pg::Connection> conn_;  // writer thread only (and Open/Close)
  absl::Time next_connect_ = absl::InfinitePast();
  std::string last_connect_error_;
  bool reclaim_all_ = true;  // writer thread: the next claim returns everything owned
  absl::Time next_purge_ = absl::InfinitePast();
};

}  // namespace knooppunt::store

#endif  // KNOOPPUNT_GATEWAY_STORE_PG_MESSAGE_STORE_H_
