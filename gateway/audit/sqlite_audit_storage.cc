// The SQLite backend of the audit log (audit_storage.h): one file, one chain.
#include <sqlite3.h>
#include <sys/stat.h>

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/audit/audit_storage.h"
#include "gateway/common/sqlite_util.h"

namespace knooppunt::audit {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS records(
  seq INTEGER PRIMARY KEY,
  time_ns INTEGER NOT NULL,
  sender TEXT NOT NULL,
  recipient TEXT NOT NULL,
  authenticated_oin TEXT NOT NULL,
  message_type TEXT NOT NULL,
  agreement_id TEXT NOT NULL,
  decision INTEGER NOT NULL,
  trace_id TEXT NOT NULL,
  record BLOB NOT NULL,
  hash BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS records_time ON records(time_ns);
CREATE TABLE IF NOT EXISTS subjects(
  pkey INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  PRIMARY KEY(pkey, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints(
  seq INTEGER PRIMARY KEY,
  head BLOB NOT NULL,
  time_ns INTEGER NOT NULL,
  instance_id TEXT NOT NULL,
  key_id TEXT NOT NULL,
  signature BLOB NOT NULL);
)sql";

using sqlite::Statement;

std::string SqliteError(sqlite3* db, absl::string_view what) {
  return absl::StrCat(what, ": ", db ? sqlite3_errmsg(db) : "no database");
}
absl::Status DbError(sqlite3* db, absl::string_view what) {
  return absl::UnavailableError(SqliteError(db, what));
}

void BindText(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite::BindText(s, i, v, SQLITE_STATIC);  // bound values outlive the statement's step
}
void BindBlob(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite::BindBlob(s, i, v, SQLITE_STATIC);
}
absl::string_view Blob(sqlite3_stmt* s, int col) { return sqlite::ColumnBytes(s, col); }

class SqliteAuditStorage final : public AuditStorage {
 public:
  ~SqliteAuditStorage() override { sqlite3_close(db_); }

  absl::Status Init(const std::string& path, int64_t max_db_bytes) {
    if (sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      return DbError(db_, absl::StrCat("cannot open audit database ", path));
    }
    // Readable by the gateway's user only (SQLite gives the -wal and -shm files the same mode).
    ::chmod(path.c_str(), 0600);
    sqlite3_busy_timeout(db_, 5000);
    // WAL with synchronous=FULL: a commit is on disk when it returns. The WAL is folded into
    // the database every ~40 MB rather than every 4 MB, so group commits stay cheap.
    for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                            "PRAGMA cache_size=-65536", "PRAGMA wal_autocheckpoint=10000"}) {
      absl::Status s = Exec(sql);
      if (!s.ok()) return s;
    }
    if (max_db_bytes > 0) {
      Statement ps(db_, "PRAGMA page_size");
      int64_t page = 4096;
      if (ps.ok() && sqlite3_step(ps.get()) == SQLITE_ROW) page = sqlite3_column_int64(ps.get(), 0);
      const std::string pragma =
          absl::StrCat("PRAGMA max_page_count=", std::max<int64_t>(1, max_db_bytes / page));
      absl::Status s = Exec(pragma.c_str());
      if (!s.ok()) return s;
    }
    return Exec(kSchema);
  }

  absl::StatusOr<ChainState> Load() override {
    ChainState state;
    state.head = GenesisHash();
    Statement last(db_, "SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1");
    Statement cp(db_, "SELECT seq, head FROM checkpoints ORDER BY seq DESC LIMIT 1");
    if (!last.ok() || !cp.ok()) return DbError(db_, "audit database");
    if (sqlite3_step(cp.get()) == SQLITE_ROW) {
      state.checkpoint_seq = sqlite3_column_int64(cp.get(), 0);
      state.seq = state.checkpoint_seq;
      state.head = std::string(Blob(cp.get(), 1));
    }
    if (sqlite3_step(last.get()) == SQLITE_ROW &&
        sqlite3_column_int64(last.get(), 0) >= state.seq) {
      state.seq = sqlite3_column_int64(last.get(), 0);
      state.head = std::string(Blob(last.get(), 1));
    }
    return state;
  }

  absl::Status Write(const std::vector<const StoredRecord*>& records,
                     const std::vector<Checkpoint>& checkpoints) override {
    absl::Status s = Exec("BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    auto fail = [&]() {
      absl::Status st = DbError(db_, "audit write");
      Exec("ROLLBACK").IgnoreError();
      return st;
    };
    static constexpr const char* kInsert =
        "INSERT INTO records(seq, time_ns, sender, recipient, authenticated_oin, message_type, "
        "agreement_id, decision, trace_id, record, hash) VALUES(?,?,?,?,?,?,?,?,?,?,?)";
    Statement ins(db_, kInsert);
    Statement sub(db_, "INSERT OR IGNORE INTO subjects(pkey, seq) VALUES(?,?)");
    Statement cp(db_,
                 "INSERT INTO checkpoints(seq, head, time_ns, instance_id, key_id, signature) "
                 "VALUES(?,?,?,?,?,?)");
    if (!ins.ok() || !sub.ok() || !cp.ok()) return fail();
    for (const StoredRecord* r : records) {
      sqlite3_stmt* st = ins.get();
      sqlite3_reset(st);
      sqlite3_bind_int64(st, 1, r->seq);
      sqlite3_bind_int64(st, 2, r->time_ns);
      BindText(st, 3, r->sender);
      BindText(st, 4, r->recipient);
      BindText(st, 5, r->authenticated_oin);
      BindText(st, 6, r->message_type);
      BindText(st, 7, r->agreement_id);
      sqlite3_bind_int(st, 8, r->decision);
      BindText(st, 9, r->trace_id);
      BindBlob(st, 10, r->bytes);
      BindBlob(st, 11, r->hash);
      if (sqlite3_step(st) != SQLITE_DONE) return fail();
      for (const std::string& subject : r->subjects) {
        sqlite3_stmt* ss = sub.get();
        sqlite3_reset(ss);
        sqlite3_bind_int64(ss, 1, PseudonymKey(subject));
        sqlite3_bind_int64(ss, 2, r->seq);
        if (sqlite3_step(ss) != SQLITE_DONE) return fail();
      }
    }
    for (const Checkpoint& c : checkpoints) {
      sqlite3_stmt* st = cp.get();
      sqlite3_reset(st);
      sqlite3_bind_int64(st, 1, c.seq);
      BindBlob(st, 2, c.head);
      sqlite3_bind_int64(st, 3, c.time_ns);
      BindText(st, 4, c.instance_id);
      BindText(st, 5, c.key_id);
      BindBlob(st, 6, c.signature);
      if (sqlite3_step(st) != SQLITE_DONE) return fail();
    }
    s = Exec("COMMIT");
    if (!s.ok()) {
      Exec("ROLLBACK").IgnoreError();
      return s;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<RetentionResult> DeleteThrough(int64_t cutoff_ns) override {
    RetentionResult result;
    // The newest checkpoint whose record is older than the cutoff: everything up to it goes.
    Statement find(db_,
                   "SELECT c.seq FROM checkpoints c JOIN records r ON r.seq = c.seq "
                   "WHERE r.time_ns < ? ORDER BY c.seq DESC LIMIT 1");
    if (!find.ok()) return DbError(db_, "audit retention");
    sqlite3_bind_int64(find.get(), 1, cutoff_ns);
    if (sqlite3_step(find.get()) != SQLITE_ROW) return result;
    const int64_t upto = sqlite3_column_int64(find.get(), 0);
    sqlite3_reset(find.get());
    absl::Status s = Exec("BEGIN IMMEDIATE");
    if (!s.ok()) return s;
    Statement del(db_, "DELETE FROM records WHERE seq <= ?");
    Statement dels(db_, "DELETE FROM subjects WHERE seq <= ?");
    bool ok = del.ok() && dels.ok();
    if (ok) {
      sqlite3_bind_int64(del.get(), 1, upto);
      sqlite3_bind_int64(dels.get(), 1, upto);
      ok = sqlite3_step(del.get()) == SQLITE_DONE;
      result.deleted = sqlite3_changes(db_);
      ok = ok && sqlite3_step(dels.get()) == SQLITE_DONE;
    }
    if (ok) ok = Exec("COMMIT").ok();
    if (!ok) {
      absl::Status st = DbError(db_, "audit retention");
      Exec("ROLLBACK").IgnoreError();
      return st;
    }
    result.through_seq = upto;
    return result;
  }

  void SetReadOnlyForTest(bool read_only) override {
    Exec(read_only ? "PRAGMA query_only=1" : "PRAGMA query_only=0").IgnoreError();
  }

 private:
  absl::Status Exec(const char* sql) { return sqlite::Exec(db_, sql, "audit database"); }
  sqlite3* db_ = nullptr;
};

class SqliteAuditSource final : public AuditSource {
 public:
  ~SqliteAuditSource() override { sqlite3_close(db_); }

  absl::Status Init(const std::string& path) {
    if (!std::filesystem::exists(path)) {
      return absl::NotFoundError(absl::StrCat("no audit database at ", path));
    }
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                        nullptr) != SQLITE_OK) {
      return DbError(db_, absl::StrCat("cannot open audit database ", path));
    }
    sqlite3_busy_timeout(db_, 5000);
    sqlite3_exec(db_, "PRAGMA mmap_size=1073741824; PRAGMA cache_size=-65536", nullptr, nullptr,
                 nullptr);
    Statement check(db_, "SELECT 1 FROM records LIMIT 1");
    if (!check.ok()) return DbError(db_, absl::StrCat(path, " is not an audit database"));
    return absl::OkStatus();
  }

  absl::Status BeginRead() override {
    // A deferred transaction: its first read fixes the snapshot (WAL).
    absl::Status s = sqlite::Exec(db_, "BEGIN", "audit database");
    if (!s.ok()) return s;
    Statement st(db_, "SELECT count(*) FROM checkpoints");
    if (!st.ok() || sqlite3_step(st.get()) != SQLITE_ROW) return DbError(db_, "audit read");
    return absl::OkStatus();
  }
  void EndRead() override { sqlite::Exec(db_, "COMMIT", "audit database").IgnoreError(); }

  absl::StatusOr<std::vector<std::string>> Chains() override {
    return std::vector<std::string>{""};
  }

  absl::StatusOr<std::vector<Checkpoint>> Checkpoints(const std::string&) override {
    std::vector<Checkpoint> out;
    Statement st(db_, "SELECT seq, head, time_ns, instance_id, key_id, signature FROM checkpoints");
    if (!st.ok()) return DbError(db_, "audit checkpoints");
    while (sqlite3_step(st.get()) == SQLITE_ROW) {
      Checkpoint c;
      c.seq = sqlite3_column_int64(st.get(), 0);
      c.head = std::string(Blob(st.get(), 1));
      c.time_ns = sqlite3_column_int64(st.get(), 2);
      c.instance_id = sqlite::ColumnString(st.get(), 3);
      c.key_id = sqlite::ColumnString(st.get(), 4);
      c.signature = std::string(Blob(st.get(), 5));
      out.push_back(std::move(c));
    }
    return out;
  }

  absl::Status Records(const std::string&, int64_t after_seq,
                       const std::function<bool(const RecordRow&)>& each) override {
    Statement st(db_,
                 "SELECT seq, record, hash, time_ns, sender, recipient, authenticated_oin, "
                 "message_type, agreement_id, decision, trace_id FROM records WHERE seq > ? "
                 "ORDER BY seq");
    if (!st.ok()) return DbError(db_, "audit read");
    sqlite3_bind_int64(st.get(), 1, after_seq);
    return Rows(st.get(), each);
  }

  absl::Status SubjectIndex(const std::string&,
                            const std::function<void(int64_t, int64_t)>& each) override {
    Statement st(db_, "SELECT seq, pkey FROM subjects");
    if (!st.ok()) return DbError(db_, "audit read");
    int rc;
    while ((rc = sqlite3_step(st.get())) == SQLITE_ROW) {
      each(sqlite3_column_int64(st.get(), 0), sqlite3_column_int64(st.get(), 1));
    }
    if (rc != SQLITE_DONE) return DbError(db_, "audit read");
    return absl::OkStatus();
  }

  absl::Status Query(const QueryFilter& f,
                     const std::function<bool(const RecordRow&)>& each) override {
    std::vector<SqlBind> binds;
    const std::string where = FilterConditions(
        f, [](size_t) { return std::string("?"); },
        [](const std::string& p) {
          return absl::StrCat("seq IN (SELECT seq FROM subjects WHERE pkey = ", p, ")");
        },
        &binds);
    const std::string sql = absl::StrCat(
        "SELECT seq, record, hash, time_ns, sender, recipient, authenticated_oin, "
        "message_type, agreement_id, decision, trace_id FROM records WHERE seq > ? AND ",
        where, " ORDER BY seq");
    Statement st(db_, sql);
    if (!st.ok()) return DbError(db_, "audit query");
    sqlite3_bind_int64(st.get(), 1, f.after_seq);
    for (size_t i = 0; i < binds.size(); ++i) {
      const int idx = static_cast<int>(i) + 2;
      if (binds[i].is_text) {
        BindText(st.get(), idx, binds[i].text);
      } else {
        sqlite3_bind_int64(st.get(), idx, binds[i].num);
      }
    }
    return Rows(st.get(), each);
  }

  absl::StatusOr<int64_t> FirstSeq(const std::string&) override {
    Statement st(db_, "SELECT min(seq) FROM records");
    if (!st.ok()) return DbError(db_, "audit read");
    if (sqlite3_step(st.get()) != SQLITE_ROW) return DbError(db_, "audit read");
    return sqlite3_column_int64(st.get(), 0);
  }

  bool multi_chain() const override { return false; }

 private:
  // Columns: seq, record, hash, time_ns, sender, recipient, authenticated_oin, message_type,
  // agreement_id, decision, trace_id.
  absl::Status Rows(sqlite3_stmt* st, const std::function<bool(const RecordRow&)>& each) {
    int rc;
    RecordRow row;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
      row.seq = sqlite3_column_int64(st, 0);
      row.bytes = Blob(st, 1);
      row.hash = Blob(st, 2);
      row.time_ns = sqlite3_column_int64(st, 3);
      row.sender = Blob(st, 4);
      row.recipient = Blob(st, 5);
      row.authenticated_oin = Blob(st, 6);
      row.message_type = Blob(st, 7);
      row.agreement_id = Blob(st, 8);
      row.decision = sqlite3_column_int(st, 9);
      row.trace_id = Blob(st, 10);
      if (!each(row)) return absl::OkStatus();
    }
    if (rc != SQLITE_DONE) return DbError(db_, "audit read");
    return absl::OkStatus();
  }

  sqlite3* db_ = nullptr;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AuditStorage>> OpenSqliteAuditStorage(const std::string& path,
                                                                     int64_t max_db_bytes) {
  auto storage = std::make_unique<SqliteAuditStorage>();
  absl::Status s = storage->Init(path, max_db_bytes);
  if (!s.ok()) return s;
  return std::unique_ptr<AuditStorage>(std::move(storage));
}

absl::StatusOr<std::unique_ptr<AuditSource>> OpenSqliteAuditSource(const std::string& path) {
  auto source = std::make_unique<SqliteAuditSource>();
  absl::Status s = source->Init(path);
  if (!s.ok()) return s;
  return std::unique_ptr<AuditSource>(std::move(source));
}

}  // namespace knooppunt::audit
