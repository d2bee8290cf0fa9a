#include "gateway/common/pg_util.h"

#include <libpq-fe.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace knooppunt::pg {

namespace {

// SQLSTATE classes (https://www.postgresql.org/docs/15/errcodes-appendix.html).
absl::StatusCode CodeOf(absl::string_view sqlstate) {
  if (sqlstate == "23505") return absl::StatusCode::kAlreadyExists;       // unique_violation
  if (sqlstate == "40001" || sqlstate == "40P01") return absl::StatusCode::kAborted;
  if (absl::StartsWith(sqlstate, "08") ||    // connection exception
      absl::StartsWith(sqlstate, "57P") ||   // admin shutdown, crash shutdown, cannot connect now
      sqlstate == "53100" ||                 // disk full
      sqlstate == "53200" || sqlstate == "53300") {  // out of memory, too many connections
    return absl::StatusCode::kUnavailable;
  }
  if (sqlstate == "25006") return absl::StatusCode::kUnavailable;  // read-only transaction
  return absl::StatusCode::kInternal;
}

std::string OneLine(absl::string_view s) {
  std::string out(absl::StripAsciiWhitespace(s));
  for (char& c : out) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return out;
}

}  // namespace

absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::FailedPreconditionError(absl::StrCat("cannot read password file ", path));
  std::string line;
  std::getline(in, line);
  line = std::string(absl::StripAsciiWhitespace(line));
  if (line.empty()) return absl::FailedPreconditionError(absl::StrCat(path, ": empty password"));
  return line;
}

Param Param::Int(int64_t v) {
  Param p{absl::string_view()};
  p.owned_ = absl::StrCat(v);
  p.owns_ = true;
  return p;
}

Result::~Result() { PQclear(r_); }

Result& Result::operator=(Result&& o) noexcept {
  if (this != &o) {
    PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}

int Result::rows() const { return r_ ? PQntuples(r_) : 0; }

int64_t Result::affected() const {
  int64_t n = 0;
  if (r_) (void)absl::SimpleAtoi(PQcmdTuples(r_), &n);
  return n;
}

bool Result::IsNull(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }

absl::string_view Result::Text(int row, int col) const {
  return absl::string_view(PQgetvalue(r_, row, col), PQgetlength(r_, row, col));
}

int64_t Result::Int(int row, int col) const {
  int64_t v = 0;
  if (!IsNull(row, col)) (void)absl::SimpleAtoi(Text(row, col), &v);
  return v;
}

std::string Result::Bytes(int row, int col) const {
  if (IsNull(row, col)) return {};
  size_t n = 0;
  unsigned char* raw =
      PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col)), &n);
  if (raw == nullptr) return {};
  std::string out(reinterpret_cast<const char*>(raw), n);
  PQfreemem(raw);
  return out;
}

absl::StatusOr<std::unique_ptr<Connection>> Connection::Open(const ConnectOptions& options) {
  const std::string timeout =
      absl::StrCat(std::max<int64_t>(1, absl::ToInt64Seconds(options.connect_timeout)));
  // Keyword arrays rather than string concatenation: the password needs no quoting.
  std::vector<const char*> keys = {"dbname", "connect_timeout", "application_name"};
  std::vector<const char*> values = {options.conninfo.c_str(), timeout.c_str(),
                                     options.application_name.c_str()};
  if (!options.password.empty()) {
    keys.push_back("password");
    values.push_back(options.password.c_str());
  }
  keys.push_back(nullptr);
  values.push_back(nullptr);
  // expand_dbname=1: "dbname" holds the whole conninfo string; later keywords override it.
  PGconn* conn = PQconnectdbParams(keys.data(), values.data(), /*expand_dbname=*/1);
  if (conn == nullptr) return absl::ResourceExhaustedError("libpq: out of memory");
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string why = OneLine(PQerrorMessage(conn));
    PQfinish(conn);
    return absl::UnavailableError(absl::StrCat("PostgreSQL: cannot connect: ", why));
  }
  // The server's NOTICEs ("relation already exists, skipping") are not errors; libpq would
  // print them to stderr.
  PQsetNoticeProcessor(conn, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<Connection>(new Connection(conn));
}

Connection::~Connection() { PQfinish(conn_); }

bool Connection::healthy() const { return PQstatus(conn_) == CONNECTION_OK; }

absl::Status Connection::StatusOf(PGresult* r, absl::string_view sql) const {
  if (r == nullptr || PQstatus(conn_) != CONNECTION_OK) {
    return absl::UnavailableError(
        absl::StrCat("PostgreSQL: connection lost: ", OneLine(PQerrorMessage(conn_))));
  }
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY) {
    return absl::OkStatus();
  }
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  absl::string_view sqlstate = state ? state : "";
  std::string what = msg ? msg : OneLine(PQresultErrorMessage(r));
  return absl::Status(CodeOf(sqlstate),
                      absl::StrCat("PostgreSQL: ", what, " (SQLSTATE ", sqlstate, ")"));
}

absl::StatusOr<Result> Connection::Exec(absl::string_view sql, const std::vector<Param>& params) {
  const std::string text(sql);
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
  // libpq reads text parameters up to their NUL, so they are copied (they are short: ids,
  // OINs, numbers); bytes go binary with their length, uncopied.
  std::vector<std::string> texts;
  texts.reserve(params.size());
  values.reserve(params.size());
  for (const Param& p : params) {
    if (p.null()) {
      values.push_back(nullptr);
    } else if (p.binary()) {
      values.push_back(p.value().data());
    } else {
      texts.emplace_back(p.value());
      values.push_back(texts.back().c_str());
    }
    lengths.push_back(static_cast<int>(p.value().size()));
    formats.push_back(p.binary() ? 1 : 0);
  }
  PGresult* r = PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr,
                             values.data(), lengths.data(), formats.data(), /*resultFormat=*/0);
  Result result(r);
  absl::Status st = StatusOf(r, sql);
  if (!st.ok()) return st;
  return result;
}

absl::Status Connection::ExecScript(absl::string_view sql) {
  const std::string text(sql);
  PGresult* r = PQexec(conn_, text.c_str());
  Result owned(r);
  // PQexec returns the last statement's result; the server stops at the first error, whose
  // result that then is.
  return StatusOf(r, sql);
}

absl::StatusOr<bool> AwaitAdvisoryLock(Connection& c, absl::string_view try_lock_sql,
                                       const std::vector<Param>& params,
                                       absl::Duration patience) {
  const absl::Time deadline = absl::Now() + patience;
  while (true) {
    absl::StatusOr<Result> r = c.Exec(try_lock_sql, params);
    if (!r.ok()) return r.status();
    if (r->rows() == 1 && r->Text(0, 0) == "t") return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

absl::Status ApplyMigrations(Connection& c, absl::string_view component,
                             const std::vector<Migration>& migrations) {
  absl::Status created = c.ExecScript(
      "CREATE TABLE IF NOT EXISTS knooppunt_schema_migrations ("
      " component text NOT NULL, version integer NOT NULL,"
      " applied_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (component, version))");
  if (!created.ok() && created.code() != absl::StatusCode::kAlreadyExists) return created;
  const int latest = migrations.empty() ? 0 : migrations.back().version;
  return InTransaction(c, [&]() -> absl::Status {
    // One migrator at a time across replicas; released at COMMIT/ROLLBACK.
    auto locked = c.Exec("SELECT pg_advisory_xact_lock(hashtext('knooppunt_schema_migrations'))");
    if (!locked.ok()) return locked.status();
    auto current = c.Exec(
        "SELECT coalesce(max(version), 0) FROM knooppunt_schema_migrations WHERE component = $1",
        {component});
    if (!current.ok()) return current.status();
    const int64_t have = current->Int(0, 0);
    if (have > latest) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PostgreSQL: the ", component, " schema is at version ", have,
          ", newer than this gateway knows (", latest, "); upgrade the gateway"));
    }
    for (const Migration& m : migrations) {
      if (m.version <= have) continue;
      if (absl::Status st = c.ExecScript(m.sql); !st.ok()) {
        return absl::Status(st.code(), absl::StrCat("migration ", component, " ", m.version,
                                                    ": ", st.message()));
      }
      auto noted = c.Exec(
          "INSERT INTO knooppunt_schema_migrations (component, version) VALUES ($1, $2)",
          {component, Param::Int(m.version)});
      if (!noted.ok()) return noted.status();
    }
    return absl::OkStatus();
  });
}

}  // namespace knooppunt::pg
