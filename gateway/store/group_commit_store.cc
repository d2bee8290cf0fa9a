#include "gateway/store/group_commit_store.h"

#include <cstdio>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"

namespace knooppunt::store {

absl::Time internal::FromMicros(int64_t us) {
  if (us == std::numeric_limits<int64_t>::max()) return absl::InfiniteFuture();
  if (us == std::numeric_limits<int64_t>::min()) return absl::InfinitePast();
  return absl::FromUnixMicros(us);
}

GroupCommitStore::GroupCommitStore(Limits limits) : limits_(limits) {}

GroupCommitStore::~GroupCommitStore() {
  // The derived destructor has destroyed the members the writer thread uses: it must have
  // called Close() (group_commit_store.h).
  if (writer_.joinable()) {
    std::fputs("melding store: destroyed without Close() (the backend's destructor must call "
               "Close() first)\n",
               stderr);
    std::abort();
  }
}

void GroupCommitStore::Start() {
  completions_ = std::make_unique<SerialExecutor>();
  writer_ = std::thread([this] { WriterLoop(); });
}

void GroupCommitStore::Close() {
  {
    absl::MutexLock lock(&mu_);
    if (closing_ && !writer_.joinable()) return;
    closing_ = true;
  }
  if (writer_.joinable()) writer_.join();
  completions_.reset();  // runs the last batch's completions, then joins
  AfterClose();
}

void GroupCommitStore::Submit(Op op) {
  {
    absl::MutexLock lock(&mu_);
    if (!closing_) {
      queue_.push_back(std::move(op));
      return;
    }
  }
  const absl::Status closed = absl::UnavailableError("the melding store is closed");
  if (op.append_done) std::move(op.append_done)(closed);
  if (op.done) std::move(op.done)(closed);
  if (op.find_done) std::move(op.find_done)(closed);
  if (op.claimed != nullptr) op.claimed->set_value(closed);
}

void GroupCommitStore::Append(MessageRecord record, AppendDone done) {
  Op op;
  op.kind = Op::kAppend;
  record.message_id = NormalizeMessageId(std::move(record.message_id));
  op.record = std::move(record);
  op.append_done = std::move(done);
  Submit(std::move(op));
}

void GroupCommitStore::RecordAttempt(int64_t seq, int attempts, std::string error, Done done) {
  Op op;
  op.kind = Op::kAttempt;
  op.record.seq = seq;
  op.record.attempts = attempts;
  op.record.last_error = std::move(error);
  op.done = std::move(done);
  Submit(std::move(op));
}

void GroupCommitStore::MarkDelivered(int64_t seq, absl::Time at, int attempts, Done done) {
  Op op;
  op.kind = Op::kDelivered;
  op.record.seq = seq;
  op.record.delivered_at = at;
  op.record.attempts = attempts;
  op.done = std::move(done);
  Submit(std::move(op));
}

void GroupCommitStore::MarkExpired(int64_t seq, int attempts, std::string last_error,
                                   Done done) {
  Op op;
  op.kind = Op::kExpired;
  op.record.seq = seq;
  op.record.attempts = attempts;
  op.record.last_error = std::move(last_error);
  op.done = std::move(done);
  Submit(std::move(op));
}

void GroupCommitStore::Discard(int64_t seq, Done done) {
  Op op;
  op.kind = Op::kDiscard;
  op.record.seq = seq;
  op.done = std::move(done);
  Submit(std::move(op));
}

void GroupCommitStore::Find(std::string sender, std::string message_id, FindDone done) {
  Op op;
  op.kind = Op::kFind;
  op.record.sender = std::move(sender);
  op.record.message_id = NormalizeMessageId(std::move(message_id));
  op.find_done = std::move(done);
  Submit(std::move(op));
}

GroupCommitStore::ClaimResult GroupCommitStore::ClaimOnWriterThread() {
  std::promise<ClaimResult> promise;
  auto future = promise.get_future();
  Op op;
  op.kind = Op::kClaim;
  op.claimed = &promise;
  Submit(std::move(op));
  return future.get();
}

StoreStats GroupCommitStore::Stats() const {
  StoreStats stats;
  stats.pending_messages = pending_messages_.load();
  stats.pending_bytes = pending_bytes_.load();
  stats.oldest_pending_accepted_at = internal::FromMicros(oldest_pending_us_.load());
  return stats;
}

absl::Status GroupCommitStore::AnswerFull(Op& op, const absl::Status& lookup,
                                          const MessageRecord& found) {
  if (lookup.ok()) {
    AnswerExisting(op, found);
  } else if (absl::IsNotFound(lookup)) {
    op.status = absl::ResourceExhaustedError(
        "the melding store is full (too many undelivered messages); retry later");
  } else {
    return lookup;
  }
  return absl::OkStatus();
}

void GroupCommitStore::AnswerExisting(Op& op, const MessageRecord& found) {
  if (found.content_hash != op.record.content_hash) {
    op.status = absl::AlreadyExistsError(absl::StrCat(
        "message_id ", op.record.message_id,
        " was already used by this sender for a message with different content"));
    return;
  }
  op.appended.record = found;
  op.appended.duplicate = true;
}

void GroupCommitStore::WriterLoop() {
  for (;;) {
    BetweenBatches();
    std::deque<Op> batch;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](GroupCommitStore* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
                return self->closing_ || !self->queue_.empty();
              },
              this),
          limits_.idle_every);
      if (queue_.empty()) {
        if (closing_) return;  // everything queued is done
        continue;              // time for BetweenBatches (purge)
      }
      while (!queue_.empty() && batch.size() < limits_.max_batch) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    RunBatch(batch);
  }
}

void GroupCommitStore::Finish(std::deque<Op>& ops) {
  auto complete = [ops = std::move(ops)]() mutable {
    for (Op& op : ops) Complete(op);
  };
  completions_->Run(std::move(complete));
}

void GroupCommitStore::Complete(Op& op) {
  const absl::Status& status = op.status;
  switch (op.kind) {
    case Op::kAppend:
      if (status.ok()) {
        std::move(op.append_done)(std::move(op.appended));
      } else {
        std::move(op.append_done)(status);
      }
      break;
    case Op::kFind:
      if (status.ok()) {
        std::move(op.find_done)(std::move(op.appended.record));
      } else {
        std::move(op.find_done)(status);
      }
      break;
    default:
      if (op.done) std::move(op.done)(status);
      break;
  }
}

}  // namespace knooppunt::store
