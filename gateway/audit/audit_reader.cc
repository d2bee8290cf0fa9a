#include "gateway/audit/audit_reader.h"

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "gateway/common/sqlite_util.h"
#include "google/protobuf/util/time_util.h"

namespace knooppunt::audit {
namespace {

using sqlite::Statement;

absl::string_view Blob(sqlite3_stmt* s, int col) { return sqlite::ColumnBytes(s, col); }
std::string Text(sqlite3_stmt* s, int col) { return sqlite::ColumnString(s, col); }

absl::Status DbError(sqlite3* db, absl::string_view what) {
  return absl::UnavailableError(absl::StrCat(what, ": ", sqlite3_errmsg(db)));
}

std::vector<Checkpoint> ReadCheckpoints(sqlite3* db) {
  std::vector<Checkpoint> out;
  Statement st(db, "SELECT seq, head, time_ns, instance_id, key_id, signature FROM checkpoints");
  while (st.ok() && sqlite3_step(st.get()) == SQLITE_ROW) {
    Checkpoint c;
    c.seq = sqlite3_column_int64(st.get(), 0);
    c.head = std::string(Blob(st.get(), 1));
    c.time_ns = sqlite3_column_int64(st.get(), 2);
    c.instance_id = Text(st.get(), 3);
    c.key_id = Text(st.get(), 4);
    c.signature = std::string(Blob(st.get(), 5));
    out.push_back(std::move(c));
  }
  return out;
}

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

absl::StatusOr<std::unique_ptr<AuditReader>> AuditReader::Open(const std::string& db_path) {
  if (!std::filesystem::exists(db_path)) {
    return absl::NotFoundError(absl::StrCat("no audit database at ", db_path));
  }
  std::unique_ptr<AuditReader> r(new AuditReader());
  if (sqlite3_open_v2(db_path.c_str(), &r->db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    return DbError(r->db_, absl::StrCat("cannot open audit database ", db_path));
  }
  sqlite3_busy_timeout(r->db_, 5000);
  sqlite3_exec(r->db_, "PRAGMA mmap_size=1073741824; PRAGMA cache_size=-65536", nullptr, nullptr,
               nullptr);
  Statement check(r->db_, "SELECT 1 FROM records LIMIT 1");
  if (!check.ok()) return DbError(r->db_, absl::StrCat(db_path, " is not an audit database"));
  return r;
}

AuditReader::~AuditReader() { sqlite3_close(db_); }

absl::Status AuditReader::Query(const QueryFilter& f,
                                const std::function<bool(const AuditEntry&)>& each) const {
  std::string sql = "SELECT seq, hash, record FROM records WHERE seq > ?";
  struct Bind { bool is_text; std::string text; int64_t num; };
  std::vector<Bind> binds{{false, "", f.after_seq}};
  auto text = [&](const char* clause, const std::string& v) {
    absl::StrAppend(&sql, " AND ", clause);
    binds.push_back({true, v, 0});
  };
  if (f.from != absl::InfinitePast()) {
    absl::StrAppend(&sql, " AND time_ns >= ?");
    binds.push_back({false, "", absl::ToUnixNanos(f.from)});
  }
  if (f.until != absl::InfiniteFuture()) {
    absl::StrAppend(&sql, " AND time_ns < ?");
    binds.push_back({false, "", absl::ToUnixNanos(f.until)});
  }
  if (!f.sender.empty()) text("sender = ?", f.sender);
  if (!f.recipient.empty()) text("recipient = ?", f.recipient);
  if (!f.message_type.empty()) text("message_type = ?", f.message_type);
  if (!f.agreement_id.empty()) text("agreement_id = ?", f.agreement_id);
  if (!f.trace_id.empty()) text("trace_id = ?", f.trace_id);
  if (f.decision != v1::DECISION_UNSPECIFIED) {
    absl::StrAppend(&sql, " AND decision = ?");
    binds.push_back({false, "", static_cast<int64_t>(f.decision)});
  }
  if (!f.data_subject.empty()) {
    absl::StrAppend(&sql, " AND seq IN (SELECT seq FROM subjects WHERE pkey = ?)");
    binds.push_back({false, "", PseudonymKey(f.data_subject)});
  }
  if (!f.party_oin.empty()) {
    absl::StrAppend(&sql, " AND (sender = ? OR recipient = ? OR authenticated_oin = ?)");
    for (int i = 0; i < 3; ++i) binds.push_back({true, f.party_oin, 0});
  }
  absl::StrAppend(&sql, " ORDER BY seq");
  Statement st(db_, sql);
  if (!st.ok()) return DbError(db_, "audit query");
  for (size_t i = 0; i < binds.size(); ++i) {
    const int idx = static_cast<int>(i) + 1;
    if (binds[i].is_text) {
      sqlite3_bind_text(st.get(), idx, binds[i].text.data(),
                        static_cast<int>(binds[i].text.size()), SQLITE_STATIC);
    } else {
      sqlite3_bind_int64(st.get(), idx, binds[i].num);
    }
  }
  int64_t n = 0;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    AuditEntry e;
    e.seq = sqlite3_column_int64(st.get(), 0);
    e.hash = std::string(Blob(st.get(), 1));
    absl::string_view bytes = Blob(st.get(), 2);
    if (!e.record.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return absl::DataLossError(absl::StrCat("audit record ", e.seq, " does not parse"));
    }
    if (!f.data_subject.empty() &&
        std::find(e.record.data_subjects().begin(), e.record.data_subjects().end(),
                  f.data_subject) == e.record.data_subjects().end()) {
      continue;  // the index names it, the record does not: Verify() reports this
    }
    if (!each(e)) return absl::OkStatus();
    if (f.limit > 0 && ++n >= f.limit) return absl::OkStatus();
  }
  if (rc != SQLITE_DONE) return DbError(db_, "audit query");
  return absl::OkStatus();
}

void AuditReader::CheckSubjectIndexExactly(ChainVerifier* v) const {
  absl::flat_hash_set<std::pair<int64_t, int64_t>> index;
  {
    Statement st(db_, "SELECT seq, pkey FROM subjects");
    while (st.ok() && sqlite3_step(st.get()) == SQLITE_ROW) {
      index.insert({sqlite3_column_int64(st.get(), 0), sqlite3_column_int64(st.get(), 1)});
    }
  }
  Statement st(db_, "SELECT seq, record FROM records ORDER BY seq");
  v1::DecisionRecord r;
  while (st.ok() && sqlite3_step(st.get()) == SQLITE_ROW) {
    const int64_t seq = sqlite3_column_int64(st.get(), 0);
    absl::string_view bytes = Blob(st.get(), 1);
    if (!r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) continue;
    for (const std::string& subject : r.data_subjects()) {
      if (index.erase({seq, PseudonymKey(subject)}) == 0) {
        v->Fail(seq, absl::StrCat("record ", seq,
                                  ": a data subject was removed from the index (hidden from "
                                  "queries by BSN)"));
        return;
      }
    }
  }
  int64_t worst = INT64_MAX;
  for (const auto& k : index) worst = std::min(worst, k.first);
  if (worst != INT64_MAX) {
    v->Fail(worst, absl::StrCat("the data subject index names record ", worst,
                                " for a subject the record does not hold"));
  }
}

absl::StatusOr<VerifyResult> AuditReader::Verify(
    std::vector<const SignatureVerifier*> keys) const {
  ChainVerifier v(std::move(keys));
  for (const Checkpoint& c : ReadCheckpoints(db_)) v.AddCheckpoint(c);

  // The subject index, so that hiding a record from a query by BSN is caught too: first a
  // cheap aggregate (count and sum of per-entry hashes); only when it differs, an exact pass
  // to name the record.
  uint64_t index_sum = 0, index_count = 0, record_sum = 0, record_count = 0;
  auto entry_hash = [](int64_t seq, int64_t key) {
    return static_cast<uint64_t>(absl::Hash<std::pair<int64_t, int64_t>>{}({seq, key}));
  };
  {
    Statement st(db_, "SELECT seq, pkey FROM subjects");
    if (!st.ok()) return DbError(db_, "audit verify");
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      index_sum += entry_hash(sqlite3_column_int64(st.get(), 0), sqlite3_column_int64(st.get(), 1));
      ++index_count;
    }
  }
  Statement st(db_,
          "SELECT seq, record, hash, time_ns, sender, recipient, authenticated_oin, "
          "message_type, agreement_id, decision, trace_id FROM records ORDER BY seq");
  if (!st.ok()) return DbError(db_, "audit verify");
  v1::DecisionRecord r;
  int rc;
  while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
    const int64_t seq = sqlite3_column_int64(st.get(), 0);
    absl::string_view bytes = Blob(st.get(), 1);
    if (!v.AddRecord(seq, bytes, Blob(st.get(), 2))) break;
    if (!r.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      v.Fail(seq, absl::StrCat("record ", seq, " does not parse"));
      break;
    }
    const std::string& recipient = r.recipient_oin().empty() ? r.recipient() : r.recipient_oin();
    auto col = [&](int i, const std::string& want) {
      absl::string_view got(reinterpret_cast<const char*>(sqlite3_column_text(st.get(), i)),
                            static_cast<size_t>(sqlite3_column_bytes(st.get(), i)));
      return got == want;
    };
    if (sqlite3_column_int64(st.get(), 3) !=
            google::protobuf::util::TimeUtil::TimestampToNanoseconds(r.time()) ||
        !col(4, r.sender()) || !col(5, recipient) || !col(6, r.authenticated_oin()) ||
        !col(7, r.message_type()) || !col(8, r.agreement_id()) ||
        sqlite3_column_int(st.get(), 9) != static_cast<int>(r.decision()) ||
        !col(10, r.trace_id())) {
      v.Fail(seq, absl::StrCat("record ", seq,
                               ": its indexed columns were altered (they differ from the "
                               "chained record)"));
      break;
    }
    for (const std::string& subject : r.data_subjects()) {
      record_sum += entry_hash(seq, PseudonymKey(subject));
      ++record_count;
    }
  }
  if (!v.failed() && rc != SQLITE_ROW && rc != SQLITE_DONE) return DbError(db_, "audit verify");
  if (!v.failed() && (index_sum != record_sum || index_count != record_count)) {
    CheckSubjectIndexExactly(&v);
  }
  return v.Finish();
}

absl::StatusOr<std::string> AuditReader::Export(const std::string& dir) const {
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
  int64_t first_in_db = 0;
  {
    Statement st(db_, "SELECT min(seq), max(seq) FROM records");
    if (st.ok() && sqlite3_step(st.get()) == SQLITE_ROW) first_in_db = sqlite3_column_int64(st.get(), 0);
  }
  if (first_in_db > last + 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "records ", last + 1, "..", first_in_db - 1,
        " were deleted by retention before they were exported; start a new export directory"));
  }
  Statement st(db_, "SELECT seq, hash, record FROM records WHERE seq > ? ORDER BY seq");
  if (!st.ok()) return DbError(db_, "audit export");
  sqlite3_bind_int64(st.get(), 1, last);
  std::string body;
  int64_t first = 0, end = last;
  while (sqlite3_step(st.get()) == SQLITE_ROW) {
    const int64_t seq = sqlite3_column_int64(st.get(), 0);
    if (first == 0) first = seq;
    end = seq;
    absl::StrAppend(&body, "R\t", seq, "\t", ToHex(Blob(st.get(), 1)), "\t",
                    absl::Base64Escape(Blob(st.get(), 2)), "\n");
  }
  if (first == 0) return std::string();
  std::string out = "#knooppunt-audit-export v1\n";
  for (const Checkpoint& c : ReadCheckpoints(db_)) {
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
