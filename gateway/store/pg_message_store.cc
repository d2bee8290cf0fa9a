#include "gateway/store/pg_message_store.h"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/log.h"

namespace knooppunt::store {
namespace {

// Version 1 of the "meldingen" schema. Times are unix microseconds (bigint); INT64_MAX is
// "never" (expires_at of a message without retry window end).
constexpr char kSchemaV1[] = R"sql(
CREATE TABLE meldingen (
  seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  sender text NOT NULL,
  message_id text NOT NULL,
  recipient text NOT NULL,
  correlation_id text NOT NULL,
  agreement_id text NOT NULL,
  content_hash bytea NOT NULL,
  envelope bytea,
  size bigint NOT NULL,
  state smallint NOT NULL,
  accepted_at bigint NOT NULL,
  expires_at bigint NOT NULL,
  delivered_at bigint,
  attempts integer NOT NULL DEFAULT 0,
  last_error text NOT NULL DEFAULT '',
  owner text NOT NULL,
  handed boolean NOT NULL,
  UNIQUE (sender, message_id));
CREATE INDEX meldingen_pending ON meldingen (seq) WHERE state = 1;
CREATE INDEX meldingen_pending_owner ON meldingen (owner, seq) WHERE state = 1;
CREATE INDEX meldingen_pending_key ON meldingen (sender, recipient, correlation_id, seq)
  WHERE state = 1 AND correlation_id <> '';
CREATE INDEX meldingen_final ON meldingen (accepted_at) WHERE state <> 1;
CREATE TABLE meldingen_replicas (
  instance_id text PRIMARY KEY,
  lease_until timestamptz NOT NULL);
)sql";

constexpr char kColumns[] =
    "seq, sender, message_id, recipient, correlation_id, agreement_id, content_hash, size, "
    "state, accepted_at, expires_at, delivered_at, attempts, last_error";

// Namespace (first key) of the advisory locks that serialise Appends of one order key.
constexpr int kOrderKeyLockSpace = 0x4b4e;  // "KN"
// ... and of the session lock a replica holds on its instance_id.
constexpr int kInstanceLockSpace = 0x4b4f;

using internal::FromMicros;
using internal::Micros;

// A row selected with kColumns (and optionally the envelope as column 14).
MessageRecord ReadRow(const pg::Result& r, int row, bool with_envelope) {
  MessageRecord m;
  m.seq = r.Int(row, 0);
  m.sender = std::string(r.Text(row, 1));
  m.message_id = std::string(r.Text(row, 2));
  m.recipient = std::string(r.Text(row, 3));
  m.correlation_id = std::string(r.Text(row, 4));
  m.agreement_id = std::string(r.Text(row, 5));
  m.content_hash = r.Bytes(row, 6);
  m.state = static_cast<MessageState>(r.Int(row, 8));
  m.accepted_at = FromMicros(r.Int(row, 9));
  m.expires_at = FromMicros(r.Int(row, 10));
  m.delivered_at = r.IsNull(row, 11) ? absl::InfinitePast() : FromMicros(r.Int(row, 11));
  m.attempts = static_cast<int>(r.Int(row, 12));
  m.last_error = std::string(r.Text(row, 13));
  if (with_envelope) m.envelope = r.Bytes(row, 14);
  return m;
}

// An advisory lock's key (order key, instance_id): FNV-1a over its bytes (the same in every
// replica), computed here rather than by the server so that a key the server would refuse
// (not UTF-8) fails only the Append that carries it, in its own statements.
int32_t Fnv1a32(const std::string& key) {
  uint32_t h = 2166136261u;
  for (unsigned char c : key) {
    h ^= c;
    h *= 16777619u;
  }
  return static_cast<int32_t>(h);
}

std::string OrderKey(const MessageRecord& r) {
  return absl::StrCat(r.sender, "\x1f", r.recipient, "\x1f", r.correlation_id);
}

absl::Status Unavailable(const absl::Status& s) {
  if (absl::StartsWith(s.message(), "melding store")) return absl::UnavailableError(s.message());
  return absl::UnavailableError(absl::StrCat("melding store: ", s.message()));
}

}  // namespace

// One try of a batch's transaction; what it changed of the pending set is applied to the
// counters only when it commits.
struct PgMessageStore::Attempt {
  std::vector<bool> excluded;  // ops failed on their own: not run again
  int failed_op = -1;          // the op whose statement failed this try (-1: the batch's)
  int64_t pending_delta = 0;
  int64_t bytes_delta = 0;
  bool pending_changed = false;
};

PgMessageStore::PgMessageStore(PgStoreOptions options)
    : GroupCommitStore(Limits{options.max_pending_messages, options.max_pending_bytes,
                              options.max_batch, options.purge_every}),
      options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<PgMessageStore>> PgMessageStore::Open(PgStoreOptions options) {
  if (options.instance_id.empty()) {
    return absl::InvalidArgumentError("melding store (PostgreSQL): instance_id is required");
  }
  if (options.lease <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("melding store (PostgreSQL): the lease must be positive");
  }
  std::unique_ptr<PgMessageStore> store(new PgMessageStore(std::move(options)));
  auto conn = pg::Connection::Open(store->options_.connect);
  if (!conn.ok()) return Unavailable(conn.status());
  store->conn_ = *std::move(conn);
  // One gateway per instance_id. Just after a crash the server may briefly still hold the
  // dead process's session (and lock): a few tries before refusing.
  absl::Status locked = store->LockInstance();
  for (int tries = 0; absl::IsFailedPrecondition(locked) && tries < 25; ++tries) {
    absl::SleepFor(absl::Milliseconds(200));
    locked = store->LockInstance();
  }
  if (!locked.ok()) {
    // Not this store's instance to speak for: closing must not end the lease of the gateway
    // that holds it.
    store->conn_.reset();
    return locked;
  }
  if (absl::Status s = pg::ApplyMigrations(*store->conn_, "meldingen", {{1, kSchemaV1}});
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("melding store: ", s.message()));
  }
  // Registered with a fresh lease (the first ClaimWork renews it): from now on this
  // replica's Appends may be given messages and others see it alive.
  auto registered = store->conn_->Exec(
      "INSERT INTO meldingen_replicas (instance_id, lease_until) VALUES ($1, clock_timestamp() "
      "+ $2::bigint * interval '1 microsecond') ON CONFLICT (instance_id) DO UPDATE SET "
      "lease_until = EXCLUDED.lease_until",
      {store->options_.instance_id,
       pg::Param::Int(absl::ToInt64Microseconds(store->options_.lease))});
  if (!registered.ok()) return Unavailable(registered.status());
  store->Recount();
  store->Start();
  return store;
}

PgMessageStore::~PgMessageStore() {
  Close();  // first: the writer thread uses conn_ until it stops
  conn_.reset();
}

void PgMessageStore::AfterClose() {
  // This replica delivers nothing more: its lease ends now, so the others take its messages
  // over at their next claim instead of after the lease (best effort).
  if (conn_ != nullptr && conn_->healthy()) {
    (void)conn_->Exec(
        "UPDATE meldingen_replicas SET lease_until = '-infinity' WHERE instance_id = $1",
        {options_.instance_id});
  }
  conn_.reset();
}

absl::StatusOr<std::vector<MessageRecord>> PgMessageStore::ClaimWork() {
  return ClaimOnWriterThread();  // RunBatch answers it (RunClaim), after the ops before it
}

absl::Status PgMessageStore::LockInstance() {
  // A session-level advisory lock on this instance_id, held by the connection while it
  // lives: the server releases it when the session ends (also when the process is killed).
  auto r = conn_->Exec("SELECT pg_try_advisory_lock($1::integer, $2::integer)",
                       {pg::Param::Int(kInstanceLockSpace),
                        pg::Param::Int(Fnv1a32(options_.instance_id))});
  if (!r.ok()) return Unavailable(r.status());
  if (r->Text(0, 0) != "t") {
    return absl::FailedPreconditionError(absl::StrCat(
        "melding store: another gateway with instance_id \"", options_.instance_id,
        "\" is connected to this database; every replica needs an instance_id of its own"));
  }
  return absl::OkStatus();
}

void PgMessageStore::DropConnection() {
  conn_.reset();
  // A COMMIT cut off may have happened after all (an Append reported UNAVAILABLE, stored and
  // owned here): the next claim hands over everything this replica owns.
  reclaim_all_ = true;
  Log(LogLevel::kWarning, "melding_store_connection_lost",
      {{"instance_id", options_.instance_id},
       {"action", "operations fail (UNAVAILABLE) until a reconnect succeeds"}});
}

absl::Status PgMessageStore::EnsureConnected() {
  if (conn_ != nullptr && conn_->healthy()) return absl::OkStatus();
  if (conn_ != nullptr) DropConnection();
  const absl::Time now = absl::Now();
  if (now < next_connect_) {
    return absl::UnavailableError(absl::StrCat(
        "melding store: the database is unreachable (", last_connect_error_,
        "); retrying the connection"));
  }
  auto conn = pg::Connection::Open(options_.connect);
  if (!conn.ok()) {
    next_connect_ = absl::Now() + options_.connect.connect_timeout;
    last_connect_error_ = std::string(conn.status().message());
    return Unavailable(conn.status());
  }
  conn_ = *std::move(conn);
  if (absl::Status locked = LockInstance(); !locked.ok()) {
    // E.g. the server has not yet noticed that this replica's old session is gone.
    conn_.reset();
    next_connect_ = absl::Now() + options_.connect.connect_timeout;
    last_connect_error_ = std::string(locked.message());
    return absl::UnavailableError(locked.message());
  }
  Log(LogLevel::kInfo, "melding_store_reconnected", {{"instance_id", options_.instance_id}});
  Recount();
  return absl::OkStatus();
}

void PgMessageStore::Recount() {
  auto r = conn_->Exec(
      "SELECT count(*), coalesce(sum(size), 0)::bigint FROM meldingen WHERE state = 1");
  if (!r.ok()) return;
  pending_messages_ = static_cast<uint64_t>(std::max<int64_t>(0, r->Int(0, 0)));
  pending_bytes_ = static_cast<uint64_t>(std::max<int64_t>(0, r->Int(0, 1)));
  RefreshOldestPending();
}

void PgMessageStore::RefreshOldestPending() {
  // The lowest pending seq is (close to) the oldest accepted: one seek in meldingen_pending.
  auto r = conn_->Exec("SELECT accepted_at FROM meldingen WHERE state = 1 ORDER BY seq LIMIT 1");
  if (!r.ok()) return;
  oldest_pending_us_ = r->rows() > 0 ? r->Int(0, 0) : std::numeric_limits<int64_t>::max();
}

void PgMessageStore::PurgeFinal(absl::Time now) {
  if (options_.retain_final <= absl::ZeroDuration() || now < next_purge_) return;
  next_purge_ = now + options_.purge_every;
  if (conn_ == nullptr || !conn_->healthy()) return;  // not worth a reconnect
  // Small transactions (any replica may run them: deleting twice is harmless), so Appends
  // queued meanwhile wait one short commit at most.
  const pg::Param cutoff = pg::Param::Int(Micros(now - options_.retain_final));
  for (int round = 0; round < 100; ++round) {
    auto r = conn_->Exec(
        "DELETE FROM meldingen WHERE seq IN (SELECT seq FROM meldingen WHERE state <> 1 AND "
        "accepted_at < $1 LIMIT 1000)",
        {cutoff});
    if (!r.ok()) {
      Log(LogLevel::kWarning, "melding_purge_failed",
          {{"error", std::string(r.status().message())}});
      return;
    }
    if (r->affected() < 1000) return;
  }
}

void PgMessageStore::RunBatch(std::deque<Op>& batch) {
  // Claims run in transactions of their own, after the batch's other operations.
  std::deque<Op> claims;
  std::deque<Op> ops;
  for (Op& op : batch) (op.kind == Op::kClaim ? claims : ops).push_back(std::move(op));

  if (!ops.empty()) {
    Attempt attempt;
    attempt.excluded.assign(ops.size(), false);
    absl::Status txn = absl::OkStatus();
    for (int aborted = 0;;) {
      attempt.failed_op = -1;
      attempt.pending_delta = attempt.bytes_delta = 0;
      attempt.pending_changed = false;
      for (size_t i = 0; i < ops.size(); ++i) {
        if (attempt.excluded[i]) continue;
        ops[i].status = absl::OkStatus();
        ops[i].appended = AppendResult{};
      }
      txn = EnsureConnected();
      if (txn.ok()) txn = TryBatch(ops, attempt);
      if (txn.ok()) break;
      if (conn_ != nullptr && conn_->healthy()) (void)conn_->Exec("ROLLBACK");
      if (absl::IsUnavailable(txn)) {
        txn = Unavailable(txn);
        if (conn_ != nullptr && !conn_->healthy()) DropConnection();
        break;
      }
      if (absl::IsAborted(txn) && ++aborted < 10) continue;  // deadlock/serialization: again
      if (attempt.failed_op >= 0 && !absl::IsAborted(txn)) {
        // That operation's own statement failed: it fails alone, the others run again.
        ops[attempt.failed_op].status = txn;
        attempt.excluded[attempt.failed_op] = true;
        continue;
      }
      break;
    }
    if (txn.ok()) {
      ++commits_;
      const auto apply = [](std::atomic<uint64_t>& counter, int64_t delta) {
        const uint64_t v = counter.load();
        const uint64_t d = static_cast<uint64_t>(delta >= 0 ? delta : -delta);
        counter = delta >= 0 ? v + d : (v >= d ? v - d : 0);
      };
      apply(pending_messages_, attempt.pending_delta);
      apply(pending_bytes_, attempt.bytes_delta);
      if (attempt.pending_changed) RefreshOldestPending();
    } else {
      for (size_t i = 0; i < ops.size(); ++i) {
        if (!attempt.excluded[i]) ops[i].status = txn;
      }
    }
    Finish(ops);
  }
  for (Op& op : claims) RunClaim(op);
}

absl::Status PgMessageStore::TryBatch(std::deque<Op>& ops, Attempt& attempt) {
  pg::Connection& c = *conn_;
  const std::string& me = options_.instance_id;
  if (auto r = c.Exec("BEGIN"); !r.ok()) return r.status();

  std::set<int32_t> keys;  // ordered: every batch takes its locks in the same order
  bool appends = false;
  for (size_t i = 0; i < ops.size(); ++i) {
    if (attempt.excluded[i] || ops[i].kind != Op::kAppend) continue;
    appends = true;
    if (!ops[i].record.correlation_id.empty()) keys.insert(Fnv1a32(OrderKey(ops[i].record)));
  }
  if (appends) {
    // This replica's row, pinned (FOR KEY SHARE) until COMMIT: no takeover of this replica
    // can run between giving it messages and their commit. Re-registered if a takeover
    // deleted it (this replica's lease had lapsed: it was presumed dead).
    for (int tries = 0;; ++tries) {
      auto pinned = c.Exec(
          "SELECT 1 FROM meldingen_replicas WHERE instance_id = $1 FOR KEY SHARE", {me});
      if (!pinned.ok()) return pinned.status();
      if (pinned->rows() > 0) break;
      if (tries > 0) return absl::AbortedError("melding store: cannot register this replica");
      Log(LogLevel::kWarning, "melding_replica_reregistered",
          {{"instance_id", me},
           {"reason", "its lease had lapsed and its messages were taken over"}});
      auto registered = c.Exec(
          "INSERT INTO meldingen_replicas (instance_id, lease_until) VALUES ($1, "
          "clock_timestamp() + $2::bigint * interval '1 microsecond') ON CONFLICT DO NOTHING",
          {me, pg::Param::Int(absl::ToInt64Microseconds(options_.lease))});
      if (!registered.ok()) return registered.status();
    }
  }
  if (!keys.empty()) {
    // One conversation's Appends one at a time across replicas (until COMMIT); taken in
    // ascending order (unnest yields the array's order) so two batches cannot deadlock on
    // them.
    std::string array = "{";
    for (int32_t k : keys) absl::StrAppend(&array, array.size() > 1 ? "," : "", k);
    array += "}";
    auto locked = c.Exec(
        "SELECT pg_advisory_xact_lock($1::integer, k) FROM unnest($2::integer[]) AS k",
        {pg::Param::Int(kOrderKeyLockSpace), array});
    if (!locked.ok()) return locked.status();
  }

  // Looks up (sender, message_id): OK with the record, NOT_FOUND, or an error.
  auto find = [&](const std::string& sender, const std::string& id,
                  MessageRecord* out) -> absl::Status {
    auto r = c.Exec(absl::StrCat("SELECT ", kColumns,
                                 " FROM meldingen WHERE sender = $1 AND message_id = $2"),
                    {sender, id});
    if (!r.ok()) return r.status();
    if (r->rows() == 0) return absl::NotFoundError("no such melding");
    *out = ReadRow(*r, 0, false);
    return absl::OkStatus();
  };
  // Who delivers a new message of `r`'s order key: the owner of the key's pending messages,
  // pinned (FOR KEY SHARE on its replicas row) so it cannot be taken over before COMMIT;
  // this replica when there are none. `handed`: whether the owner may be handed it now —
  // not while it has not been handed the key's latest (it is in the owner's next claim, and
  // this one must come after it).
  struct Owner {
    std::string id;
    bool handed = true;
  };
  std::set<std::string> pinned = {me};
  auto owner_of = [&](const MessageRecord& r) -> absl::StatusOr<Owner> {
    if (r.correlation_id.empty()) return Owner{me, true};
    for (int tries = 0; tries < 8; ++tries) {
      auto o = c.Exec(
          "SELECT owner, handed FROM meldingen WHERE state = 1 AND sender = $1 AND "
          "recipient = $2 AND correlation_id = $3 ORDER BY seq DESC LIMIT 1",
          {r.sender, r.recipient, r.correlation_id});
      if (!o.ok()) return o.status();
      if (o->rows() == 0) return Owner{me, true};
      std::string owner(o->Text(0, 0));
      if (owner == me) return Owner{me, o->Text(0, 1) == "t"};
      if (pinned.count(owner) > 0) return Owner{std::move(owner), false};
      // Pin it, then look again: while pinned, its messages keep their owner.
      auto p = c.Exec(
          "SELECT 1 FROM meldingen_replicas WHERE instance_id = $1 FOR KEY SHARE", {owner});
      if (!p.ok()) return p.status();
      if (p->rows() > 0) pinned.insert(std::move(owner));
      // else: just taken over (row deleted); the next look finds the new owner.
    }
    return absl::AbortedError("melding store: the owner of a conversation keeps changing");
  };

  for (size_t i = 0; i < ops.size(); ++i) {
    if (attempt.excluded[i]) continue;
    Op& op = ops[i];
    attempt.failed_op = static_cast<int>(i);
    switch (op.kind) {
      case Op::kAppend: {
        const MessageRecord& r = op.record;
        const int64_t size = static_cast<int64_t>(r.envelope.size());
        const uint64_t pending = static_cast<uint64_t>(
            std::max<int64_t>(0, static_cast<int64_t>(pending_messages_.load()) +
                                     attempt.pending_delta));
        const uint64_t bytes = static_cast<uint64_t>(std::max<int64_t>(
            0, static_cast<int64_t>(pending_bytes_.load()) + attempt.bytes_delta));
        if (Full(pending, bytes, static_cast<uint64_t>(size))) {
          MessageRecord found;
          const absl::Status f = find(r.sender, r.message_id, &found);
          if (absl::Status e = AnswerFull(op, f, found); !e.ok()) return e;
          break;
        }
        absl::StatusOr<Owner> owner = owner_of(r);
        if (!owner.ok()) return owner.status();
        // Handed to the caller's delivery now, or to its owner's next claim.
        const bool mine = owner->id == me && owner->handed;
        auto inserted = c.Exec(
            "INSERT INTO meldingen (sender, message_id, recipient, correlation_id, agreement_id, "
            "content_hash, envelope, size, state, accepted_at, expires_at, owner, handed) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12) "
            "ON CONFLICT (sender, message_id) DO NOTHING RETURNING seq",
            {r.sender, r.message_id, r.recipient, r.correlation_id, r.agreement_id,
             pg::Param::Bytes(r.content_hash), pg::Param::Bytes(r.envelope),
             pg::Param::Int(size), pg::Param::Int(Micros(r.accepted_at)),
             pg::Param::Int(Micros(r.expires_at)), owner->id, mine ? "true" : "false"});
        if (!inserted.ok()) return inserted.status();
        if (inserted->rows() == 1) {
          op.appended.record = r;
          op.appended.record.seq = inserted->Int(0, 0);
          op.appended.record.state = MessageState::kAccepted;
          op.appended.record.attempts = 0;
          op.appended.record.delivered_at = absl::InfinitePast();
          op.appended.record.last_error.clear();
          op.appended.owned = mine;
          ++attempt.pending_delta;
          attempt.bytes_delta += size;
          attempt.pending_changed = true;
        } else {
          // Stored already (earlier in this batch, or by any replica, committed).
          MessageRecord found;
          absl::Status f = find(r.sender, r.message_id, &found);
          if (!f.ok()) return absl::IsNotFound(f) ? absl::AbortedError("conflict vanished") : f;
          AnswerExisting(op, found);
        }
        break;
      }
      case Op::kAttempt: {
        auto r = c.Exec(
            "UPDATE meldingen SET attempts = $2, last_error = $3 WHERE seq = $1 AND state = 1",
            {pg::Param::Int(op.record.seq), pg::Param::Int(op.record.attempts),
             op.record.last_error});
        if (!r.ok()) return r.status();
        break;
      }
      case Op::kDelivered:
      case Op::kExpired:
      case Op::kDiscard: {
        absl::StatusOr<pg::Result> r;
        if (op.kind == Op::kDelivered) {
          r = c.Exec(
              "UPDATE meldingen SET state = 2, delivered_at = $2, attempts = $3, envelope = NULL "
              "WHERE seq = $1 AND state = 1 RETURNING size",
              {pg::Param::Int(op.record.seq), pg::Param::Int(Micros(op.record.delivered_at)),
               pg::Param::Int(op.record.attempts)});
        } else if (op.kind == Op::kExpired) {
          r = c.Exec(
              "UPDATE meldingen SET state = 3, attempts = $2, last_error = $3, envelope = NULL "
              "WHERE seq = $1 AND state = 1 RETURNING size",
              {pg::Param::Int(op.record.seq), pg::Param::Int(op.record.attempts),
               op.record.last_error});
        } else {
          r = c.Exec("DELETE FROM meldingen WHERE seq = $1 AND state = 1 RETURNING size",
                     {pg::Param::Int(op.record.seq)});
        }
        if (!r.ok()) return r.status();
        if (r->rows() > 0) {
          --attempt.pending_delta;
          attempt.bytes_delta -= r->Int(0, 0);
          attempt.pending_changed = true;
        }
        break;
      }
      case Op::kFind: {
        absl::Status f = find(op.record.sender, op.record.message_id, &op.appended.record);
        if (absl::IsNotFound(f)) {
          op.status = f;
        } else if (!f.ok()) {
          return f;
        }
        break;
      }
      case Op::kClaim:
        break;  // not in a batch
    }
  }
  attempt.failed_op = -1;
  if (auto r = c.Exec("COMMIT"); !r.ok()) return r.status();
  return absl::OkStatus();
}

void PgMessageStore::RunClaim(Op& op) {
  absl::StatusOr<std::vector<MessageRecord>> claimed = absl::UnavailableError("unset");
  for (int aborted = 0;; ++aborted) {
    absl::Status connected = EnsureConnected();
    if (!connected.ok()) {
      claimed = connected;
      break;
    }
    claimed = ClaimTransaction();
    if (claimed.ok()) break;
    if (conn_->healthy()) (void)conn_->Exec("ROLLBACK");
    if (!absl::IsAborted(claimed.status()) || aborted >= 5) break;
  }
  if (claimed.ok()) {
    reclaim_all_ = false;
    Recount();  // the shared queue, for Stats() and back-pressure
  } else {
    // Its COMMIT may have happened unseen (handed set, caller told nothing): next time,
    // everything owned again (the scheduler skips what it already has).
    reclaim_all_ = true;
    if (conn_ != nullptr && !conn_->healthy()) DropConnection();
    if (absl::IsUnavailable(claimed.status())) claimed = Unavailable(claimed.status());
  }
  op.claimed->set_value(std::move(claimed));
}

absl::StatusOr<std::vector<MessageRecord>> PgMessageStore::ClaimTransaction() {
  pg::Connection& c = *conn_;
  const std::string& me = options_.instance_id;
  if (auto r = c.Exec("BEGIN"); !r.ok()) return r.status();
  auto renewed = c.Exec(
      "INSERT INTO meldingen_replicas (instance_id, lease_until) VALUES ($1, clock_timestamp() "
      "+ $2::bigint * interval '1 microsecond') ON CONFLICT (instance_id) DO UPDATE SET "
      "lease_until = EXCLUDED.lease_until",
      {me, pg::Param::Int(absl::ToInt64Microseconds(options_.lease))});
  if (!renewed.ok()) return renewed.status();
  // Replicas whose lease lapsed, each taken over by one live replica (SKIP LOCKED: a row
  // another claimer holds, or one pinned by an Append giving it a message, is left alone).
  auto dead = c.Exec(
      "SELECT instance_id FROM meldingen_replicas WHERE lease_until < clock_timestamp() AND "
      "instance_id <> $1 ORDER BY instance_id FOR UPDATE SKIP LOCKED",
      {me});
  if (!dead.ok()) return dead.status();
  std::vector<std::pair<std::string, int64_t>> taken;
  for (int i = 0; i < dead->rows(); ++i) {
    const std::string other(dead->Text(i, 0));
    auto moved = c.Exec(
        "UPDATE meldingen SET owner = $1, handed = false WHERE state = 1 AND owner = $2",
        {me, other});
    if (!moved.ok()) return moved.status();
    auto gone = c.Exec("DELETE FROM meldingen_replicas WHERE instance_id = $1", {other});
    if (!gone.ok()) return gone.status();
    taken.emplace_back(other, moved->affected());
  }
  auto handed = c.Exec(
      absl::StrCat("WITH c AS (UPDATE meldingen SET handed = true WHERE state = 1 AND owner = $1 "
                   "AND (NOT handed OR $2::boolean) RETURNING ",
                   kColumns, ", envelope) SELECT * FROM c ORDER BY seq"),
      {me, reclaim_all_ ? "true" : "false"});
  if (!handed.ok()) return handed.status();
  std::vector<MessageRecord> out;
  out.reserve(static_cast<size_t>(handed->rows()));
  for (int i = 0; i < handed->rows(); ++i) out.push_back(ReadRow(*handed, i, true));
  if (auto r = c.Exec("COMMIT"); !r.ok()) return r.status();
  for (const auto& [other, n] : taken) {
    Log(LogLevel::kWarning, "melding_replica_taken_over",
        {{"instance_id", me}, {"from", other}, {"messages", absl::StrCat(n)}});
  }
  return out;
}

}  // namespace knooppunt::store
