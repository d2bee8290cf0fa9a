// Where the audit log keeps its records: the storage behind AuditLog (writing) and
// AuditReader (reading), so that the chain, checkpoint, group-commit and retention logic
// (audit_log.cc) and the query/verify/export logic (audit_reader.cc) exist once for every
// backend. Two backends:
//  - SQLite (one file, one chain): WAL, synchronous=FULL; max_db_bytes as max_page_count.
//  - PostgreSQL (one database shared by several gateway replicas): one hash chain per
//    replica, named by its instance_id (the `chain` column), so replicas never serialize on
//    one chain head; the verifier checks every chain.
//
// Guarantees of every AuditStorage (the writer side; used by one thread at a time):
//  - Write() stores all records of a batch and the checkpoints that go with it in one
//    transaction: all or nothing. On failure nothing of the batch is visible and the status
//    is UNAVAILABLE (the log fails closed). After a failure the caller calls Load() again
//    before the next Write(): when the outcome of a commit is unknown (connection lost during
//    COMMIT) the database, not the caller's memory, says where the chain ends.
//  - Load() (re)opens what is needed and returns where the chain ends.
//  - DeleteThrough() deletes only a prefix of the chain that ends at a signed checkpoint.
// PostgreSQL only:
//  - A chain has exactly one writer: the storage holds a session-level advisory lock on its
//    chain while its connection lives. Open() fails (FAILED_PRECONDITION, naming the chain)
//    when another session holds it — a second gateway with the same instance_id does not
//    start. After a lost connection Load() reconnects, takes the lock again (UNAVAILABLE while
//    the old session still holds it) and reloads seq/head from the database.
//  - The writer role needs CREATE on the schema once (migrations, component "audit"); the
//    auditor's role needs only SELECT.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_AUDIT_STORAGE_H_
#define KNOOPPUNT_GATEWAY_AUDIT_AUDIT_STORAGE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/common/pg_util.h"

namespace knooppunt::audit {

// One record as stored: its chain position and hash plus the indexed columns.
struct StoredRecord {
  int64_t seq = 0;
  std::string hash;              // raw 32 bytes
  std::string bytes;             // deterministic serialization of the DecisionRecord
  int64_t time_ns = 0;
  std::string sender, recipient, authenticated_oin, message_type, agreement_id, trace_id;
  int decision = 0;
  std::vector<std::string> subjects;  // pseudonyms (indexed by PseudonymKey)
};

struct ChainState {
  int64_t seq = 0;               // last record (0: none)
  std::string head;              // hash of record seq (GenesisHash() when none)
  int64_t checkpoint_seq = 0;    // newest signed checkpoint
};

struct RetentionResult {
  int64_t through_seq = 0;       // records 1..through_seq are gone (0: nothing deleted)
  int64_t deleted = 0;
};

class AuditStorage {
 public:
  virtual ~AuditStorage() = default;
  virtual absl::StatusOr<ChainState> Load() = 0;
  virtual absl::Status Write(const std::vector<const StoredRecord*>& records,
                             const std::vector<Checkpoint>& checkpoints) = 0;
  // Deletes the records up to the newest checkpoint whose record is older than cutoff_ns.
  virtual absl::StatusOr<RetentionResult> DeleteThrough(int64_t cutoff_ns) = 0;
  // For tests: refuse writes as a read-only database would.
  virtual void SetReadOnlyForTest(bool read_only) = 0;
};

struct PostgresAuditOptions {
  pg::ConnectOptions connect;
  std::string chain;             // the replica's instance_id; required
  int64_t max_db_bytes = 0;      // audit tables' size limit (0: none), checked once a second
};

absl::StatusOr<std::unique_ptr<AuditStorage>> OpenSqliteAuditStorage(const std::string& path,
                                                                     int64_t max_db_bytes);
absl::StatusOr<std::unique_ptr<AuditStorage>> OpenPostgresAuditStorage(
    const PostgresAuditOptions& options);

// ---- reading ----

// One stored record as read back; the views are valid during the callback only.
struct RecordRow {
  absl::string_view chain;       // "" in SQLite
  int64_t seq = 0;
  absl::string_view bytes, hash;
  int64_t time_ns = 0;
  absl::string_view sender, recipient, authenticated_oin, message_type, agreement_id, trace_id;
  int decision = 0;
};

struct QueryFilter;

// What AuditReader reads from. Only reads; the PostgreSQL source works with a role that may
// only SELECT.
class AuditSource {
 public:
  virtual ~AuditSource() = default;
  // Everything read between BeginRead() and EndRead() comes from one snapshot of the log,
  // so writers appending meanwhile cannot make it look inconsistent.
  virtual absl::Status BeginRead() = 0;
  virtual void EndRead() = 0;
  // The chains in the log, sorted (SQLite: one, named "").
  virtual absl::StatusOr<std::vector<std::string>> Chains() = 0;
  virtual absl::StatusOr<std::vector<Checkpoint>> Checkpoints(const std::string& chain) = 0;
  // The chain's records with seq > after_seq in ascending seq, until `each` returns false.
  virtual absl::Status Records(const std::string& chain, int64_t after_seq,
                               const std::function<bool(const RecordRow&)>& each) = 0;
  // Every (seq, key) entry of the chain's data-subject index.
  virtual absl::Status SubjectIndex(const std::string& chain,
                                    const std::function<void(int64_t seq, int64_t key)>& each) = 0;
  // Records matching the filter's columns (the caller re-checks data subjects), in the
  // source's query order (SQLite: seq; PostgreSQL: time, chain, seq), after the filter's
  // paging position, until `each` returns false.
  virtual absl::Status Query(const QueryFilter& filter,
                             const std::function<bool(const RecordRow&)>& each) = 0;
  // Lowest seq of the chain still stored (0: none).
  virtual absl::StatusOr<int64_t> FirstSeq(const std::string& chain) = 0;
  // Whether records name their chain (PostgreSQL): then a checkpoint's instance must be its
  // chain.
  virtual bool multi_chain() const = 0;
};

// The filter's column conditions, shared by the backends' Query(): "cond AND cond ..." ("TRUE"
// when none); `placeholder(i)` is the marker of the i-th (0-based) parameter, appended to
// `binds`; `subject_condition(marker)` the backend's data-subject index lookup.
struct SqlBind {
  bool is_text = false;
  std::string text;
  int64_t num = 0;
};
std::string FilterConditions(const QueryFilter& filter,
                             const std::function<std::string(size_t)>& placeholder,
                             const std::function<std::string(const std::string&)>& subject_condition,
                             std::vector<SqlBind>* binds);

absl::StatusOr<std::unique_ptr<AuditSource>> OpenSqliteAuditSource(const std::string& path);
absl::StatusOr<std::unique_ptr<AuditSource>> OpenPostgresAuditSource(
    const pg::ConnectOptions& connect);

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_AUDIT_STORAGE_H_
