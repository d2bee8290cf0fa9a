#include "gateway/audit/audit_reader.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::audit {
namespace {

// BeginRead() ... EndRead() of a source, for one scope.
class ReadSnapshot {
 public:
  explicit ReadSnapshot(AuditSource* source) : source_(source), status_(source->BeginRead()) {}
  ~ReadSnapshot() {
    if (status_.ok()) source_->EndRead();
  }
  const absl::Status& status() const { return status_; }

 private:
  AuditSource* source_;
  absl::Status status_;
};

std::string CheckpointLine(const Checkpoint& c) {
  return absl::StrCat("C\t", c.seq, "\t", ToHex(c.head), "\t", c.time_ns, "\t",
                      absl::Base64Escape(c.instance_id), "\t", c.key_id, "\t", ToHex(c.signature),
                      "\n");
}

std::vector<std::filesystem::path> ExportFiles(const std::string& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (absl::StartsWith(name, "audit-") && absl::EndsWith(name, ".log")) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

// ---- ChainVerifier ----

void ChainVerifier::Fail(int64_t seq, std::string problem) {
  if (result_.intact || seq < result_.first_bad_seq) {
    result_.intact = false;
    result_.first_bad_seq = seq;
    result_.problem = std::move(problem);
  }
}

void ChainVerifier::AddCheckpoint(const Checkpoint& c) {
  bool signed_by_key = false;
  const std::string message = CheckpointMessage(c);
  for (const SignatureVerifier* key : keys_) {
    if (key->key_id() == c.key_id && key->Verify(message, c.signature)) signed_by_key = true;
  }
  if (c.head.size() != kHashBytes || !signed_by_key) {
    Fail(c.seq, absl::StrCat("checkpoint at seq ", c.seq,
                             " has no valid signature by the audit key (forged or altered)"));
    return;
  }
  checkpoints_[c.seq] = c;
}

bool ChainVerifier::Begin(int64_t first_seq) {
  started_ = true;
  result_.first_seq = first_seq;
  result_.last_seq = first_seq - 1;
  if (first_seq == 1) {
    head_ = GenesisHash();
    return true;
  }
  auto it = checkpoints_.find(first_seq - 1);
  if (it == checkpoints_.end()) {
    Fail(1, absl::StrCat("records 1..", first_seq - 1,
                         " are missing and no signed checkpoint at seq ", first_seq - 1,
                         " vouches for their removal by retention"));
    return false;
  }
  head_ = it->second.head;
  last_good_checkpoint_ = first_seq - 1;
  return true;
}

bool ChainVerifier::AddRecord(int64_t seq, absl::string_view bytes, absl::string_view stored_hash) {
  if (failed()) return false;
  // Positions are 1..max-1, so that seq - 1 and seq + 1 below cannot overflow on a crafted
  // export line or database row (found by tests/fuzz/audit_export_fuzz).
  if (seq < 1 || seq == std::numeric_limits<int64_t>::max()) {
    Fail(seq, absl::StrCat("record ", seq, " has an impossible position"));
    return false;
  }
  if (!started_ && !Begin(seq)) return false;
  const int64_t expected = result_.last_seq + 1;
  if (seq != expected) {
    if (seq > expected) {
      Fail(expected, absl::StrCat("record ", expected, " is missing (deleted)"));
    } else {
      Fail(seq, absl::StrCat("record ", seq, " is out of order or duplicated"));
    }
    return false;
  }
  std::string h = ChainHash(head_, seq, bytes);
  if (h != stored_hash) {
    Fail(seq, absl::StrCat("record ", seq,
                           " does not match its chain hash: altered, inserted or moved (or its "
                           "predecessor's hash was rewritten)"));
    return false;
  }
  head_ = std::move(h);
  ++result_.records;
  result_.last_seq = seq;
  auto it = checkpoints_.find(seq);
  if (it != checkpoints_.end()) {
    if (it->second.head != head_) {
      Fail(last_good_checkpoint_ + 1,
           absl::StrCat("chain rewritten: signed checkpoint at seq ", seq,
                        " does not match the records; records ", last_good_checkpoint_ + 1, "..",
                        seq, " are suspect"));
      return false;
    }
    last_good_checkpoint_ = seq;
  }
  return true;
}

VerifyResult ChainVerifier::Finish() {
  result_.checkpoints = static_cast<int64_t>(checkpoints_.size());
  if (!checkpoints_.empty()) {
    const int64_t newest = checkpoints_.rbegin()->first;
    if (!failed() && newest > result_.last_seq) {
      Fail(result_.last_seq + 1,
           absl::StrCat("records ", result_.last_seq + 1, "..", newest,
                        " are missing (truncated): the signed checkpoint at seq ", newest,
                        " covers them"));
    }
    result_.unsigned_tail = std::max<int64_t>(0, result_.last_seq - newest);
  } else {
    result_.unsigned_tail = result_.records;
  }
  return result_;
}

// ---- AuditReader ----

std::string FilterConditions(const QueryFilter& f,
                             const std::function<std::string(size_t)>& placeholder,
                             const std::function<std::string(const std::string&)>& subject_condition,
                             std::vector<SqlBind>* binds) {
  std::vector<std::string> conds;
  auto add = [&](const char* column, const char* op, SqlBind b) {
    conds.push_back(absl::StrCat(column, " ", op, " ", placeholder(binds->size())));
    binds->push_back(std::move(b));
  };
  auto text = [&](const char* column, const std::string& v) {
    if (!v.empty()) add(column, "=", {true, v, 0});
  };
  if (f.from != absl::InfinitePast()) add("time_ns", ">=", {false, "", absl::ToUnixNanos(f.from)});
  if (f.until != absl::InfiniteFuture()) {
    add("time_ns", "<", {false, "", absl::ToUnixNanos(f.until)});
  }
  text("sender", f.sender);
  text("recipient", f.recipient);
  text("message_type", f.message_type);
  text("agreement_id", f.agreement_id);
  text("trace_id", f.trace_id);
  if (f.decision != v1::DECISION_UNSPECIFIED) {
    add("decision", "=", {false, "", static_cast<int64_t>(f.decision)});
  }
  if (!f.data_subject.empty()) {
    conds.push_back(subject_condition(placeholder(binds->size())));
    binds->push_back({false, "", PseudonymKey(f.data_subject)});
  }
  if (!f.party_oin.empty()) {
    std::string c = "(";
    for (const char* column : {"sender", "recipient", "authenticated_oin"}) {
      absl::StrAppend(&c, c.size() > 1 ? " OR " : "", column, " = ", placeholder(binds->size()));
      binds->push_back({true, f.party_oin, 0});
    }
    conds.push_back(c + ")");
  }
  if (conds.empty()) return "TRUE";
  return absl::StrJoin(conds, " AND ");
}

std::string ChainDirectory(const std::string& chain) {
  bool plain = !chain.empty() && chain != "." && chain != "..";
  for (char c : chain) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      plain = false;
    }
  }
  return plain ? chain : absl::StrCat("x", ToHex(chain));
}

absl::StatusOr<std::unique_ptr<AuditReader>> AuditReader::Open(const std::string& db_path) {
  absl::StatusOr<std::unique_ptr<AuditSource>> source = OpenSqliteAuditSource(db_path);
  if (!source.ok()) return source.status();
  return std::make_unique<AuditReader>(*std::move(source));
}

absl::StatusOr<std::unique_ptr<AuditReader>> AuditReader::OpenPostgres(
    const pg::ConnectOptions& connect) {
  absl::StatusOr<std::unique_ptr<AuditSource>> source = OpenPostgresAuditSource(connect);
  if (!source.ok()) return source.status();
  return std::make_unique<AuditReader>(*std::move(source));
}

absl::StatusOr<std::vector<std::string>> AuditReader::Chains() const { return source_->Chains(); }

absl::Status AuditReader::Query(const QueryFilter& f,
                                const std::function<bool(const AuditEntry&)>& each) const {
  int64_t n = 0;
  absl::Status parse_error;
  absl::Status s = source_->Query(f, [&](const RecordRow& row) {
    AuditEntry e;
    e.chain = std::string(row.chain);
    e.time_ns = row.time_ns;
    e.seq = row.seq;
    e.hash = std::string(row.hash);
    if (!e.record.ParseFromArray(row.bytes.data(), static_cast<int>(row.bytes.size()))) {
      parse_error = absl::DataLossError(absl::StrCat(
          "audit record ", e.chain.empty() ? "" : absl::StrCat(e.chain, "/"), e.seq,
          " does not parse"));
      return false;
    }
    if (!f.data_subject.empty() &&
        std::find(e.record.data_subjects().begin(), e.record.data_subjects().end(),
                  f.data_subject) == e.record.data_subjects().end()) {
      return true;  // the index names it, the record does not: Verify() reports this
    }
    if (!each(e)) return false;
    return !(f.limit > 0 && ++n >= f.limit);
  });
  if (!s.ok()) return s;
  return parse_error;
}

absl::Status AuditReader::CheckSubjectIndexExactly(const std::string& chain,
                                                   ChainVerifier* v) const {
  absl::flat_hash_set<std::pair<int64_t, int64_t>> index;
  absl::Status s = source_->SubjectIndex(
      chain, [&](int64_t seq, int64_t key) { index.insert({seq, key}); });
  if (!s.ok()) return s;
  v1::DecisionRecord r;
  bool failed = false;
  s = source_->Records(chain, 0, [&](const RecordRow& row) {
    if (!r.ParseFromArray(row.bytes.data(), static_cast<int>(row.bytes.size()))) return true;
    for (const std::string& subject : r.data_subjects()) {
      if (index.erase({row.seq, PseudonymKey(subject)}) == 0) {
        v->Fail(row.seq, absl::StrCat("record ", row.seq,
                                      ": a data subject was removed from the index (hidden from "
                                      "queries by BSN)"));
        failed = true;
        return false;
      }
    }
    return true;
  });
  if (!s.ok() || failed) return s;
  int64_t worst = INT64_MAX;
  for (const auto& k : index) worst = std::min(worst, k.first);
  if (worst != INT64_MAX) {
    v->Fail(worst, absl::StrCat("the data subject index names record ", worst,
                                " for a subject the record does not hold"));
  }
  return absl::OkStatus();
}

absl::StatusOr<VerifyResult> AuditReader::VerifyChain(
    const std::string& chain, const std::vector<const SignatureVerifier*>& keys) const {
  ChainVerifier v(keys);
  absl::StatusOr<std::vector<Checkpoint>> checkpoints = source_->Checkpoints(chain);
  if (!checkpoints.ok()) return checkpoints.status();
  for (const Checkpoint& c : *checkpoints) {
    v.AddCheckpoint(c);
    if (source_->multi_chain() && c.instance_id != chain) {
      v.Fail(c.seq, absl::StrCat("checkpoint at seq ", c.seq, " was signed for instance \"",
                                 c.instance_id, "\", not for this chain (moved between chains)"));
    }
  }

  // The subject index, so that hiding a record from a query by BSN is caught too: first a
  // cheap aggregate (count and sum of per-entry hashes); only when it differs, an exact pass
  // to name the record.
  uint64_t index_sum = 0, index_count = 0, record_sum = 0, record_count = 0;
  auto entry_hash = [](int64_t seq, int64_t key) {
    return static_cast<uint64_t>(absl::Hash<std::pair<int64_t, int64_t>>{}({seq, key}));
  };
  absl::Status s = source_->SubjectIndex(chain, [&](int64_t seq, int64_t key) {
    index_sum += entry_hash(seq, key);
    ++index_count;
  });
  if (!s.ok()) return s;
  v1::DecisionRecord r;
  s = source_->Records(chain, 0, [&](const RecordRow& row) {
    const int64_t seq = row.seq;
    if (!v.AddRecord(seq, row.bytes, row.hash)) return false;
    if (!r.ParseFromArray(row.bytes.data(), static_cast<int>(row.bytes.size()))) {
      v.Fail(seq, absl::StrCat("record ", seq, " does not parse"));
      return false;
    }
    const std::string& recipient = r.recipient_oin().empty() ? r.recipient() : r.recipient_oin();
    if (row.time_ns != google::protobuf::util::TimeUtil::TimestampToNanoseconds(r.time()) ||
        row.sender != r.sender() || row.recipient != recipient ||
        row.authenticated_oin != r.authenticated_oin() || row.message_type != r.message_type() ||
        row.agreement_id != r.agreement_id() || row.decision != static_cast<int>(r.decision()) ||
        row.trace_id != r.trace_id()) {
      v.Fail(seq, absl::StrCat("record ", seq,
                               ": its indexed columns were altered (they differ from the "
                               "chained record)"));
      return false;
    }
    for (const std::string& subject : r.data_subjects()) {
      record_sum += entry_hash(seq, PseudonymKey(subject));
      ++record_count;
    }
    return true;
  });
  if (!s.ok() && !v.failed()) return s;
  if (!v.failed() && (index_sum != record_sum || index_count != record_count)) {
    s = CheckSubjectIndexExactly(chain, &v);
    if (!s.ok()) return s;
  }
  return v.Finish();
}

absl::StatusOr<VerifyResult> AuditReader::Verify(
    std::vector<const SignatureVerifier*> keys) const {
  ReadSnapshot snapshot(source_.get());
  if (!snapshot.status().ok()) return snapshot.status();
  absl::StatusOr<std::vector<std::string>> chains = source_->Chains();
  if (!chains.ok()) return chains.status();
  VerifyResult total;
  for (const std::string& chain : *chains) {
    absl::StatusOr<VerifyResult> one = VerifyChain(chain, keys);
    if (!one.ok()) return one.status();
    total.chains.push_back({chain, one->records, one->checkpoints, one->first_seq,
                            one->last_seq, one->unsigned_tail});
    total.records += one->records;
    total.checkpoints += one->checkpoints;
    total.unsigned_tail += one->unsigned_tail;
    if (chains->size() == 1 || !one->intact) {
      total.first_seq = one->first_seq;
      total.last_seq = one->last_seq;
    }
    if (!one->intact && total.intact) {
      total.intact = false;
      total.first_bad_seq = one->first_bad_seq;
      total.bad_chain = chain;
      total.problem = source_->multi_chain()
                          ? absl::StrCat("chain ", chain, ": ", one->problem)
                          : one->problem;
    }
  }
  return total;
}

absl::StatusOr<std::string> AuditReader::Export(const std::string& dir,
                                                const std::string& chain_name) const {
  std::string chain = chain_name;
  if (chain.empty() && source_->multi_chain()) {
    absl::StatusOr<std::vector<std::string>> chains = source_->Chains();
    if (!chains.ok()) return chains.status();
    if (chains->size() > 1) {
      return absl::InvalidArgumentError("the audit log holds several chains: name one to export");
    }
    if (!chains->empty()) chain = chains->front();
  }
  ReadSnapshot snapshot(source_.get());
  if (!snapshot.status().ok()) return snapshot.status();
  absl::Status s;
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  // Where the previous export ended.
  int64_t last = 0;
  std::vector<std::filesystem::path> files = ExportFiles(dir);
  if (!files.empty()) {
    std::ifstream in(files.back());
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, "R\t")) {
        std::vector<absl::string_view> parts = absl::StrSplit(line, '\t');
        int64_t seq = 0;
        if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &seq)) last = seq;
      }
    }
  }
  absl::StatusOr<int64_t> first_in_db = source_->FirstSeq(chain);
  if (!first_in_db.ok()) return first_in_db.status();
  if (*first_in_db > last + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "records ", last + 1, "..", *first_in_db - 1,
        " were deleted by retention before they were exported; start a new export directory"));
  }
  std::string body;
  int64_t first = 0, end = last;
  s = source_->Records(chain, last, [&](const RecordRow& row) {
    if (first == 0) first = row.seq;
    end = row.seq;
    absl::StrAppend(&body, "R\t", row.seq, "\t", ToHex(row.hash), "\t",
                    absl::Base64Escape(row.bytes), "\n");
    return true;
  });
  if (!s.ok()) return s;
  if (first == 0) return std::string();
  absl::StatusOr<std::vector<Checkpoint>> checkpoints = source_->Checkpoints(chain);
  if (!checkpoints.ok()) return checkpoints.status();
  std::sort(checkpoints->begin(), checkpoints->end(),
            [](const Checkpoint& a, const Checkpoint& b) { return a.seq < b.seq; });
  std::string out = "#knooppunt-audit-export v1\n";
  for (const Checkpoint& c : *checkpoints) {
    if (c.seq >= first - 1 && c.seq <= end) absl::StrAppend(&out, CheckpointLine(c));
  }
  absl::StrAppend(&out, body);
  const std::string path = (std::filesystem::path(dir) /
                            absl::StrFormat("audit-%012d.log", first)).string();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << out;
    f.flush();
    if (!f) return absl::UnavailableError(absl::StrCat("cannot write ", tmp));
  }
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot write ", path, ": ", ec.message()));
  return path;
}

absl::StatusOr<VerifyResult> VerifyExport(const std::string& dir,
                                          std::vector<const SignatureVerifier*> keys) {
  std::vector<std::filesystem::path> files = ExportFiles(dir);
  if (files.empty()) return absl::NotFoundError(absl::StrCat("no audit-*.log files in ", dir));
  ChainVerifier v(std::move(keys));
  absl::flat_hash_set<int64_t> seen;
  for (const auto& file : files) {  // pass 1: checkpoints
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      if (!absl::StartsWith(line, "C\t")) continue;
      std::vector<std::string> p = absl::StrSplit(line, '\t');
      Checkpoint c;
      std::string instance;
      if (p.size() != 7 || !absl::SimpleAtoi(p[1], &c.seq) || !absl::SimpleAtoi(p[3], &c.time_ns) ||
          !absl::Base64Unescape(p[4], &instance)) {
        return absl::DataLossError(absl::StrCat(file.string(), ": malformed checkpoint line"));
      }
      if (!seen.insert(c.seq).second) continue;
      c.head = FromHex(p[2]);
      c.instance_id = instance;
      c.key_id = p[5];
      c.signature = FromHex(p[6]);
      v.AddCheckpoint(c);
    }
  }
  for (const auto& file : files) {  // pass 2: records, one chain across the files
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) {
      if (!absl::StartsWith(line, "R\t")) continue;
      std::vector<std::string> p = absl::StrSplit(line, '\t');
      int64_t seq = 0;
      std::string bytes;
      if (p.size() != 4 || !absl::SimpleAtoi(p[1], &seq) || !absl::Base64Unescape(p[3], &bytes)) {
        v.Fail(seq, absl::StrCat(file.string(), ": malformed record line"));
        return v.Finish();
      }
      if (!v.AddRecord(seq, bytes, FromHex(p[2]))) return v.Finish();
    }
  }
  return v.Finish();
}

}  // namespace knooppunt::audit
