// The PostgreSQL backend of the audit log (audit_storage.h): one database shared by the
// gateway's replicas, one hash chain per replica (column `chain` = instance_id).
#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/audit/audit_storage.h"
#include "gateway/common/log.h"

namespace knooppunt::audit {
namespace {

// Component "audit" of pg::ApplyMigrations. Same indexed columns as the SQLite schema, each
// keyed by (chain, seq).
const std::vector<pg::Migration>& Migrations() {
  static const std::vector<pg::Migration>* m = new std::vector<pg::Migration>{
      {1, R"sql(
CREATE TABLE audit_records(
  chain text NOT NULL,
  seq bigint NOT NULL,
  time_ns bigint NOT NULL,
  sender text NOT NULL,
  recipient text NOT NULL,
  authenticated_oin text NOT NULL,
  message_type text NOT NULL,
  agreement_id text NOT NULL,
  decision integer NOT NULL,
  trace_id text NOT NULL,
  record bytea NOT NULL,
  hash bytea NOT NULL,
  PRIMARY KEY (chain, seq));
CREATE INDEX audit_records_time ON audit_records(time_ns, chain, seq);
CREATE TABLE audit_subjects(
  pkey bigint NOT NULL,
  chain text NOT NULL,
  seq bigint NOT NULL,
  PRIMARY KEY (pkey, chain, seq));
CREATE INDEX audit_subjects_chain ON audit_subjects(chain, seq, pkey);
CREATE TABLE audit_checkpoints(
  chain text NOT NULL,
  seq bigint NOT NULL,
  head bytea NOT NULL,
  time_ns bigint NOT NULL,
  instance_id text NOT NULL,
  key_id text NOT NULL,
  signature bytea NOT NULL,
  PRIMARY KEY (chain, seq));
-- The auditor's read-only role (deploy/postgres/setup.sql) reads these tables and nothing
-- else of the database (not the meldingen, which hold payloads).
DO $$ BEGIN
  IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'knooppunt_auditor') THEN
    GRANT SELECT ON audit_records, audit_subjects, audit_checkpoints TO knooppunt_auditor;
  END IF;
END $$;
)sql"}};
  return *m;
}

constexpr size_t kRowsPerInsert = 256;
constexpr int kReadPage = 4096;

absl::Status Unavailable(const absl::Status& s, absl::string_view what) {
  if (absl::IsUnavailable(s)) return s;
  return absl::UnavailableError(absl::StrCat(what, ": ", s.message()));
}

class PgAuditStorage final : public AuditStorage {
 public:
  explicit PgAuditStorage(const PostgresAuditOptions& options) : options_(options) {}

  // First connection: migrations, the chain's lock. A lock held elsewhere is fatal here.
  absl::Status Init() {
    if (options_.chain.empty()) {
      return absl::InvalidArgumentError("audit log on PostgreSQL needs an instance_id (its chain)");
    }
    absl::Status s = Connect(/*first=*/true);
    if (!s.ok()) return s;
    return absl::OkStatus();
  }

  absl::StatusOr<ChainState> Load() override {
    if (conn_ == nullptr || !conn_->healthy()) {
      absl::Status s = Connect(/*first=*/false);
      if (!s.ok()) return s;
    }
    ChainState state;
    state.head = GenesisHash();
    auto cp = conn_->Exec(
        "SELECT seq, head FROM audit_checkpoints WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
        {options_.chain});
    if (!cp.ok()) return Unavailable(cp.status(), "audit database");
    auto last = conn_->Exec(
        "SELECT seq, hash FROM audit_records WHERE chain = $1 ORDER BY seq DESC LIMIT 1",
        {options_.chain});
    if (!last.ok()) return Unavailable(last.status(), "audit database");
    if (cp->rows() == 1) {
      state.checkpoint_seq = cp->Int(0, 0);
      state.seq = state.checkpoint_seq;
      state.head = cp->Bytes(0, 1);
    }
    if (last->rows() == 1 && last->Int(0, 0) >= state.seq) {
      state.seq = last->Int(0, 0);
      state.head = last->Bytes(0, 1);
    }
    return state;
  }

  absl::Status Write(const std::vector<const StoredRecord*>& records,
                     const std::vector<Checkpoint>& checkpoints) override {
    if (conn_ == nullptr || !conn_->healthy()) {
      return absl::UnavailableError("audit database: connection lost");
    }
    absl::Status full = CheckSize();
    if (!full.ok()) return full;
    absl::Status s = pg::InTransaction(*conn_, [&]() -> absl::Status {
      for (size_t start = 0; start < records.size(); start += kRowsPerInsert) {
        const size_t end = std::min(records.size(), start + kRowsPerInsert);
        std::string sql =
            "INSERT INTO audit_records(chain, seq, time_ns, sender, recipient, "
            "authenticated_oin, message_type, agreement_id, decision, trace_id, record, hash) "
            "VALUES ";
        std::vector<pg::Param> params;
        params.reserve((end - start) * 12);
        std::string subjects_sql =
            "INSERT INTO audit_subjects(pkey, chain, seq) VALUES ";
        std::vector<pg::Param> subject_params;
        for (size_t i = start; i < end; ++i) {
          const StoredRecord& r = *records[i];
          const size_t b = params.size();
          absl::StrAppend(&sql, i == start ? "" : ",", "(");
          for (size_t k = 1; k <= 12; ++k) absl::StrAppend(&sql, k == 1 ? "$" : ",$", b + k);
          absl::StrAppend(&sql, ")");
          params.emplace_back(options_.chain);
          params.push_back(pg::Param::Int(r.seq));
          params.push_back(pg::Param::Int(r.time_ns));
          params.emplace_back(r.sender);
          params.emplace_back(r.recipient);
          params.emplace_back(r.authenticated_oin);
          params.emplace_back(r.message_type);
          params.emplace_back(r.agreement_id);
          params.push_back(pg::Param::Int(r.decision));
          params.emplace_back(r.trace_id);
          params.push_back(pg::Param::Bytes(r.bytes));
          params.push_back(pg::Param::Bytes(r.hash));
          for (const std::string& subject : r.subjects) {
            const size_t sb = subject_params.size();
            absl::StrAppend(&subjects_sql, sb == 0 ? "" : ",", "($", sb + 1, ",$", sb + 2, ",$",
                            sb + 3, ")");
            subject_params.push_back(pg::Param::Int(PseudonymKey(subject)));
            subject_params.emplace_back(options_.chain);
            subject_params.push_back(pg::Param::Int(r.seq));
          }
        }
        auto ins = conn_->Exec(sql, params);
        if (!ins.ok()) return ins.status();
        if (!subject_params.empty()) {
          absl::StrAppend(&subjects_sql, " ON CONFLICT DO NOTHING");
          auto sub = conn_->Exec(subjects_sql, subject_params);
          if (!sub.ok()) return sub.status();
        }
      }
      for (const Checkpoint& c : checkpoints) {
        auto ins = conn_->Exec(
            "INSERT INTO audit_checkpoints(chain, seq, head, time_ns, instance_id, key_id, "
            "signature) VALUES($1,$2,$3,$4,$5,$6,$7)",
            {options_.chain, pg::Param::Int(c.seq), pg::Param::Bytes(c.head),
             pg::Param::Int(c.time_ns), c.instance_id, c.key_id, pg::Param::Bytes(c.signature)});
        if (!ins.ok()) return ins.status();
      }
      return absl::OkStatus();
    });
    if (!s.ok()) return Unavailable(s, "audit write");
    return absl::OkStatus();
  }

  absl::StatusOr<RetentionResult> DeleteThrough(int64_t cutoff_ns) override {
    RetentionResult result;
    if (conn_ == nullptr || !conn_->healthy()) {
      return absl::UnavailableError("audit database: connection lost");
    }
    auto find = conn_->Exec(
        "SELECT c.seq FROM audit_checkpoints c JOIN audit_records r "
        "ON r.chain = c.chain AND r.seq = c.seq "
        "WHERE c.chain = $1 AND r.time_ns < $2 ORDER BY c.seq DESC LIMIT 1",
        {options_.chain, pg::Param::Int(cutoff_ns)});
    if (!find.ok()) return Unavailable(find.status(), "audit retention");
    if (find->rows() == 0) return result;
    const int64_t upto = find->Int(0, 0);
    absl::Status s = pg::InTransaction(*conn_, [&]() -> absl::Status {
      auto del = conn_->Exec("DELETE FROM audit_records WHERE chain = $1 AND seq <= $2",
                             {options_.chain, pg::Param::Int(upto)});
      if (!del.ok()) return del.status();
      result.deleted = del->affected();
      auto dels = conn_->Exec("DELETE FROM audit_subjects WHERE chain = $1 AND seq <= $2",
                              {options_.chain, pg::Param::Int(upto)});
      return dels.status();
    });
    if (!s.ok()) return Unavailable(s, "audit retention");
    result.through_seq = upto;
    return result;
  }

  void SetReadOnlyForTest(bool read_only) override {
    if (conn_ == nullptr) return;
    (void)conn_->Exec(read_only ? "SET default_transaction_read_only = on"
                                : "SET default_transaction_read_only = off");
  }

 private:
  // (Re)connects and takes the chain's lock; after a failed attempt the next one waits
  // connect_timeout (meanwhile Load() fails at once, so Record() does not wait).
  absl::Status Connect(bool first) {
    const absl::Time now = absl::Now();
    if (!first && now < next_attempt_) {
      return absl::UnavailableError(absl::StrCat("audit database unreachable: ", last_error_));
    }
    conn_.reset();
    auto c = pg::Connection::Open(options_.connect);
    if (!c.ok()) return Remember(c.status());
    absl::Status s = pg::ApplyMigrations(**c, "audit", Migrations());
    if (!s.ok()) return Remember(s);
    // The server notices a vanished client (network partition, crashed host) within about
    // half a minute and ends the session, releasing the chain's lock for the reconnect
    // (PostgreSQL's default would keep it for hours). Ignored over a Unix socket.
    (void)(*c)->ExecScript(
        "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; "
        "SET tcp_keepalives_count = 3; SET tcp_user_timeout = 30000");
    // At open, a few seconds' patience: this replica's previous session (before a restart
    // or reopen) may still be ending on the server.
    absl::StatusOr<bool> locked = pg::AwaitAdvisoryLock(
        **c, "SELECT pg_try_advisory_lock(hashtextextended('knooppunt.audit.chain:' || $1, 0))",
        {options_.chain}, first ? absl::Seconds(3) : absl::ZeroDuration());
    if (!locked.ok()) return Remember(locked.status());
    if (!*locked) {
      const std::string msg = absl::StrCat(
          "audit chain \"", options_.chain,
          "\" is already written by another gateway (another replica with the same "
          "instance_id?); every replica needs its own instance_id");
      if (first) return absl::FailedPreconditionError(msg);
      return Remember(absl::UnavailableError(msg));
    }
    conn_ = *std::move(c);
    if (!first) {
      Log(LogLevel::kInfo, "audit_database_reconnected", {{"chain", options_.chain}});
    }
    last_size_check_ = absl::InfinitePast();
    return absl::OkStatus();
  }

  absl::Status Remember(const absl::Status& s) {
    last_error_ = std::string(s.message());
    next_attempt_ = absl::Now() + options_.connect.connect_timeout;
    return Unavailable(s, "audit database");
  }

  absl::Status CheckSize() {
    if (options_.max_db_bytes <= 0) return absl::OkStatus();
    const absl::Time now = absl::Now();
    if (now - last_size_check_ >= absl::Seconds(1)) {
      auto r = conn_->Exec(
          "SELECT pg_total_relation_size('audit_records') + "
          "pg_total_relation_size('audit_subjects') + pg_total_relation_size('audit_checkpoints')");
      if (!r.ok()) return Unavailable(r.status(), "audit database");
      size_ = r->Int(0, 0);
      last_size_check_ = now;
    }
    if (size_ >= options_.max_db_bytes) {
      return absl::UnavailableError(absl::StrCat("audit database full: audit tables hold ", size_,
                                                 " bytes, max_db_bytes is ",
                                                 options_.max_db_bytes));
    }
    return absl::OkStatus();
  }

  const PostgresAuditOptions options_;
  std::unique_ptr<pg::Connection> conn_;
  absl::Time next_attempt_ = absl::InfinitePast();
  std::string last_error_;
  absl::Time last_size_check_ = absl::InfinitePast();
  int64_t size_ = 0;
};

class PgAuditSource final : public AuditSource {
 public:
  absl::Status Init(const pg::ConnectOptions& connect) {
    auto c = pg::Connection::Open(connect);
    if (!c.ok()) return c.status();
    conn_ = *std::move(c);
    auto check = conn_->Exec("SELECT to_regclass('audit_records') IS NOT NULL");
    if (!check.ok()) return check.status();
    if (check->Text(0, 0) != "t") {
      return absl::NotFoundError("the PostgreSQL database holds no audit log (no audit_records)");
    }
    return absl::OkStatus();
  }

  absl::Status BeginRead() override {
    return conn_->Exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").status();
  }
  void EndRead() override { (void)conn_->Exec("COMMIT"); }

  absl::StatusOr<std::vector<std::string>> Chains() override {
    auto r = conn_->Exec(
        "SELECT chain FROM (SELECT DISTINCT chain FROM audit_records UNION "
        "SELECT DISTINCT chain FROM audit_checkpoints) c ORDER BY chain");
    if (!r.ok()) return r.status();
    std::vector<std::string> out;
    for (int i = 0; i < r->rows(); ++i) out.emplace_back(r->Text(i, 0));
    return out;
  }

  absl::StatusOr<std::vector<Checkpoint>> Checkpoints(const std::string& chain) override {
    auto r = conn_->Exec(
        "SELECT seq, head, time_ns, instance_id, key_id, signature FROM audit_checkpoints "
        "WHERE chain = $1",
        {chain});
    if (!r.ok()) return r.status();
    std::vector<Checkpoint> out;
    for (int i = 0; i < r->rows(); ++i) {
      Checkpoint c;
      c.seq = r->Int(i, 0);
      c.head = r->Bytes(i, 1);
      c.time_ns = r->Int(i, 2);
      c.instance_id = std::string(r->Text(i, 3));
      c.key_id = std::string(r->Text(i, 4));
      c.signature = r->Bytes(i, 5);
      out.push_back(std::move(c));
    }
    return out;
  }

  absl::Status Records(const std::string& chain, int64_t after_seq,
                       const std::function<bool(const RecordRow&)>& each) override {
    for (;;) {
      auto r = conn_->Exec(absl::StrCat(kColumns,
                                        " FROM audit_records WHERE chain = $1 AND seq > $2 "
                                        "ORDER BY seq LIMIT ",
                                        kReadPage),
                           {chain, pg::Param::Int(after_seq)});
      if (!r.ok()) return r.status();
      bool more = true;
      for (int i = 0; i < r->rows() && more; ++i) {
        more = Row(*r, i, each);
        after_seq = r->Int(i, 1);
      }
      if (!more || r->rows() < kReadPage) return absl::OkStatus();
    }
  }

  absl::Status SubjectIndex(const std::string& chain,
                            const std::function<void(int64_t, int64_t)>& each) override {
    // In pages, so that a long chain's index is never in memory at once.
    int64_t after_seq = 0, after_key = std::numeric_limits<int64_t>::min();
    for (;;) {
      auto r = conn_->Exec(absl::StrCat("SELECT seq, pkey FROM audit_subjects WHERE chain = $1 "
                                        "AND (seq, pkey) > ($2, $3) ORDER BY seq, pkey LIMIT ",
                                        kReadPage),
                           {chain, pg::Param::Int(after_seq), pg::Param::Int(after_key)});
      if (!r.ok()) return r.status();
      for (int i = 0; i < r->rows(); ++i) {
        after_seq = r->Int(i, 0);
        after_key = r->Int(i, 1);
        each(after_seq, after_key);
      }
      if (r->rows() < kReadPage) return absl::OkStatus();
    }
  }

  absl::Status Query(const QueryFilter& f,
                     const std::function<bool(const RecordRow&)>& each) override {
    std::vector<SqlBind> binds;
    // $1..$3: the paging position (time_ns, chain, seq); the filter's parameters follow.
    const std::string where = FilterConditions(
        f, [](size_t i) { return absl::StrCat("$", i + 4); },
        [](const std::string& p) {
          return absl::StrCat("(chain, seq) IN (SELECT chain, seq FROM audit_subjects WHERE pkey = ",
                              p, ")");
        },
        &binds);
    const std::string sql =
        absl::StrCat(kColumns, " FROM audit_records WHERE (time_ns, chain, seq) > ($1, $2, $3) AND ",
                     where, " ORDER BY time_ns, chain, seq LIMIT ", kReadPage);
    int64_t after_time = f.after_chain.empty() ? std::numeric_limits<int64_t>::min() : f.after_time_ns;
    std::string after_chain = f.after_chain;
    int64_t after_seq = f.after_chain.empty() ? 0 : f.after_seq;
    for (;;) {
      std::vector<pg::Param> params{pg::Param::Int(after_time), pg::Param(after_chain),
                                    pg::Param::Int(after_seq)};
      for (const SqlBind& b : binds) {
        params.push_back(b.is_text ? pg::Param(b.text) : pg::Param::Int(b.num));
      }
      auto r = conn_->Exec(sql, params);
      if (!r.ok()) return r.status();
      bool more = true;
      for (int i = 0; i < r->rows() && more; ++i) {
        more = Row(*r, i, each);
        after_time = r->Int(i, 4);
        after_chain = std::string(r->Text(i, 0));
        after_seq = r->Int(i, 1);
      }
      if (!more || r->rows() < kReadPage) return absl::OkStatus();
    }
  }

  absl::StatusOr<int64_t> FirstSeq(const std::string& chain) override {
    auto r = conn_->Exec("SELECT min(seq) FROM audit_records WHERE chain = $1", {chain});
    if (!r.ok()) return r.status();
    return r->Int(0, 0);
  }

  bool multi_chain() const override { return true; }

 private:
  static constexpr const char* kColumns =
      "SELECT chain, seq, record, hash, time_ns, sender, recipient, authenticated_oin, "
      "message_type, agreement_id, decision, trace_id";

  static bool Row(const pg::Result& r, int i, const std::function<bool(const RecordRow&)>& each) {
    const std::string bytes = r.Bytes(i, 2), hash = r.Bytes(i, 3);
    RecordRow row;
    row.chain = r.Text(i, 0);
    row.seq = r.Int(i, 1);
    row.bytes = bytes;
    row.hash = hash;
    row.time_ns = r.Int(i, 4);
    row.sender = r.Text(i, 5);
    row.recipient = r.Text(i, 6);
    row.authenticated_oin = r.Text(i, 7);
    row.message_type = r.Text(i, 8);
    row.agreement_id = r.Text(i, 9);
    row.decision = static_cast<int>(r.Int(i, 10));
    row.trace_id = r.Text(i, 11);
    return each(row);
  }

  std::unique_ptr<pg::Connection> conn_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AuditStorage>> OpenPostgresAuditStorage(
    const PostgresAuditOptions& options) {
  auto storage = std::make_unique<PgAuditStorage>(options);
  absl::Status s = storage->Init();
  if (!s.ok()) return s;
  return std::unique_ptr<AuditStorage>(std::move(storage));
}

absl::StatusOr<std::unique_ptr<AuditSource>> OpenPostgresAuditSource(
    const pg::ConnectOptions& connect) {
  auto source = std::make_unique<PgAuditSource>();
  absl::Status s = source->Init(connect);
  if (!s.ok()) return s;
  return std::unique_ptr<AuditSource>(std::move(source));
}

}  // namespace knooppunt::audit
