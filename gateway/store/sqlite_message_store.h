// The embedded MessageStore: one SQLite file in WAL mode with synchronous=FULL.
//
// Guarantees (beyond MessageStore's): group commit — one writer thread takes every queued
// operation, runs them in one transaction and commits with one fsync, then hands their
// `done`s to a completion thread (in order) and starts the next transaction; so no caller's
// thread ever waits on the disk, durability costs one fsync per batch rather than per
// message, and the callers' completions never hold up the next fsync. A failed commit fails every operation of its batch (none
// is reported durable). One gateway process per store file (an exclusive flock on
// "<path>.lock", and SQLite's exclusive locking mode: no other process reads it while open).
// Final (delivered or expired) messages are kept retain_final after acceptance, then deleted
// by the writer thread in small transactions of their own.
#ifndef KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_
#define KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_

#include <atomic>
#include <deque>
#include <limits>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/common/serial_executor.h"
#include "gateway/store/message_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace knooppunt::store {

struct SqliteStoreOptions {
  std::string path;
  uint64_t max_pending_messages = 1000000;
  uint64_t max_pending_bytes = uint64_t{1} << 30;
  size_t max_batch = 4096;  // operations per transaction
  // Delivered and expired messages accepted longer ago than this are deleted (checked every
  // purge_every); 0: kept forever.
  absl::Duration retain_final = absl::Hours(24 * 30);
  absl::Duration purge_every = absl::Minutes(1);
};

class SqliteMessageStore final : public MessageStore {
 public:
  // Opens (creating if needed) the database and starts the writer thread.
  static absl::StatusOr<std::unique_ptr<SqliteMessageStore>> Open(SqliteStoreOptions options);
  ~SqliteMessageStore() override;

  void Append(MessageRecord record, AppendDone done) override;
  void RecordAttempt(int64_t seq, int attempts, std::string error, Done done) override;
  void MarkDelivered(int64_t seq, absl::Time at, int attempts, Done done) override;
  void MarkExpired(int64_t seq, int attempts, std::string last_error, Done done) override;
  void Discard(int64_t seq, Done done) override;
  void Find(std::string sender, std::string message_id, FindDone done) override;
  // One gateway per file (the lock file): everything pending is this gateway's, handed over
  // at the first call, before any other operation is queued.
  absl::StatusOr<std::vector<MessageRecord>> ClaimWork() override;
  // Every message still to deliver, in seq order; only while no operation is queued (at
  // start, or in tests).
  absl::StatusOr<std::vector<MessageRecord>> LoadPending();
  StoreStats Stats() const override;
  void Close() override;

  // Transactions committed so far (for tests and the benchmark: shows group commit).
  uint64_t commits() const { return commits_.load(); }

 private:
  struct Op;
  struct Statements;
  explicit SqliteMessageStore(SqliteStoreOptions options);
  absl::Status Init();
  void Submit(Op op);
  void WriterLoop();
  void RunBatch(std::deque<Op>& batch);
  static void Complete(Op& op);  // calls the operation's done with its result
  absl::Status Exec(const char* sql);
  absl::Status Recount();
  void RefreshOldestPending();  // writer thread (or Init)
  void PurgeFinal(absl::Time now);

  const SqliteStoreOptions options_;
  sqlite3* db_ = nullptr;
  int lock_fd_ = -1;  // holds the flock on "<path>.lock" while open
  std::unique_ptr<Statements> stmts_;

  mutable absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
  std::unique_ptr<SerialExecutor> completions_;  // runs the `done`s; reset by Close()

  // Written by the writer thread only; read anywhere.
  std::atomic<uint64_t> pending_messages_{0};
  std::atomic<uint64_t> pending_bytes_{0};
  std::atomic<uint64_t> commits_{0};
  // accepted_at (unix µs) of the oldest pending message; INT64_MAX when none.
  std::atomic<int64_t> oldest_pending_us_{std::numeric_limits<int64_t>::max()};
  absl::Time next_purge_ = absl::InfinitePast();  // writer thread only
  std::atomic<bool> claimed_{false};
};

}  // namespace knooppunt::store

#endif  // KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_
