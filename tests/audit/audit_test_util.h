// Helpers for the audit tests: a scratch directory with fresh audit keys, records to write,
// raw SQL against a log's database (to tamper with it), and AuditStorageTest: a fixture
// parameterized over the storages (SQLite file; PostgreSQL server started for the suite).
#ifndef KNOOPPUNT_TESTS_AUDIT_AUDIT_TEST_UTIL_H_
#define KNOOPPUNT_TESTS_AUDIT_AUDIT_TEST_UTIL_H_

#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>

#include <cstdio>

#include <filesystem>
#include <memory>
#include <ostream>
#include <regex>
#include <string>

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_log.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/common/pg_util.h"
#include "tests/testing/postgres_server.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"

namespace knooppunt::audit::testing {

class ScratchKeys {
 public:
  ScratchKeys() {
    const char* tmp = getenv("TMPDIR");
    std::string templ = absl::StrCat(tmp ? tmp : "/tmp", "/kp-audit-XXXXXX");
    dir = mkdtemp(templ.data());
    hmac = dir + "/audit-hmac.key";
    signing = dir + "/audit-signing.key";
    pub = dir + "/audit-signing.pub";
    EXPECT_TRUE(GenerateKeys(hmac, signing, pub).ok());
    db = dir + "/audit.db";
  }
  ~ScratchKeys() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  AuditLogOptions Options() const {
    AuditLogOptions o;
    o.db_path = db;
    o.hmac_key = *ReadHmacKeyFile(hmac);
    o.signing_key_file = signing;
    o.instance_id = "test-1";
    o.checkpoint_every_records = 10;
    o.checkpoint_every = absl::Hours(1);  // only count-based checkpoints in tests
    o.log_checkpoints = false;
    return o;
  }
  std::string dir, hmac, signing, pub, db;
};

inline v1::DecisionRecord MakeRecord(int i, absl::Time t = absl::FromUnixSeconds(1767225600)) {
  v1::DecisionRecord r;
  *r.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      absl::ToUnixNanos(t + absl::Seconds(i)));
  r.set_instance_id("test-1");
  r.set_trace_id(absl::StrCat("trace", i));
  r.set_span_id("00f067aa0ba902b7");
  r.set_message_id(absl::StrCat("msg-", i));
  r.set_operation("Request");
  r.set_authenticated_oin(i % 2 ? "00000099300000000014" : "00000099300000000479");
  r.set_sender(r.authenticated_oin());
  r.set_recipient("00000099200000000001");
  r.set_recipient_oin("00000099200000000001");
  r.set_message_type("gemeente.brp.v1.PersoonVraag");
  r.set_purpose("BRP-bevraging");
  r.set_agreement_id(i % 2 ? "brp-bevragen-afnemers" : "");
  r.set_decision(i % 2 ? v1::DECISION_ALLOWED : v1::DECISION_DENIED);
  r.set_event("decision");
  return r;
}

inline void Sql(const std::string& db, const std::string& sql) {
  sqlite3* h = nullptr;
  ASSERT_EQ(sqlite3_open(db.c_str(), &h), SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (err ? err : "");
  sqlite3_free(err);
  sqlite3_close(h);
}

// Runs a command line (the knooppunt-audit binary and its arguments) as a user would;
// stdout and stderr together.
struct CliRun {
  int exit_code;
  std::string out;
};
inline CliRun RunCli(const std::string& binary, const std::string& args) {
  const std::string cmd = absl::StrCat(binary, " ", args, " 2>&1");
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

enum class Storage { kSqlite, kPostgres };
inline void PrintTo(Storage s, std::ostream* os) {
  *os << (s == Storage::kSqlite ? "sqlite" : "postgres");
}

inline std::string StorageName(const ::testing::TestParamInfo<Storage>& info) {
  return info.param == Storage::kSqlite ? "Sqlite" : "Postgres";
}

// A test over both storages: TEST_P(SomeFixture, ...) with
// INSTANTIATE_TEST_SUITE_P(Storage, SomeFixture, ::testing::Values(Storage::kSqlite,
// Storage::kPostgres), StorageName). The PostgreSQL server is started once per suite (the
// cases skip, naming the package, when this machine has no server binaries); each case starts
// from empty audit tables.
class AuditStorageTest : public ::testing::TestWithParam<Storage> {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<knooppunt::testing::PostgresServer*> shared =
        knooppunt::testing::SharedPostgresServer();
    if (absl::IsFailedPrecondition(shared.status())) return;  // no server binaries: skip
    ASSERT_TRUE(shared.ok()) << shared.status();
    server_ = *shared;
  }
  void SetUp() override {
    if (!pg()) return;
    if (server_ == nullptr) GTEST_SKIP() << "no PostgreSQL server binaries (postgresql-15)";
    ASSERT_TRUE(server_->Sql("DO $$BEGIN IF to_regclass('audit_records') IS NOT NULL THEN "
                             "TRUNCATE audit_records, audit_subjects, audit_checkpoints; "
                             "END IF; END$$")
                    .ok());
  }

  bool pg() const { return GetParam() == Storage::kPostgres; }

  static pg::ConnectOptions Connect(const std::string& role = "knooppunt_writer") {
    pg::ConnectOptions o;
    o.conninfo = server_->Conninfo(role);
    o.password = pg::ReadPasswordFile(server_->PasswordFile(role)).value_or("");
    o.connect_timeout = absl::Seconds(2);
    o.application_name = "audit-test";
    return o;
  }
  // The log's options for this storage; `instance` names the chain on PostgreSQL.
  AuditLogOptions Options(const std::string& instance = "test-1") const {
    AuditLogOptions o = keys_.Options();
    o.instance_id = instance;
    if (pg()) o.postgres = Connect();
    return o;
  }
  absl::StatusOr<std::unique_ptr<AuditReader>> OpenReader(
      const std::string& role = "knooppunt_writer") const {
    if (pg()) return AuditReader::OpenPostgres(Connect(role));
    return AuditReader::Open(keys_.db);
  }
  VerifyResult Verify() const {
    absl::StatusOr<std::unique_ptr<AuditReader>> reader = OpenReader();
    EXPECT_TRUE(reader.ok()) << reader.status();
    if (!reader.ok()) return {};
    auto key = SignatureVerifier::FromPemFile(keys_.pub);
    EXPECT_TRUE(key.ok());
    absl::StatusOr<VerifyResult> r = (*reader)->Verify(**key);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.value_or(VerifyResult{});
  }
  // Tampering, written for the SQLite schema; on PostgreSQL (as the superuser) the tables are
  // renamed (records → audit_records, ...) and x'..' blobs become bytea literals.
  void Tamper(const std::string& sqlite_sql, std::string pg_sql = "") const {
    if (!pg()) return Sql(keys_.db, sqlite_sql);
    if (pg_sql.empty()) {
      pg_sql = std::regex_replace(sqlite_sql, std::regex("\\b(records|subjects|checkpoints)\\b"),
                                  "audit_$1");
      pg_sql = std::regex_replace(pg_sql, std::regex("x'([0-9a-fA-F]*)'"), "'\\x$1'::bytea");
    }
    absl::Status s = server_->Sql(pg_sql);
    EXPECT_TRUE(s.ok()) << pg_sql << ": " << s;
  }

  ScratchKeys keys_;
  static inline knooppunt::testing::PostgresServer* server_ = nullptr;
};

}  // namespace knooppunt::audit::testing

#endif  // KNOOPPUNT_TESTS_AUDIT_AUDIT_TEST_UTIL_H_
