// The group-commit machinery shared by the MessageStore backends (sqlite_message_store.h,
// pg_message_store.h): the operation queue, the writer thread, the completion thread and the
// pending counters behind Stats(). A backend supplies only how a batch runs (its SQL, in one
// transaction) and its own specifics.
//
// Guarantees (on top of MessageStore's, for every backend built on this):
//  - Group commit: one writer thread takes every queued operation (up to max_batch, in
//    submission order) and hands them to the backend's RunBatch(), which runs them in one
//    transaction with one commit; their `done`s then go to a completion thread (in order) and
//    the writer starts the next batch. So no caller's thread ever waits on the database, a
//    commit is paid per batch rather than per message, and the callers' completions never
//    hold up the next commit.
//  - The operation methods only queue: `done` is never called from within the call itself,
//    except with UNAVAILABLE once the store is closed (message_store.h).
//  - Close() lets the writer finish every operation queued before it, runs their
//    completions, then calls the backend's AfterClose(); later operations fail with
//    UNAVAILABLE. A second Close() does nothing.
//
// For a backend (a final class deriving from this):
//  - Its Open() prepares its resources, then calls Start() (until then nothing runs on the
//    writer thread).
//  - Its destructor MUST call Close() first, before any of its members (database handle,
//    connection) is destroyed: the writer thread uses them until Close() returns, and the
//    base destructor runs only after the derived members are gone. The base destructor
//    aborts the process (with a message) if the writer thread is still running then, so the
//    mistake cannot go unnoticed.
//  - Its RunBatch() and BetweenBatches() run on the writer thread, AfterClose() on the thread
//    calling Close() once the writer thread has stopped: never two at once, so they share the
//    backend's connection without locking. ClaimOnWriterThread() lets its ClaimWork() run
//    there too (RunBatch() answers the kClaim ops); a backend that never calls it sees none.
#ifndef KNOOPPUNT_GATEWAY_STORE_GROUP_COMMIT_STORE_H_
#define KNOOPPUNT_GATEWAY_STORE_GROUP_COMMIT_STORE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <future>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/common/serial_executor.h"
#include "gateway/store/message_store.h"

namespace knooppunt::store {

namespace internal {
// Times as the stores keep them: unix microseconds; INT64_MAX is InfiniteFuture ("never"),
// INT64_MIN InfinitePast.
inline int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us);
}  // namespace internal

class GroupCommitStore : public MessageStore {
 public:
  ~GroupCommitStore() override;

  void Append(MessageRecord record, AppendDone done) final;
  void RecordAttempt(int64_t seq, int attempts, std::string error, Done done) final;
  void MarkDelivered(int64_t seq, absl::Time at, int attempts, Done done) final;
  void MarkExpired(int64_t seq, int attempts, std::string last_error, Done done) final;
  void Discard(int64_t seq, Done done) final;
  void Find(std::string sender, std::string message_id, FindDone done) final;
  StoreStats Stats() const final;
  void Close() final;

  // Transactions committed so far (for tests and the benchmark: shows group commit).
  uint64_t commits() const { return commits_.load(); }

 protected:
  using ClaimResult = absl::StatusOr<std::vector<MessageRecord>>;

  // One queued operation; RunBatch fills in its results (status, appended).
  struct Op {
    enum Kind { kAppend, kAttempt, kDelivered, kExpired, kDiscard, kFind, kClaim } kind = kAppend;
    MessageRecord record;  // the operation's arguments
    AppendDone append_done;
    Done done;
    FindDone find_done;
    std::promise<ClaimResult>* claimed = nullptr;  // kClaim: set by the backend
    // Results, filled by RunBatch. A Find answers with appended.record.
    absl::Status status;
    AppendResult appended;
  };

  struct Limits {
    uint64_t max_pending_messages = 0;
    uint64_t max_pending_bytes = 0;
    size_t max_batch = 1;             // operations per batch
    absl::Duration idle_every;        // BetweenBatches() runs at least this often
  };

  explicit GroupCommitStore(Limits limits);

  // Starts the completion and writer threads (the end of the backend's Open()).
  void Start();

  // Writer thread: runs `batch` (in order), sets each op's results, updates the counters
  // below, and hands the ops to Finish() (claims may be answered otherwise).
  virtual void RunBatch(std::deque<Op>& batch) = 0;
  // Writer thread: before each batch is taken, and every idle_every while none is queued
  // (purging old final messages).
  virtual void BetweenBatches() {}
  // Once, from Close(), after the writer thread stopped and the completions ran.
  virtual void AfterClose() {}

  // Queues a kClaim op and waits for the writer thread to answer it (op.claimed), for a
  // backend whose ClaimWork() must run on the writer thread.
  ClaimResult ClaimOnWriterThread();

  // Hands `ops`' results to their `done`s, in order, on the completion thread (takes them).
  void Finish(std::deque<Op>& ops);

  // Whether an Append of `size` bytes is refused (RESOURCE_EXHAUSTED unless a duplicate)
  // with `pending` messages of `bytes` bytes pending.
  bool Full(uint64_t pending, uint64_t bytes, uint64_t size) const {
    return pending >= limits_.max_pending_messages || bytes + size > limits_.max_pending_bytes;
  }
  // An Append refused by Full(): still answered as AnswerExisting() does when its key is
  // stored (`lookup` OK, with the record in `found`), else RESOURCE_EXHAUSTED. Returns
  // `lookup`'s error when it is neither OK nor NOT_FOUND (the op is then left as it was).
  static absl::Status AnswerFull(Op& op, const absl::Status& lookup, const MessageRecord& found);
  // An Append whose key (sender, message_id) is stored already as `found`: the same
  // Receipt (duplicate) when the content is the same, ALREADY_EXISTS otherwise.
  static void AnswerExisting(Op& op, const MessageRecord& found);

  // Written by the writer thread only (or before Start()); read anywhere.
  std::atomic<uint64_t> pending_messages_{0};
  std::atomic<uint64_t> pending_bytes_{0};
  std::atomic<uint64_t> commits_{0};
  // accepted_at (unix µs) of the oldest pending message; INT64_MAX when none.
  std::atomic<int64_t> oldest_pending_us_{std::numeric_limits<int64_t>::max()};

 private:
  void Submit(Op op);
  void WriterLoop();
  static void Complete(Op& op);  // calls the operation's done with its result

  const Limits limits_;
  mutable absl::Mutex mu_;
  std::deque<Op> queue_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  std::thread writer_;
  std::unique_ptr<SerialExecutor> completions_;  // runs the `done`s; reset by Close()
};

}  // namespace knooppunt::store

#endif  // KNOOPPUNT_GATEWAY_STORE_GROUP_COMMIT_STORE_H_
