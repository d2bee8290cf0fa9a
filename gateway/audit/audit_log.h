// Step 5 of a message's path, the default implementation: the tamper-evident audit log.
//
// Guarantees:
//  - Record() returns OK only after the record is committed to the SQLite database (WAL,
//    synchronous=FULL: on disk when the commit returns). Any failure — read-only or full
//    database, disk error, I/O error — returns UNAVAILABLE and the record is not in the log;
//    the caller refuses the exchange (fail closed).
//  - Group commit: records arriving while a commit is in progress are written together in the
//    next transaction, so one fsync serves many exchanges. Record() waits for its batch;
//    Append() calls back instead (on the log's completion thread, in commit order) and
//    never blocks.
//  - Records form a hash chain (audit_crypto.h) in commit order, numbered 1, 2, … (seq).
//    Every `checkpoint_every_records` records, and `checkpoint_every` after an unsigned record,
//    a checkpoint (seq, head, time, instance) is signed and stored in the same transaction as
//    the record it covers; a checkpoint is also signed on Close(). Each checkpoint is also
//    written to the operational log (a copy outside the database).
//  - Retention deletes only whole prefixes ending at a signed checkpoint, so what remains
//    verifies from that checkpoint on.
//  - Records hold no payload and no BSN: data subjects are pseudonyms (data_subjects.h).
// Thread-safe.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_AUDIT_LOG_H_
#define KNOOPPUNT_GATEWAY_AUDIT_AUDIT_LOG_H_

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/data_subjects.h"
#include "gateway/audit/decision_log.h"
#include "gateway/common/serial_executor.h"
#include "gateway/observability/metrics_sink.h"

struct sqlite3;

namespace knooppunt::audit {

struct AuditLogOptions {
  std::string db_path;
  std::string hmac_key;                      // raw key bytes (ReadHmacKeyFile)
  std::string signing_key_file;              // PEM, Ed25519 or ECDSA P-256
  std::string instance_id;
  int64_t checkpoint_every_records = 1000;
  absl::Duration checkpoint_every = absl::Seconds(10);
  absl::Duration retention = absl::ZeroDuration();  // 0: keep forever
  int64_t max_db_bytes = 0;                  // 0: no limit
  size_t max_batch = 8192;                   // records per transaction at most
  // Records nobody waits for (RecordAsync without a callback: denials, outcomes, delivery
  // records) do not start a commit of their own: they go with the next record somebody waits
  // for, or after this delay, or once max_batch are queued. So on a busy gateway they cost no
  // fsync of their own, and a waited-for decision never queues behind their commit.
  absl::Duration lazy_commit_delay = absl::Milliseconds(100);
  bool log_checkpoints = true;               // copy each checkpoint to the operational log
  // Optional, not owned (must outlive the log): told each record's time from Append() to the
  // end of its group commit, on the writer thread.
  observability::AuditMetricsSink* metrics = nullptr;
};

class AuditLog final : public DecisionLog {
 public:
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const AuditLogOptions& options);
  ~AuditLog() override;  // Close()

  absl::Status Record(const v1::DecisionRecord& record) override;
  void RecordAsync(const v1::DecisionRecord& record,
                   std::function<void(absl::Status)> done) override {
    const bool waited = done != nullptr;
    Append(record, waited ? std::move(done) : [](absl::Status) {}, waited);
  }
  void AddDataSubjects(const google::protobuf::Descriptor* type, absl::string_view payload,
                       v1::DecisionRecord* record) const override;

  // Queues the record; `done` runs on the completion thread once it is committed (OK) or not.
  // `waited`: somebody waits for `done` (commit soon); false: lazy (lazy_commit_delay).
  void Append(const v1::DecisionRecord& record, std::function<void(absl::Status)> done,
              bool waited = true);

  // Signs a checkpoint now if there are unsigned records; waits for it.
  absl::Status Checkpoint();
  // Applies retention now; waits. Returns the number of records deleted.
  absl::StatusOr<int64_t> ApplyRetention(absl::Time now);
  // Flushes, signs a final checkpoint, stops the writer. Idempotent.
  void Close();

  const DataSubjects& data_subjects() const { return subjects_; }
  int64_t committed() const;  // seq of the last committed record

  // For tests: makes the writer's connection read-only (PRAGMA query_only), as when the
  // database file becomes unwritable under a running gateway.
  void SetReadOnlyForTest(bool read_only);

 private:
  struct Pending {
    std::string bytes;            // deterministic serialization
    int64_t time_ns = 0;
    std::string sender, recipient, authenticated_oin, message_type, agreement_id, trace_id;
    int decision = 0;
    std::vector<std::string> subjects;
    std::function<void(absl::Status)> done;
    absl::Time queued;            // for options_.metrics
    bool waited = true;           // see AuditLogOptions::lazy_commit_delay
  };
  struct Control {                // a checkpoint or retention request from a caller
    enum Kind { kCheckpoint, kRetention } kind;
    absl::Time now;
    std::function<void(absl::StatusOr<int64_t>)> done;
  };

  explicit AuditLog(const AuditLogOptions& options);
  absl::Status Init();
  void WriterLoop();
  absl::Status WriteBatch(std::vector<Pending>& batch);
  absl::Status SignCheckpointLocked(int64_t seq, const std::string& head);  // inside a txn
  absl::Status WriteCheckpointTxn();
  absl::StatusOr<int64_t> RetentionTxn(absl::Time now);
  absl::Status Exec(const char* sql);

  const AuditLogOptions options_;
  DataSubjects subjects_;
  std::unique_ptr<Signer> signer_;
  sqlite3* db_ = nullptr;

  // Writer-thread state.
  int64_t seq_ = 0;
  std::string head_;
  int64_t checkpoint_seq_ = 0;
  absl::Time first_unsigned_ = absl::InfiniteFuture();
  absl::Time next_retention_ = absl::InfinitePast();

  mutable absl::Mutex mu_;
  std::deque<Pending> queue_ ABSL_GUARDED_BY(mu_);
  size_t waited_queued_ ABSL_GUARDED_BY(mu_) = 0;  // records in queue_ somebody waits for
  absl::Time oldest_lazy_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::deque<Control> control_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t committed_ ABSL_GUARDED_BY(mu_) = 0;
  int read_only_request_ ABSL_GUARDED_BY(mu_) = -1;
  std::thread writer_;
  // Runs the records' `done`s after each commit, so the next batch's fsync does not wait for
  // them (they complete gRPC calls); reset by Close() after the writer has stopped.
  std::unique_ptr<SerialExecutor> completions_;
};

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_AUDIT_LOG_H_
