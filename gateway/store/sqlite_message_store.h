// The embedded MessageStore: one SQLite file in WAL mode with synchronous=FULL.
//
// Guarantees (beyond MessageStore's): group commit — one writer thread takes every queued
// operation, runs them in one transaction and commits with one fsync, then calls their
// `done`s; so no caller's thread ever waits on the disk, and durability costs one fsync per
// batch rather than per message. A failed commit fails every operation of its batch (none
// is reported durable). The file is opened by one process at a time (exclusive lock).
#ifndef KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_
#define KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "gateway/store/message_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace knooppunt::store {

struct SqliteStoreOptions {
  std::string path;
  uint64_t max_pending_messages = 1000000;
  uint64_t max_pending_bytes = uint64_t{1} << 30;
  size_t max_batch = 4096;  // operations per transaction
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
  void Find(std::string sender, std::string message_id, FindDone done) override;
  absl::StatusOr<std::vector<MessageRecord>> LoadPending() override;
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
  absl::Status Exec(const char* sql);
  absl::Status Recount();

  const SqliteStoreOptions options_;
  sqlite3* db_ = nullptr;
  std::unique_ptr<Statements> stmts_;

  mutable absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;

  // Written by the writer thread only; read anywhere.
  std::atomic<uint64_t> pending_messages_{0};
  std::atomic<uint64_t> pending_bytes_{0};
  std::atomic<uint64_t> commits_{0};
};

}  // namespace knooppunt::store

#endif  // KNOOPPUNT_GATEWAY_STORE_SQLITE_MESSAGE_STORE_H_
