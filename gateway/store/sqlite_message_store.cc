#include "gateway/store/sqlite_message_store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/log.h"
#include "gateway/common/sqlite_util.h"

namespace knooppunt::store {

std::string NormalizeMessageId(std::string message_id) {
  absl::AsciiStrToLower(&message_id);
  return message_id;
}

namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS meldingen (
  seq INTEGER PRIMARY KEY,
  sender TEXT NOT NULL,
  message_id TEXT NOT NULL,
  recipient TEXT NOT NULL,
  correlation_id TEXT NOT NULL,
  agreement_id TEXT NOT NULL,
  content_hash BLOB NOT NULL,
  envelope BLOB,
  size INTEGER NOT NULL,
  state INTEGER NOT NULL,
  accepted_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  delivered_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  UNIQUE (sender, message_id));
CREATE INDEX IF NOT EXISTS meldingen_pending ON meldingen (seq) WHERE state = 1;
CREATE INDEX IF NOT EXISTS meldingen_final ON meldingen (accepted_at) WHERE state != 1;
)sql";

constexpr char kColumns[] =
    "seq, sender, message_id, recipient, correlation_id, agreement_id, content_hash, size, "
    "state, accepted_at, expires_at, delivered_at, attempts, last_error";

using internal::FromMicros;
using internal::Micros;

std::string Text(sqlite3_stmt* s, int col) { return sqlite::ColumnString(s, col); }

// Reads a row selected with kColumns (and optionally the envelope as column 14).
MessageRecord ReadRow(sqlite3_stmt* s, bool with_envelope) {
  MessageRecord r;
  r.seq = sqlite3_column_int64(s, 0);
  r.sender = Text(s, 1);
  r.message_id = Text(s, 2);
  r.recipient = Text(s, 3);
  r.correlation_id = Text(s, 4);
  r.agreement_id = Text(s, 5);
  r.content_hash = Text(s, 6);
  r.state = static_cast<MessageState>(sqlite3_column_int(s, 8));
  r.accepted_at = FromMicros(sqlite3_column_int64(s, 9));
  r.expires_at = FromMicros(sqlite3_column_int64(s, 10));
  r.delivered_at = sqlite3_column_type(s, 11) == SQLITE_NULL
                       ? absl::InfinitePast()
                       : FromMicros(sqlite3_column_int64(s, 11));
  r.attempts = sqlite3_column_int(s, 12);
  r.last_error = Text(s, 13);
  if (with_envelope) r.envelope = Text(s, 14);
  return r;
}

using sqlite::BindBlob;
using sqlite::BindText;

}  // namespace

struct SqliteMessageStore::Statements {
  sqlite3_stmt* begin = nullptr;
  sqlite3_stmt* commit = nullptr;
  sqlite3_stmt* rollback = nullptr;
  sqlite3_stmt* insert = nullptr;
  sqlite3_stmt* find = nullptr;
  sqlite3_stmt* attempt = nullptr;
  sqlite3_stmt* delivered = nullptr;
  sqlite3_stmt* expired = nullptr;
  sqlite3_stmt* discard = nullptr;
  sqlite3_stmt* oldest = nullptr;
  ~Statements() {
    for (sqlite3_stmt* s :
         {begin, commit, rollback, insert, find, attempt, delivered, expired, discard, oldest}) {
      sqlite3_finalize(s);
    }
  }
};

SqliteMessageStore::SqliteMessageStore(SqliteStoreOptions options)
    : GroupCommitStore(Limits{options.max_pending_messages, options.max_pending_bytes,
                              options.max_batch, options.purge_every}),
      options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<SqliteMessageStore>> SqliteMessageStore::Open(
    SqliteStoreOptions options) {
  std::unique_ptr<SqliteMessageStore> store(new SqliteMessageStore(std::move(options)));
  absl::Status s = store->Init();
  if (!s.ok()) return s;
  store->Start();
  return store;
}

absl::Status SqliteMessageStore::Exec(const char* sql) {
  return sqlite::Exec(db_, sql, absl::StrCat("melding store ", options_.path));
}

absl::Status SqliteMessageStore::Init() {
  // One gateway process per store: an exclusive lock on "<path>.lock", held while the store is
  // open (released by the kernel when the process dies, so a kill -9 leaves no stale lock), so
  // a second gateway on the same file is refused at once with a clear error.
  const std::string lock_path = options_.path + ".lock";
  lock_fd_ = open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd_ < 0) {
    return absl::UnavailableError(absl::StrCat("cannot open melding store lock file ", lock_path,
                                               ": ", std::strerror(errno)));
  }
  if (flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    return absl::UnavailableError(absl::StrCat(
        "melding store ", options_.path, " is locked by another process (", lock_path,
        "): one gateway per store file"));
  }
  if (sqlite3_open_v2(options_.path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return absl::UnavailableError(absl::StrCat("cannot open melding store ", options_.path, ": ",
                                               db_ ? sqlite3_errmsg(db_) : "out of memory"));
  }
  sqlite3_busy_timeout(db_, 5000);
  // WAL + synchronous=FULL: a commit returns after the WAL is fsync'd, so a committed
  // transaction survives power loss. SQLite's locking_mode=EXCLUSIVE as well: the WAL index
  // then lives in this process's heap instead of a memory-mapped "-shm" file, which on a full
  // disk can be unallocatable and kill the process with SIGBUS when the store is reopened
  // (seen in RealDiskFullRefusesAppendsAndLosesNothingAcknowledged). The price: no other
  // process can read the file while the gateway has it open (backups: docs/operations.md).
  // An 8 MiB page cache (bounded: it is part of the gateway's steady-state RSS, reached after
  // a few minutes of traffic) keeps the hot part of the (sender, message_id) index — random
  // UUIDs, so inserts land all over it — in memory; checkpoints every 10,000 WAL pages copy a
  // page rewritten by many commits once instead of once per 1,000 pages.
  for (const char* pragma : {"PRAGMA locking_mode=EXCLUSIVE;", "PRAGMA journal_mode=WAL;",
                             "PRAGMA synchronous=FULL;", "PRAGMA secure_delete=FAST;",
                             "PRAGMA cache_size=-8192;", "PRAGMA wal_autocheckpoint=10000;"}) {
    absl::Status s = Exec(pragma);
    if (!s.ok()) return s;
  }
  absl::Status s = Exec(kSchema);
  if (!s.ok()) return s;

  stmts_ = std::make_unique<Statements>();
  struct {
    sqlite3_stmt** out;
    std::string sql;
  } prepare[] = {
      {&stmts_->begin, "BEGIN IMMEDIATE"},
      {&stmts_->commit, "COMMIT"},
      {&stmts_->rollback, "ROLLBACK"},
      {&stmts_->insert,
       "INSERT INTO meldingen (sender, message_id, recipient, correlation_id, agreement_id, "
       "content_hash, envelope, size, state, accepted_at, expires_at) "
       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10)"},
      {&stmts_->find,
       absl::StrCat("SELECT ", kColumns, " FROM meldingen WHERE sender = ?1 AND message_id = ?2")},
      {&stmts_->attempt,
       "UPDATE meldingen SET attempts = ?2, last_error = ?3 WHERE seq = ?1 AND state = 1"},
      {&stmts_->delivered,
       "UPDATE meldingen SET state = 2, delivered_at = ?2, attempts = ?3, envelope = NULL "
       "WHERE seq = ?1 AND state = 1 RETURNING size"},
      {&stmts_->expired,
       "UPDATE meldingen SET state = 3, attempts = ?2, last_error = ?3, envelope = NULL "
       "WHERE seq = ?1 AND state = 1 RETURNING size"},
      {&stmts_->discard, "DELETE FROM meldingen WHERE seq = ?1 AND state = 1 RETURNING size"},
      // The lowest pending seq is the oldest accepted (seq is acceptance order): one seek in
      // the partial index meldingen_pending.
      {&stmts_->oldest,
       "SELECT accepted_at FROM meldingen WHERE state = 1 ORDER BY seq LIMIT 1"},
  };
  for (auto& p : prepare) {
    if (sqlite3_prepare_v3(db_, p.sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, p.out, nullptr) !=
        SQLITE_OK) {
      return absl::InternalError(
          absl::StrCat("melding store: cannot prepare: ", sqlite3_errmsg(db_)));
    }
  }
  return Recount();
}

absl::Status SqliteMessageStore::Recount() {
  sqlite3_stmt* s = nullptr;
  if (sqlite3_prepare_v2(db_, "SELECT COUNT(*), TOTAL(size) FROM meldingen WHERE state = 1", -1,
                         &s, nullptr) != SQLITE_OK) {
    return absl::InternalError(sqlite3_errmsg(db_));
  }
  absl::Status status = absl::OkStatus();
  if (sqlite3_step(s) == SQLITE_ROW) {
    pending_messages_ = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
    pending_bytes_ = static_cast<uint64_t>(sqlite3_column_double(s, 1));
  } else {
    status = absl::UnavailableError(sqlite3_errmsg(db_));
  }
  sqlite3_finalize(s);
  if (status.ok()) RefreshOldestPending();
  return status;
}

SqliteMessageStore::~SqliteMessageStore() {
  Close();  // first: the writer thread uses the statements and db_ until it stops
  stmts_.reset();
  if (db_ != nullptr) sqlite3_close(db_);
  if (lock_fd_ >= 0) close(lock_fd_);  // releases the lock
}

void SqliteMessageStore::RefreshOldestPending() {
  // Prepared once with the other statements: this runs after every commit that changes the
  // pending set.
  sqlite3_stmt* s = stmts_->oldest;
  oldest_pending_us_ = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0)
                                                    : std::numeric_limits<int64_t>::max();
  sqlite3_reset(s);
}

absl::StatusOr<std::vector<MessageRecord>> SqliteMessageStore::ClaimWork() {
  if (claimed_.exchange(true)) return std::vector<MessageRecord>{};
  return LoadPending();
}

absl::StatusOr<std::vector<MessageRecord>> SqliteMessageStore::LoadPending() {
  // Called before any operation is queued, so the writer thread does not use the connection.
  sqlite3_stmt* s = nullptr;
  const std::string sql = absl::StrCat("SELECT ", kColumns,
                                       ", envelope FROM meldingen WHERE state = 1 ORDER BY seq");
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) != SQLITE_OK) {
    return absl::InternalError(sqlite3_errmsg(db_));
  }
  std::vector<MessageRecord> out;
  int rc;
  while ((rc = sqlite3_step(s)) == SQLITE_ROW) out.push_back(ReadRow(s, true));
  sqlite3_finalize(s);
  if (rc != SQLITE_DONE) return absl::UnavailableError(sqlite3_errmsg(db_));
  return out;
}

void SqliteMessageStore::PurgeFinal(absl::Time now) {
  if (options_.retain_final <= absl::ZeroDuration() || now < next_purge_) return;
  next_purge_ = now + options_.purge_every;
  // Small transactions, so that Appends queued meanwhile wait one short commit at most.
  const std::string sql = absl::StrCat(
      "DELETE FROM meldingen WHERE seq IN (SELECT seq FROM meldingen WHERE state != 1 AND "
      "accepted_at < ", Micros(now - options_.retain_final), " LIMIT 1000)");
  for (int round = 0; round < 100; ++round) {
    if (absl::Status s = Exec(sql.c_str()); !s.ok()) {
      Log(LogLevel::kWarning, "melding_purge_failed", {{"error", std::string(s.message())}});
      return;  // tried again at the next purge
    }
    if (sqlite3_changes(db_) < 1000) return;
  }
}

void SqliteMessageStore::RunBatch(std::deque<Op>& batch) {
  auto step_reset = [](sqlite3_stmt* s) {
    const int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc;
  };
  absl::Status txn = absl::OkStatus();
  if (step_reset(stmts_->begin) != SQLITE_DONE) {
    txn = absl::UnavailableError(absl::StrCat("melding store: ", sqlite3_errmsg(db_)));
  }
  uint64_t pending = pending_messages_.load();
  uint64_t bytes = pending_bytes_.load();
  bool pending_changed = false;  // a message entered or left the pending set

  // Looks up (sender, message_id); OK with the record, NOT_FOUND, or an error.
  auto find = [&](const std::string& sender, const std::string& id,
                  MessageRecord* out) -> absl::Status {
    sqlite3_stmt* s = stmts_->find;
    BindText(s, 1, sender);
    BindText(s, 2, id);
    const int rc = sqlite3_step(s);
    absl::Status status = absl::OkStatus();
    if (rc == SQLITE_ROW) {
      *out = ReadRow(s, false);
    } else if (rc == SQLITE_DONE) {
      status = absl::NotFoundError("no such melding");
    } else {
      status = absl::UnavailableError(absl::StrCat("melding store: ", sqlite3_errmsg(db_)));
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return status;
  };
  for (Op& op : batch) {
    if (!txn.ok()) {
      op.status = txn;
      continue;
    }
    switch (op.kind) {
      case Op::kAppend: {
        MessageRecord& r = op.record;
        const uint64_t size = r.envelope.size();
        if (Full(pending, bytes, size)) {
          MessageRecord found;
          const absl::Status f = find(r.sender, r.message_id, &found);
          if (absl::Status e = AnswerFull(op, f, found); !e.ok()) op.status = e;
          break;
        }
        sqlite3_stmt* s = stmts_->insert;
        BindText(s, 1, r.sender);
        BindText(s, 2, r.message_id);
        BindText(s, 3, r.recipient);
        BindText(s, 4, r.correlation_id);
        BindText(s, 5, r.agreement_id);
        BindBlob(s, 6, r.content_hash);
        BindBlob(s, 7, r.envelope);
        sqlite3_bind_int64(s, 8, static_cast<int64_t>(size));
        sqlite3_bind_int64(s, 9, Micros(r.accepted_at));
        sqlite3_bind_int64(s, 10, Micros(r.expires_at));
        const int rc = sqlite3_step(s);
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        if (rc == SQLITE_DONE) {
          r.seq = sqlite3_last_insert_rowid(db_);
          r.state = MessageState::kAccepted;
          r.attempts = 0;
          ++pending;
          bytes += size;
          pending_changed = true;
          op.appended.record = std::move(r);
        } else if (rc == SQLITE_CONSTRAINT) {
          MessageRecord found;
          absl::Status f = find(r.sender, r.message_id, &found);
          if (f.ok()) {
            AnswerExisting(op, found);
          } else {
            op.status = f;
          }
        } else {
          op.status = absl::UnavailableError(absl::StrCat("melding store: ", sqlite3_errmsg(db_)));
        }
        break;
      }
      case Op::kAttempt: {
        sqlite3_stmt* s = stmts_->attempt;
        sqlite3_bind_int64(s, 1, op.record.seq);
        sqlite3_bind_int(s, 2, op.record.attempts);
        BindText(s, 3, op.record.last_error);
        if (step_reset(s) != SQLITE_DONE) {
          op.status = absl::UnavailableError(sqlite3_errmsg(db_));
        }
        sqlite3_clear_bindings(s);
        break;
      }
      case Op::kDelivered:
      case Op::kExpired:
      case Op::kDiscard: {
        // Each leaves the pending set: RETURNING size keeps the back-pressure counters right.
        const bool delivered = op.kind == Op::kDelivered;
        sqlite3_stmt* s = delivered                    ? stmts_->delivered
                          : op.kind == Op::kExpired ? stmts_->expired
                                                    : stmts_->discard;
        sqlite3_bind_int64(s, 1, op.record.seq);
        if (delivered) {
          sqlite3_bind_int64(s, 2, Micros(op.record.delivered_at));
          sqlite3_bind_int(s, 3, op.record.attempts);
        } else if (op.kind == Op::kExpired) {
          sqlite3_bind_int(s, 2, op.record.attempts);
          BindText(s, 3, op.record.last_error);
        }
        int rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
          const uint64_t size = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
          if (pending > 0) --pending;
          pending_changed = true;
          bytes = bytes >= size ? bytes - size : 0;
          rc = sqlite3_step(s);
        }
        if (rc != SQLITE_DONE) op.status = absl::UnavailableError(sqlite3_errmsg(db_));
        sqlite3_reset(s);
        sqlite3_clear_bindings(s);
        break;
      }
      case Op::kFind: {
        absl::Status f = find(op.record.sender, op.record.message_id, &op.appended.record);
        if (!f.ok()) op.status = f;
        break;
      }
      case Op::kClaim:
        break;  // never queued here: ClaimWork() reads at start, before any operation
    }
  }

  if (txn.ok()) {
    // One commit, one fsync of the WAL, for the whole batch.
    if (step_reset(stmts_->commit) != SQLITE_DONE) {
      txn = absl::UnavailableError(
          absl::StrCat("melding store: commit failed: ", sqlite3_errmsg(db_)));
      step_reset(stmts_->rollback);
    }
  }
  if (txn.ok()) {
    pending_messages_ = pending;
    pending_bytes_ = bytes;
    ++commits_;
    if (pending_changed) RefreshOldestPending();
  } else {
    (void)Recount();
  }

  if (!txn.ok()) {
    for (Op& op : batch) op.status = txn;
  }
  Finish(batch);
}

}  // namespace knooppunt::store
