// Reading the audit log: query, verification and export, for the auditor tool and the
// auditor gRPC service. Opens the database read-only (SQLite) or reads with whatever role it
// is given (PostgreSQL: the auditor's role, which may only SELECT); never changes it. The
// logic is written once over AuditSource (audit_storage.h).
//
// Guarantees:
//  - Verify() walks the whole chain and all checkpoints and reports the first bad record:
//    a record whose bytes, position or indexed columns were altered, a missing (deleted)
//    record, an inserted or reordered one, a checkpoint whose signature does not verify with
//    the given public key (forged) or whose head does not match the chain (rewritten chain),
//    and records missing after a checkpoint (truncated). A prefix deleted by retention is
//    accepted only when the record before the first one is vouched for by a signed
//    checkpoint. Records after the last checkpoint are reported as `unsigned_tail`: they are
//    chained, but a truncation among them cannot be detected offline.
//  - PostgreSQL (several chains, one per replica): Verify() checks every chain with the same
//    rules, and also that each checkpoint was signed for its chain's instance; the first
//    problem is reported with its chain named ("chain knooppunt-2: record 7 ..."), and
//    VerifyResult::bad_chain says which. Verify() and Export() read one snapshot of
//    the log (a transaction), so replicas appending meanwhile cannot make it look broken.
//  - Query() returns records matching every filter given; a data-subject filter is checked
//    against the record itself, not only the index. Order: seq (SQLite, one chain); on
//    PostgreSQL by record time, then chain, then seq (time is the gateway's clock when the
//    decision was taken; replicas' clocks are assumed NTP-synchronised). Paging: pass the last
//    entry's seq as after_seq and, on PostgreSQL, its chain and time_ns as after_chain and
//    after_time_ns.
//  - Export() writes one chain's records (and the checkpoints that cover them) after those
//    already in the directory to a new file; the files continue one chain and VerifyExport()
//    checks them offline with the same rules as Verify(). On PostgreSQL name the chain;
//    ChainDirectory() gives each chain a directory of its own under one export root.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_AUDIT_READER_H_
#define KNOOPPUNT_GATEWAY_AUDIT_AUDIT_READER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_storage.h"
#include "gateway/common/pg_util.h"
#include "knooppunt/audit/v1/decision_record.pb.h"

namespace knooppunt::audit {

struct QueryFilter {
  absl::Time from = absl::InfinitePast();    // inclusive
  absl::Time until = absl::InfiniteFuture(); // exclusive
  std::string sender, recipient, message_type, agreement_id, trace_id;
  v1::Decision decision = v1::DECISION_UNSPECIFIED;
  std::string data_subject;                  // pseudonym
  // Only records naming this OIN (authenticated caller, sender or recipient); for
  // organisations reading their own records.
  std::string party_oin;
  int64_t after_seq = 0;                     // for paging
  // PostgreSQL paging (with after_seq): after this entry of the (time, chain, seq) order;
  // unset (after_chain empty): from the start.
  std::string after_chain;
  int64_t after_time_ns = 0;
  int64_t limit = 0;                         // 0: all
};

struct AuditEntry {
  std::string chain;                         // "" in SQLite; the instance_id on PostgreSQL
  int64_t time_ns = 0;
  int64_t seq = 0;
  std::string hash;                          // raw
  v1::DecisionRecord record;
};

struct VerifyResult {
  bool intact = true;
  int64_t records = 0;
  int64_t checkpoints = 0;
  int64_t first_seq = 0, last_seq = 0;
  int64_t first_bad_seq = 0;
  std::string problem;
  int64_t unsigned_tail = 0;
  // Several chains (PostgreSQL): the chain of the problem, and each chain's own numbers
  // (the totals above add them up; first_seq/last_seq are those of the only or the bad chain).
  std::string bad_chain;
  struct Chain {
    std::string name;
    int64_t records = 0, checkpoints = 0, first_seq = 0, last_seq = 0, unsigned_tail = 0;
  };
  std::vector<Chain> chains;
};

// The chain rules, fed record by record (shared by the database and export verification).
class ChainVerifier {
 public:
  explicit ChainVerifier(const SignatureVerifier& key) : keys_{&key} {}
  // After a rotation of the signing key: a checkpoint is valid when any of `keys` signed it.
  explicit ChainVerifier(std::vector<const SignatureVerifier*> keys) : keys_(std::move(keys)) {}
  // All checkpoints first, in any order.
  void AddCheckpoint(const Checkpoint& c);
  // Then the records in ascending seq. Returns false once the chain is broken.
  bool AddRecord(int64_t seq, absl::string_view bytes, absl::string_view stored_hash);
  // Reports a problem found by the caller (e.g. columns not matching the record).
  void Fail(int64_t seq, std::string problem);
  VerifyResult Finish();
  bool failed() const { return !result_.intact; }

 private:
  bool Begin(int64_t first_seq);
  std::vector<const SignatureVerifier*> keys_;
  std::map<int64_t, Checkpoint> checkpoints_;
  VerifyResult result_;
  bool started_ = false;
  std::string head_;
  int64_t last_good_checkpoint_ = 0;
};

class AuditReader {
 public:
  // SQLite.
  static absl::StatusOr<std::unique_ptr<AuditReader>> Open(const std::string& db_path);
  // PostgreSQL (every chain in the database).
  static absl::StatusOr<std::unique_ptr<AuditReader>> OpenPostgres(
      const pg::ConnectOptions& connect);
  explicit AuditReader(std::unique_ptr<AuditSource> source) : source_(std::move(source)) {}

  // Calls `each` per matching record until it returns false.
  absl::Status Query(const QueryFilter& filter,
                     const std::function<bool(const AuditEntry&)>& each) const;
  absl::StatusOr<VerifyResult> Verify(const SignatureVerifier& key) const { return Verify({&key}); }
  absl::StatusOr<VerifyResult> Verify(std::vector<const SignatureVerifier*> keys) const;
  // Returns the path of the file written ("" when nothing new to export). `chain`: which
  // chain (PostgreSQL; required there when the log holds more than one).
  absl::StatusOr<std::string> Export(const std::string& dir, const std::string& chain = "") const;
  // The chains in the log, sorted ({""} for SQLite).
  absl::StatusOr<std::vector<std::string>> Chains() const;
  bool multi_chain() const { return source_->multi_chain(); }

 private:
  absl::StatusOr<VerifyResult> VerifyChain(const std::string& chain,
                                           const std::vector<const SignatureVerifier*>& keys) const;
  absl::Status CheckSubjectIndexExactly(const std::string& chain, ChainVerifier* v) const;
  // The source is not thread-safe; a reader is used by one thread at a time.
  std::unique_ptr<AuditSource> source_;
};

// A directory name for a chain's export under one root: the chain name when it is made of
// letters, digits, '.', '_' and '-' (and is not "." or ".."), else its hex.
std::string ChainDirectory(const std::string& chain);

absl::StatusOr<VerifyResult> VerifyExport(const std::string& dir,
                                          std::vector<const SignatureVerifier*> keys);
inline absl::StatusOr<VerifyResult> VerifyExport(const std::string& dir,
                                                 const SignatureVerifier& key) {
  return VerifyExport(dir, std::vector<const SignatureVerifier*>{&key});
}

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_AUDIT_READER_H_
