// The embedded MessageStore: one SQLite file in WAL mode with synchronous=FULL.
//
// Guarantees (beyond MessageStore's): group commit as group_commit_store.h gives it — one
// writer thread runs every queued operation in one transaction and commits it with one fsync
// of the WAL, so durability costs one fsync per batch rather than per message; `done` is
// called (on the completion thread, in order) only after that commit returned. A failed
// commit fails every operation of its batch (none is reported durable). One gateway process
// per store file (an exclusive flock on "<path>.lock", and SQLite's exclusive locking mode:
// no other process reads it while open). Final (delivered or expired) messages are kept
// retain_final after acceptance, then deleted by the writer thread in small transactions of
// their own.
#ifndef KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_
#define KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gateway/store/group_commit_store.h"

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

class SqliteMessageStore final : public GroupCommitStore {
 public:
  // Opens (creating if needed) the database and starts the writer thread.
  static absl::StatusOr<std::unique_ptr<SqliteMessageStore>> Open(SqliteStoreOptions options);
  ~SqliteMessageStore() override;  // Close()s first

  // One gateway per file (the lock file): everything pending is this gateway's, handed over
  // at the first call, before any other operation is queued.
  absl::StatusOr<std::vector<MessageRecord>> ClaimWork() override;
  // Every message still to deliver, in seq order; only while no operation is queued (at
  // start, or in tests).
  absl::StatusOr<std::vector<MessageRecord>> LoadPending();

 private:
  struct Statements;
  explicit SqliteMessageStore(SqliteStoreOptions options);
  absl::Status Init();
  void RunBatch(std::deque<Op>& batch) override;
  void BetweenBatches() override { PurgeFinal(absl::Now()); }
  absl::Status Exec(const char* sql);
  absl::Status Recount();
  void RefreshOldestPending();  // writer thread (or Init)
  void PurgeFinal(absl::Time now);

  const SqliteStoreOptions options_;
  sqlite3* db_ = nullptr;
  int lock_fd_ = -1;  // holds the flock on "<path>.lock" while open
  std::unique_ptr<Statements> stmts_;
  absl::Time next_purge_ = absl::InfinitePast();  // writer thread only
  std::atomic<bool> claimed_{false};
};

}  // namespace knooppunt::store

#endif  // KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_
