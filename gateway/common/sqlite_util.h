// Small helpers over SQLite's C API shared by the stores that use it (the melding store and
// the audit log): a statement that finalizes itself, binding and reading columns as strings.
#ifndef KNOOPPUNT_GATEWAY_COMMON_SQLITE_UTIL_H_
#define KNOOPPUNT_GATEWAY_COMMON_SQLITE_UTIL_H_

#include <sqlite3.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace knooppunt::sqlite {

// A prepared statement, finalized on destruction; ok() tells whether preparing worked.
class Statement {
 public:
  Statement(sqlite3* db, absl::string_view sql) {
    rc_ = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_ERROR;
};

// `lifetime` is SQLITE_TRANSIENT (SQLite copies) unless the caller keeps `value` alive until
// the statement is reset, when SQLITE_STATIC saves the copy.
inline void BindText(sqlite3_stmt* s, int index, absl::string_view value,
                     sqlite3_destructor_type lifetime = SQLITE_TRANSIENT) {
  sqlite3_bind_text(s, index, value.data(), static_cast<int>(value.size()), lifetime);
}
inline void BindBlob(sqlite3_stmt* s, int index, absl::string_view value,
                     sqlite3_destructor_type lifetime = SQLITE_TRANSIENT) {
  sqlite3_bind_blob(s, index, value.data(), static_cast<int>(value.size()), lifetime);
}

// Runs SQL without results; errors are UNAVAILABLE, prefixed with `what` (e.g. the file).
inline absl::Status Exec(sqlite3* db, const char* sql, absl::string_view what) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) == SQLITE_OK) return absl::OkStatus();
  absl::Status status = absl::UnavailableError(absl::StrCat(what, ": ", error ? error : "error"));
  sqlite3_free(error);
  return status;
}

// A column's bytes, valid until the next step/reset of the statement.
inline absl::string_view ColumnBytes(sqlite3_stmt* s, int col) {
  const void* p = sqlite3_column_blob(s, col);
  return p == nullptr ? absl::string_view()
                      : absl::string_view(static_cast<const char*>(p),
                                          static_cast<size_t>(sqlite3_column_bytes(s, col)));
}
inline std::string ColumnString(sqlite3_stmt* s, int col) {
  return std::string(ColumnBytes(s, col));
}

}  // namespace knooppunt::sqlite

#endif  // KNOOPPUNT_GATEWAY_COMMON_SQLITE_UTIL_H_
