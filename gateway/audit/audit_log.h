// Step 5 of a message's path, the default implementation: the tamper-evident audit log.
//
// Guarantees:
//  - Record() returns OK only after the record is committed to the database: SQLite (WAL,
//    synchronous=FULL: on disk when the commit returns) or, with `postgres` set, PostgreSQL
//    (committed on the server). Any failure — read-only or full database, disk error, I/O
//    error, PostgreSQL unreachable — returns UNAVAILABLE and the caller refuses the exchange
//    (fail closed). (When the connection is lost during COMMIT the records may nevertheless
//    be in the log: the log never under-reports.) After a failure the next batch first
//    reloads where the chain ends from the database; a lost PostgreSQL connection is
//    re-opened by itself (after a failed attempt, the next one after connect_timeout), so the
//    log recovers without a restart when the database is back; a batch that found its
//    connection broken (e.g. while idle) is written once more on a new connection when the
//    database shows none of it was committed.
//  - Group commit: records arriving while a commit is in progress are written together in the
//    next transaction, so one fsync serves many exchanges. Record() waits for its batch;
//    Append() calls back instead (on the log's completion thread, in commit order) and
//    never blocks.
//  - Records form a hash chain (audit_crypto.h) in commit order, numbered 1, 2, … (seq).
//    Every `checkpoint_every_records` records, and `checkpoint_every` after an unsigned record,
//    a checkpoint (seq, head, time, instance) is signed and stored in the same transaction as
//    the record it covers; a checkpoint is also signed on Close(). Each checkpoint is also
//    written to the operational log (a copy outside the database).
//  - On PostgreSQL, several replicas share the database: each writes its own chain, named by
//    its instance_id, and holds that chain's lock (audit_storage.h): a second gateway with
//    the same instance_id does not start (Open() returns FAILED_PRECONDITION).
//  - Retention deletes only whole prefixes ending at a signed checkpoint, so what remains
//    verifies from that checkpoint on. (On PostgreSQL each replica applies it to its own
//    chain.)
//  - Records hold no payload and no BSN: data subjects are pseudonyms (data_subjects.h).
//  - The storage (audit_storage.h) is behind an interface; this class holds the chain,
//    checkpoint, group-commit, lazy-commit and retention logic for every backend.
// Thread-safe.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_AUDIT_LOG_H_
#define KNOOPPUNT_GATEWAY_AUDIT_AUDIT_LOG_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_storage.h"
#include "gateway/audit/data_subjects.h"
#include "gateway/audit/decision_log.h"
#include "gateway/common/pg_util.h"
#include "gateway/common/serial_executor.h"
#include "gateway/observability/metrics_sink.h"

namespace knooppunt::audit {

struct AuditLogOptions {
  std::string db_path;                       // SQLite file (unless `postgres` is set)
  // Set: the log is in this PostgreSQL database, in the chain named instance_id (required).
  std::optional<pg::ConnectOptions> postgres;
  std::string hmac_key;                      // raw key bytes (ReadHmacKeyFile)
  std::string signing_key_file;              // PEM, Ed25519 or ECDSA P-256
  std::string instance_id;
  int64_t checkpoint_every_records = 1000;
  absl::Duration checkpoint_every = absl::Seconds(10);
  absl::Duration retention = absl::ZeroDuration();  // 0: keep forever
  int64_t max_db_bytes = 0;                  // 0: no limit (PostgreSQL: the audit tables)
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
  // Flushes, signs a final checkpoint, stops the writer, closes the database (on PostgreSQL
  // releasing the chain for another writer). Idempotent.
  void Close();

  const DataSubjects& data_subjects() const { return subjects_; }
  int64_t committed() const;  // seq of the last committed record

  // For tests: makes the writer's connection read-only (SQLite: PRAGMA query_only;
  // PostgreSQL: read-only transactions), as when the database becomes unwritable under a
  // running gateway.
  void SetReadOnlyForTest(bool read_only);

 private:
  struct Pending {
    StoredRecord row;             // seq and hash are set by the writer
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
  absl::Status WriteBatch(std::vector<Pending>& batch);  // UNAVAILABLE on any failure
  absl::Status WriteBatchOnce(std::vector<Pending>& batch);
  absl::StatusOr<audit::Checkpoint> SignCheckpoint(int64_t seq, const std::string& head);
  void LogCheckpoint(const audit::Checkpoint& c) const;
  absl::Status ReloadIfNeeded();  // after a failed write: where the chain ends, per database
  absl::Status WriteCheckpointTxn();
  absl::StatusOr<int64_t> RetentionTxn(absl::Time now);

  const AuditLogOptions options_;
  DataSubjects subjects_;
  std::unique_ptr<Signer> signer_;
  std::unique_ptr<AuditStorage> storage_;

  // Writer-thread state.
  bool reload_ = false;
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
