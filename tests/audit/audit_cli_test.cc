// knooppunt-audit, the auditor's CLI, as a user runs it: init-keys, verify (exit 0 intact,
// 1 not, naming the first bad record), query by BSN in table/JSON/CSV, export + offline verify.
#include <sys/wait.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_log.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/audit/audit_test_util.h"

namespace knooppunt::audit {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using testing::CliRun;
CliRun Cli(const std::string& args) { return testing::RunCli(KNOOPPUNT_AUDIT_BIN, args); }

TEST(AuditCliTest, InitKeysVerifyQueryExport) {
  testing::ScratchKeys scratch;  // only for its directory
  const std::string dir = scratch.dir + "/keys";
  std::filesystem::create_directories(dir);
  CliRun r = Cli(absl::StrCat("init-keys --dir=", dir));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(Cli(absl::StrCat("init-keys --dir=", dir)).exit_code, 2);  // never overwrites

  AuditLogOptions o = scratch.Options();
  o.hmac_key = *ReadHmacKeyFile(dir + "/audit-hmac.key");
  o.signing_key_file = dir + "/audit-signing.key";
  {
    auto log = AuditLog::Open(o);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int i = 1; i <= 12; ++i) {
      gemeente::brp::v1::PersoonVraag q;
      q.set_bsn(i == 5 ? "999993653" : "111222333");
      v1::DecisionRecord rec = testing::MakeRecord(i);
      (*log)->AddDataSubjects(q.GetDescriptor(), q.SerializeAsString(), &rec);
      ASSERT_TRUE((*log)->Record(rec).ok());
    }
  }
  const std::string db = absl::StrCat("--db=", o.db_path);
  const std::string pub = absl::StrCat("--public_key=", dir, "/audit-signing.pub");

  r = Cli(absl::StrCat("verify ", db, " ", pub));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("INTACT: 12 records"));

  const std::string bsn = absl::StrCat("--bsn=999993653 --hmac_key=", dir, "/audit-hmac.key");
  r = Cli(absl::StrCat("query ", db, " ", bsn));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("(1 records)"));
  EXPECT_THAT(r.out, HasSubstr("00000099300000000014"));
  r = Cli(absl::StrCat("query ", db, " ", bsn, " --format=json"));
  EXPECT_THAT(r.out, HasSubstr("\"seq\":\"5\""));
  r = Cli(absl::StrCat("query ", db, " --format=csv --decision=denied"));
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 7) << r.out;  // header + 6
  EXPECT_THAT(r.out, HasSubstr("seq,time,event"));
  EXPECT_THAT(r.out, Not(HasSubstr("999993653")));

  const std::string out = scratch.dir + "/export";
  r = Cli(absl::StrCat("export ", db, " --out=", out));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  r = Cli(absl::StrCat("verify --export_dir=", out, " ", pub));
  EXPECT_EQ(r.exit_code, 0) << r.out;

  testing::Sql(o.db_path, "UPDATE records SET agreement_id = 'x' WHERE seq = 9");
  r = Cli(absl::StrCat("verify ", db, " ", pub));
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_THAT(r.out, HasSubstr("first bad record 9"));
}

}  // namespace
}  // namespace knooppunt::audit
