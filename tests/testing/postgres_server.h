// A real PostgreSQL server of a test's own: initdb in a fresh temp directory, a free port on
// 127.0.0.1, password (SCRAM) authentication over TCP, torn down with its directory when the
// object goes. Uses the server binaries of Debian's postgresql-15 (tools/install-deps.sh).
// initdb refuses to run as root, so under root (CI) the server runs as user "nobody".
//
// Roles and database are made at start by the deployment's own script,
// deploy/postgres/setup.sql (docs/operations.md), so the tests run on what operators set up:
//  - knooppunt_writer: owns the knooppunt database's tables (the gateway's role);
//  - knooppunt_auditor: may connect, and read what the gateway's migrations grant it (the
//    audit tables);
// each with its password in <dir>/<role>.password (for PostgresConfig.password_file).
#ifndef KNOOPPUNT_TESTS_TESTING_POSTGRES_SERVER_H_
#define KNOOPPUNT_TESTS_TESTING_POSTGRES_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace knooppunt::testing {

class PostgresServer {
 public:
  // Whether this machine has the server binaries (tests skip, naming the package, when not).
  static bool Available();
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();  // immediate shutdown, directory removed
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  const std::string& dir() const { return dir_; }
  // "host=127.0.0.1 port=N dbname=knooppunt user=<role>" (no password: see PasswordFile).
  std::string Conninfo(absl::string_view role = "knooppunt_writer") const;
  std::string PasswordFile(absl::string_view role = "knooppunt_writer") const;

  // Runs SQL as the superuser, in the knooppunt database.
  absl::Status Sql(absl::string_view sql) const;

  // The database goes away (immediate shutdown: like a crash, data kept) ...
  absl::Status Stop();
  // ... and comes back on the same port with the same data.
  absl::Status Restart();
  bool running() const { return pid_ > 0; }

 private:
  PostgresServer() = default;
  absl::Status Launch();
  absl::Status WaitReady();
  std::string bin_;   // directory of initdb/postgres
  std::string dir_;   // temp dir: data/, sockets, log, password files
  int port_ = 0;
  pid_t pid_ = -1;
};

// The server of a whole test binary: started at the first call (and started again when a
// test left it stopped), torn down when the binary exits. FAILED_PRECONDITION when this
// machine has no server binaries (tests skip); any other error is a failure.
absl::StatusOr<PostgresServer*> SharedPostgresServer();

}  // namespace knooppunt::testing

#endif  // KNOOPPUNT_TESTS_TESTING_POSTGRES_SERVER_H_
