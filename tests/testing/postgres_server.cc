#include "tests/testing/postgres_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <glob.h>
#include <grp.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace knooppunt::testing {

namespace {

constexpr char kSuperuserPassword[] = "superuser-test-password";

std::string ServerBinDir() {
  glob_t g{};
  std::string best;
  if (glob("/usr/lib/postgresql/*/bin/postgres", 0, nullptr, &g) == 0) {
    std::vector<std::string> found(g.gl_pathv, g.gl_pathv + g.gl_pathc);
    std::sort(found.begin(), found.end());
    best = found.back().substr(0, found.back().size() - std::string("/postgres").size());
  }
  globfree(&g);
  return best;
}

int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

// Starts argv as the unprivileged user when we are root, output appended to `log`.
pid_t Spawn(const std::vector<std::string>& argv, const std::string& log) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const passwd* nobody = getuid() == 0 ? getpwnam("nobody") : nullptr;
  pid_t pid = fork();
  if (pid != 0) return pid;
  int out = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (out >= 0) {
    dup2(out, 1);
    dup2(out, 2);
  }
  if (nobody != nullptr) {
    if (setgroups(0, nullptr) != 0 || setgid(nobody->pw_gid) != 0 ||
        setuid(nobody->pw_uid) != 0) {
      _exit(126);
    }
  }
  // A test that crashes must not leave its server running: the server gets SIGQUIT
  // (immediate shutdown) when the process that started it dies. Set after the user change,
  // which would clear it.
  prctl(PR_SET_PDEATHSIG, SIGQUIT);
  execv(args[0], args.data());
  _exit(127);
}

absl::Status WriteFile(const std::string& path, const std::string& content, bool for_server) {
  {
    std::ofstream f(path, std::ios::trunc);
    f << content;
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  chmod(path.c_str(), 0600);
  if (for_server && getuid() == 0) {
    const passwd* nobody = getpwnam("nobody");
    if (nobody == nullptr || chown(path.c_str(), nobody->pw_uid, nobody->pw_gid) != 0) {
      return absl::InternalError(absl::StrCat("cannot give ", path, " to nobody"));
    }
  }
  return absl::OkStatus();
}

std::string Tail(const std::string& path) {
  std::ifstream f(path);
  std::string all((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  return all.size() > 2000 ? all.substr(all.size() - 2000) : all;
}

}  // namespace

bool PostgresServer::Available() { return !ServerBinDir().empty(); }

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> s(new PostgresServer());
  s->bin_ = ServerBinDir();
  if (s->bin_.empty()) {
    return absl::FailedPreconditionError("no PostgreSQL server (Debian package postgresql-15)");
  }
  // Short and under /tmp: the Unix socket's path must fit in 107 bytes, and "nobody" must be
  // able to reach it wherever the build tree is.
  char tmpl[] = "/tmp/knooppunt-pg-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
  s->dir_ = tmpl;
  if (getuid() == 0) {
    const passwd* nobody = getpwnam("nobody");
    if (nobody == nullptr || chown(tmpl, nobody->pw_uid, nobody->pw_gid) != 0) {
      return absl::InternalError("cannot give the PostgreSQL directory to nobody");
    }
  }
  const std::string pwfile = s->dir_ + "/superuser.pw";
  if (auto st = WriteFile(pwfile, kSuperuserPassword, true); !st.ok()) return st;
  const std::string log = s->dir_ + "/postgres.log";
  pid_t init = Spawn({s->bin_ + "/initdb", "-D", s->dir_ + "/data", "-U", "postgres",
                      "--auth-local=trust", "--auth-host=scram-sha-256",
                      "--pwfile=" + pwfile, "-E", "UTF8", "--no-locale", "--no-sync"},
                     log);
  int status = 0;
  if (init < 0 || waitpid(init, &status, 0) != init || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat("initdb failed: ", Tail(log)));
  }
  s->port_ = FreePort();
  if (auto st = s->Launch(); !st.ok()) return st;
  // The operators' setup script, run by psql as they would (superuser over the socket).
  const char* source = std::getenv("KNOOPPUNT_SOURCE_DIR");
  const std::string script = absl::StrCat(source != nullptr ? source : KNOOPPUNT_PROJECT_SOURCE_DIR,
                                          "/deploy/postgres/setup.sql");
  std::ifstream script_in(script);
  std::string script_text((std::istreambuf_iterator<char>(script_in)),
                          std::istreambuf_iterator<char>());
  if (script_text.empty()) return absl::InternalError(absl::StrCat("cannot read ", script));
  // psql runs as the server's user, who may not reach the source tree: it reads a copy.
  const std::string script_copy = s->dir_ + "/setup.sql";
  if (auto st = WriteFile(script_copy, script_text, true); !st.ok()) return st;
  const std::string psql_log = s->dir_ + "/setup.log";
  pid_t psql = Spawn({s->bin_ + "/psql", "-X", "-q", "-h", s->dir_, "-p", absl::StrCat(s->port_),
                      "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-v",
                      "writer_password=writer-test-password", "-v",
                      "auditor_password=auditor-test-password", "-f", script_copy},
                     psql_log);
  if (psql < 0 || waitpid(psql, &status, 0) != psql || !WIFEXITED(status) ||
      WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(script, " failed: ", Tail(psql_log)));
  }
  for (const char* role : {"knooppunt_writer", "knooppunt_auditor"}) {
    const std::string pw = role == std::string("knooppunt_writer") ? "writer-test-password"
                                                                    : "auditor-test-password";
    if (auto st = WriteFile(s->PasswordFile(role), pw + "\n", false); !st.ok()) return st;
  }
  return s;
}

absl::Status PostgresServer::Launch() {
  const std::string log = dir_ + "/postgres.log";
  pid_ = Spawn({bin_ + "/postgres", "-D", dir_ + "/data", "-p", absl::StrCat(port_), "-k", dir_,
                "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=60", "-c",
                "shared_buffers=16MB", "-c", "logging_collector=off"},
               log);
  if (pid_ < 0) return absl::InternalError("cannot start postgres");
  return WaitReady();
}

absl::Status PostgresServer::WaitReady() {
  const std::string info =
      absl::StrCat("host=", dir_, " port=", port_, " dbname=postgres user=postgres");
  const absl::Time deadline = absl::Now() + absl::Seconds(60);
  while (absl::Now() < deadline) {
    if (PQping(info.c_str()) == PQPING_OK) return absl::OkStatus();
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("postgres exited: ", Tail(dir_ + "/postgres.log")));
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::DeadlineExceededError(
      absl::StrCat("postgres not ready after 60s: ", Tail(dir_ + "/postgres.log")));
}

PostgresServer::~PostgresServer() {
  (void)Stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string PostgresServer::Conninfo(absl::string_view role) const {
  return absl::StrCat("host=127.0.0.1 port=", port_, " dbname=knooppunt user=", role);
}

std::string PostgresServer::PasswordFile(absl::string_view role) const {
  return absl::StrCat(dir_, "/", role, ".password");
}

absl::Status PostgresServer::Sql(absl::string_view sql) const {
  PGconn* c = PQconnectdb(absl::StrCat("host=", dir_, " port=", port_,
                                       " dbname=knooppunt user=postgres").c_str());
  PGresult* r = PQexec(c, std::string(sql).c_str());
  const ExecStatusType st = PQresultStatus(r);
  std::string why = PQerrorMessage(c);
  PQclear(r);
  PQfinish(c);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    return absl::InternalError(absl::StrCat("SQL failed: ", why));
  }
  return absl::OkStatus();
}

absl::Status PostgresServer::Stop() {
  if (pid_ <= 0) return absl::OkStatus();
  kill(pid_, SIGQUIT);  // immediate shutdown: the server's children go at once, as in a crash
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
  return absl::OkStatus();
}

absl::Status PostgresServer::Restart() {
  if (pid_ > 0) return absl::FailedPreconditionError("already running");
  return Launch();
}

absl::StatusOr<PostgresServer*> SharedPostgresServer() {
  static std::unique_ptr<PostgresServer>* shared = new std::unique_ptr<PostgresServer>();
  static const int registered = std::atexit([] { shared->reset(); });
  (void)registered;
  if (*shared == nullptr) {
    absl::StatusOr<std::unique_ptr<PostgresServer>> started = PostgresServer::Start();
    if (!started.ok()) return started.status();
    *shared = *std::move(started);
  } else if (!(*shared)->running()) {
    if (absl::Status s = (*shared)->Restart(); !s.ok()) return s;
  }
  return shared->get();
}

}  // namespace knooppunt::testing
