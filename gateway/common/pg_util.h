// Small helpers over libpq (PostgreSQL's C client) shared by the PostgreSQL melding store and
// audit log: a connection that reports failures as absl::Status, results that free
// themselves, and versioned schema migrations applied at start.
//
// Guarantees:
//  - No exceptions; every failure is a Status. A lost or unreachable server is UNAVAILABLE
//    (the caller fails closed and reconnects later); a unique violation is ALREADY_EXISTS;
//    a serialization failure or deadlock is ABORTED (retry the transaction); anything else
//    is INTERNAL with the server's message.
//  - Parameters are always sent separately from the SQL text (PQexecParams): no quoting, no
//    injection. Bytes parameters go in binary form, so bytea needs no escaping.
//  - ApplyMigrations() runs each not yet applied migration in its own transaction under an
//    advisory lock, so replicas starting together apply each exactly once; a database whose
//    schema is newer than this binary knows is refused (FAILED_PRECONDITION).
// A Connection is not thread-safe: one thread uses it at a time.
#ifndef KNOOPPUNT_GATEWAY_COMMON_PG_UTIL_H_
#define KNOOPPUNT_GATEWAY_COMMON_PG_UTIL_H_

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

typedef struct pg_conn PGconn;
typedef struct pg_result PGresult;

namespace knooppunt::pg {

struct ConnectOptions {
  std::string conninfo;          // libpq "keyword=value" string
  std::string password;          // empty: none
  absl::Duration connect_timeout = absl::Seconds(5);
  std::string application_name;  // shown in pg_stat_activity, e.g. "knooppunt-1/store"
};

// Reads the first line of `path` (the password), for PostgresConfig.password_file.
absl::StatusOr<std::string> ReadPasswordFile(const std::string& path);

// One parameter of a query: text, bytes (sent binary, for bytea) or NULL.
class Param {
 public:
  Param(absl::string_view text) : value_(text) {}  // NOLINT: implicit on purpose
  Param(const std::string& text) : value_(text) {}  // NOLINT
  Param(const char* text) : value_(text) {}  // NOLINT
  static Param Int(int64_t v);
  static Param Bytes(absl::string_view bytes) {
    Param p(bytes);
    p.binary_ = true;
    return p;
  }
  static Param Null() {
    Param p{absl::string_view()};
    p.null_ = true;
    return p;
  }
  absl::string_view value() const { return owns_ ? absl::string_view(owned_) : value_; }
  bool binary() const { return binary_; }
  bool null() const { return null_; }

 private:
  std::string owned_;  // Int()'s digits (value() reads them, so copies stay valid)
  absl::string_view value_;
  bool owns_ = false, binary_ = false, null_ = false;
};

// A query's result (text format), freed on destruction.
class Result {
 public:
  explicit Result(PGresult* r = nullptr) : r_(r) {}
  ~Result();
  Result(Result&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  Result& operator=(Result&& o) noexcept;
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;

  int rows() const;
  int64_t affected() const;  // rows changed by INSERT/UPDATE/DELETE
  bool IsNull(int row, int col) const;
  absl::string_view Text(int row, int col) const;
  int64_t Int(int row, int col) const;     // 0 when NULL
  std::string Bytes(int row, int col) const;  // a bytea column, decoded

 private:
  PGresult* r_;
};

class Connection {
 public:
  // Connects; UNAVAILABLE (with libpq's reason) when the server cannot be reached or refuses.
  static absl::StatusOr<std::unique_ptr<Connection>> Open(const ConnectOptions& options);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // One statement with parameters ($1, $2, ...).
  absl::StatusOr<Result> Exec(absl::string_view sql, const std::vector<Param>& params = {});
  absl::StatusOr<Result> Exec(absl::string_view sql, std::initializer_list<Param> params) {
    return Exec(sql, std::vector<Param>(params));
  }
  // Several statements without parameters (schema scripts).
  absl::Status ExecScript(absl::string_view sql);

  // False once the connection broke (the server went away); then open a new one.
  bool healthy() const;
  PGconn* raw() { return conn_; }

 private:
  explicit Connection(PGconn* c) : conn_(c) {}
  absl::Status StatusOf(PGresult* r, absl::string_view sql) const;
  PGconn* conn_;
};

// Runs `body` inside BEGIN ... COMMIT; rolls back when it (or COMMIT) fails.
template <typename F>
absl::Status InTransaction(Connection& c, F&& body) {
  if (auto r = c.Exec("BEGIN"); !r.ok()) return r.status();
  absl::Status st = body();
  if (st.ok()) {
    auto r = c.Exec("COMMIT");
    if (r.ok()) return absl::OkStatus();
    st = r.status();
  }
  if (c.healthy()) (void)c.Exec("ROLLBACK");
  return st;
}

// Runs `try_lock_sql` (a pg_try_advisory_lock(...) query returning one boolean) until it
// returns true or `patience` has passed: a restarted process's old session, which holds the
// lock, ends a moment after the process. false: still held by someone else.
absl::StatusOr<bool> AwaitAdvisoryLock(Connection& c, absl::string_view try_lock_sql,
                                       const std::vector<Param>& params,
                                       absl::Duration patience);

struct Migration {
  int version;      // 1, 2, ... in order
  const char* sql;  // statements of this step
};

// Brings `component`'s schema (e.g. "meldingen", "audit") up to the last of `migrations`.
absl::Status ApplyMigrations(Connection& c, absl::string_view component,
                             const std::vector<Migration>& migrations);

// Microseconds since the epoch (how the stores keep times: bigint, no parsing).
inline int64_t ToMicros(absl::Time t) { return absl::ToUnixMicros(t); }
inline absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

}  // namespace knooppunt::pg

#endif  // KNOOPPUNT_GATEWAY_COMMON_PG_UTIL_H_
