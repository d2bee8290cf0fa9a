// Helpers for the audit tests: a scratch directory with fresh audit keys, records to write,
// and raw SQL against a log's database (to tamper with it).
#ifndef KNOOPPUNT_TESTS_AUDIT_AUDIT_TEST_UTIL_H_
#define KNOOPPUNT_TESTS_AUDIT_AUDIT_TEST_UTIL_H_

#include <sqlite3.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_log.h"
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

}  // namespace knooppunt::audit::testing

#endif  // KNOOPPUNT_TESTS_AUDIT_AUDIT_TEST_UTIL_H_
