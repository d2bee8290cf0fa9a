// gateway/common/pg_util.h against a real PostgreSQL started for the test.
#include "gateway/common/pg_util.h"

#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/postgres_server.h"

namespace knooppunt::pg {
namespace {

using ::knooppunt::testing::PostgresServer;

class PgUtilTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::StatusOr<PostgresServer*> shared = knooppunt::testing::SharedPostgresServer();
    if (absl::IsFailedPrecondition(shared.status())) return;  // no server binaries: skip
    ASSERT_TRUE(shared.ok()) << shared.status();
    server_ = *shared;
  }
  void SetUp() override {
    if (server_ == nullptr) GTEST_SKIP() << "no PostgreSQL server binaries (postgresql-15)";
  }
  ConnectOptions Options(const std::string& role = "knooppunt_writer") {
    ConnectOptions o;
    o.conninfo = server_->Conninfo(role);
    auto pw = ReadPasswordFile(server_->PasswordFile(role));
    EXPECT_TRUE(pw.ok()) << pw.status();
    o.password = pw.value_or("");
    o.application_name = "pg_util_test";
    return o;
  }
  static PostgresServer* server_;
};
PostgresServer* PgUtilTest::server_ = nullptr;

TEST_F(PgUtilTest, ParametersRoundTripTextBytesNullAndNumbers) {
  auto c = Connection::Open(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  const std::string bytes("a\0b'\\x00\xff", 9);
  auto r = (*c)->Exec("SELECT $1::text, $2::bytea, $3::text IS NULL, $4::bigint + 1",
                      {"O'Brien; DROP TABLE x", Param::Bytes(bytes), Param::Null(),
                       Param::Int(-9223372036854775807LL)});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->rows(), 1);
  EXPECT_EQ(r->Text(0, 0), "O'Brien; DROP TABLE x");
  EXPECT_EQ(r->Bytes(0, 1), bytes);
  EXPECT_EQ(r->Text(0, 2), "t");
  EXPECT_EQ(r->Int(0, 3), -9223372036854775806LL);
}

TEST_F(PgUtilTest, ErrorsMapToStatusCodes) {
  auto c = Connection::Open(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE((*c)->ExecScript("CREATE TABLE IF NOT EXISTS uniq (k text PRIMARY KEY)").ok());
  ASSERT_TRUE((*c)->Exec("INSERT INTO uniq VALUES ($1) ON CONFLICT DO NOTHING", {"k"}).ok());
  auto dup = (*c)->Exec("INSERT INTO uniq VALUES ($1)", {"k"});
  EXPECT_EQ(dup.status().code(), absl::StatusCode::kAlreadyExists) << dup.status();
  auto bad = (*c)->Exec("SELEC 1");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInternal);
  EXPECT_NE(bad.status().message().find("syntax"), std::string::npos) << bad.status();
  // A failed transaction is rolled back; the connection stays usable.
  absl::Status st = InTransaction(**c, [&]() -> absl::Status {
    auto in = (*c)->Exec("INSERT INTO uniq VALUES ($1)", {"other"});
    if (!in.ok()) return in.status();
    return (*c)->Exec("INSERT INTO uniq VALUES ($1)", {"k"}).status();
  });
  EXPECT_EQ(st.code(), absl::StatusCode::kAlreadyExists);
  auto count = (*c)->Exec("SELECT count(*) FROM uniq WHERE k = $1", {"other"});
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(count->Int(0, 0), 0);
}

TEST_F(PgUtilTest, WrongPasswordAndNoServerAreUnavailable) {
  ConnectOptions o = Options();
  o.password = "wrong";
  auto c = Connection::Open(o);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(c.status().message().find("password authentication failed"), std::string::npos)
      << c.status();
  ConnectOptions none;
  none.conninfo = "host=127.0.0.1 port=1 dbname=x user=y";
  none.connect_timeout = absl::Seconds(1);
  EXPECT_EQ(Connection::Open(none).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_FALSE(ReadPasswordFile("/nonexistent/pw").ok());
}

TEST_F(PgUtilTest, MigrationsApplyOnceAndRefuseANewerSchema) {
  auto c = Connection::Open(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  std::vector<Migration> v1 = {{1, "CREATE TABLE mig (a int)"}};
  ASSERT_TRUE(ApplyMigrations(**c, "test", v1).ok());
  ASSERT_TRUE(ApplyMigrations(**c, "test", v1).ok());  // already there: nothing runs
  std::vector<Migration> v2 = {{1, "CREATE TABLE mig (a int)"},
                               {2, "ALTER TABLE mig ADD COLUMN b text"}};
  ASSERT_TRUE(ApplyMigrations(**c, "test", v2).ok());
  EXPECT_TRUE((*c)->Exec("INSERT INTO mig (a, b) VALUES (1, 'x')").ok());
  absl::Status older = ApplyMigrations(**c, "test", v1);
  EXPECT_EQ(older.code(), absl::StatusCode::kFailedPrecondition) << older;
  // A failing step leaves the schema as it was.
  std::vector<Migration> broken = {v2[0], v2[1], {3, "ALTER TABLE mig ADD COLUMN c int; SELEC"}};
  EXPECT_FALSE(ApplyMigrations(**c, "test", broken).ok());
  auto cols = (*c)->Exec("SELECT count(*) FROM information_schema.columns WHERE table_name='mig'");
  ASSERT_TRUE(cols.ok());
  EXPECT_EQ(cols->Int(0, 0), 2);
}

TEST_F(PgUtilTest, TheAuditorRoleCanReadButNotWrite) {
  auto w = Connection::Open(Options());
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE((*w)->ExecScript("CREATE TABLE IF NOT EXISTS readable (a int);"
                                "CREATE TABLE IF NOT EXISTS unreadable (a int);"
                                "GRANT SELECT ON readable TO knooppunt_auditor")
                  .ok());
  auto r = Connection::Open(Options("knooppunt_auditor"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE((*r)->Exec("SELECT count(*) FROM readable").ok());
  // deploy/postgres/setup.sql grants nothing by default: only what a migration grants.
  EXPECT_FALSE((*r)->Exec("SELECT count(*) FROM unreadable").ok());
  EXPECT_FALSE((*r)->ExecScript("CREATE TABLE mine (a int)").ok());
  auto ins = (*r)->Exec("INSERT INTO readable VALUES (1)");
  EXPECT_FALSE(ins.ok());
  EXPECT_NE(ins.status().message().find("permission denied"), std::string::npos) << ins.status();
}

TEST_F(PgUtilTest, ALostServerIsUnavailableAndANewConnectionWorksWhenItIsBack) {
  auto c = Connection::Open(Options());
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(server_->Stop().ok());
  auto lost = (*c)->Exec("SELECT 1");
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kUnavailable) << lost.status();
  EXPECT_FALSE((*c)->healthy());
  ASSERT_TRUE(server_->Restart().ok());
  auto again = Connection::Open(Options());
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE((*again)->Exec("SELECT 1").ok());
}

}  // namespace
}  // namespace knooppunt::pg
