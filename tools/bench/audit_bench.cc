// knooppunt-bench-audit: how fast the audit log writes (group commit) and verifies.
// Targets (2 cores): >= 50,000 records written per second, >= 200,000 verified per second.
//
//   knooppunt-bench-audit [--records=200000] [--threads=64] [--dir=/tmp]
// Prints one line per figure. Records are realistic decision records (about 400 bytes, one
// data-subject pseudonym each); the database is in --dir with synchronous=FULL as in the
// gateway, a checkpoint signed every 1000 records.
#include <stdlib.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gateway/audit/audit_log.h"
#include "gateway/audit/audit_reader.h"
#include "google/protobuf/util/time_util.h"

ABSL_FLAG(int64_t, records, 200000, "records per write run");
ABSL_FLAG(int, threads, 64, "concurrent callers in the synchronous run");
ABSL_FLAG(bool, sync_run, true, "also measure synchronous Record callers");
ABSL_FLAG(std::string, dir, "", "scratch directory (default $TMPDIR or /tmp)");

namespace {
using namespace knooppunt::audit;

// CPU seconds used by this process so far (all threads): on a shared machine the wall clock
// also measures the neighbours, so both figures are printed.
double CpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec + (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

v1::DecisionRecord Sample(int64_t i, const DataSubjects& subjects) {
  v1::DecisionRecord r;
  *r.mutable_time() = google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
      absl::ToUnixNanos(absl::Now()));
  r.set_instance_id("knooppunt-bench-1");
  r.set_trace_id("4bf92f3577b34da6a3ce929d0e0e4736");
  r.set_span_id("00f067aa0ba902b7");
  r.set_message_id(absl::StrCat("6f1c9a4e-6d1b-4c1e-9f3a-", 100000000000 + i));
  r.set_correlation_id("");
  r.set_operation("Request");
  r.set_authenticated_oin("00000099300000000014");
  r.set_sender("00000099300000000014");
  r.set_recipient("00000099200000000001");
  r.set_recipient_oin("00000099200000000001");
  r.set_message_type("gemeente.brp.v1.PersoonVraag");
  r.set_purpose("BRP-bevraging");
  r.set_agreement_id("brp-bevragen-afnemers");
  r.set_decision(v1::DECISION_ALLOWED);
  r.set_reason("agreement in force");
  r.set_event("decision");
  r.set_payload_sha256("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08");
  r.set_payload_bytes(42);
  r.add_data_subjects(subjects.PseudonymOf(absl::StrCat(100000000 + i)));
  return r;
}

struct Scratch {
  Scratch() {
    std::string base = absl::GetFlag(FLAGS_dir);
    if (base.empty()) base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    std::string t = base + "/kp-audit-bench-XXXXXX";
    dir = mkdtemp(t.data());
    GenerateKeys(dir + "/hmac.key", dir + "/sign.key", dir + "/sign.pub").IgnoreError();
  }
  ~Scratch() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  AuditLogOptions Options(const std::string& db) const {
    AuditLogOptions o;
    o.db_path = dir + "/" + db;
    o.hmac_key = *ReadHmacKeyFile(dir + "/hmac.key");
    o.signing_key_file = dir + "/sign.key";
    o.instance_id = "knooppunt-bench-1";
    o.checkpoint_every_records = 1000;
    o.log_checkpoints = false;
    return o;
  }
  std::string dir;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  const int64_t n = absl::GetFlag(FLAGS_records);
  Scratch scratch;

  // 1. Asynchronous producers (Append): the writer's own limit.
  {
    auto log = AuditLog::Open(scratch.Options("async.db"));
    if (!log.ok()) {
      std::fprintf(stderr, "%s\n", std::string(log.status().message()).c_str());
      return 1;
    }
    // 100,000 distinct citizens, spread over the records (the index sees random keys).
    std::vector<std::string> citizens;
    for (int64_t i = 0; i < 100000; ++i) {
      citizens.push_back((*log)->data_subjects().PseudonymOf(absl::StrCat(100000000 + i)));
    }
    const v1::DecisionRecord sample = Sample(0, (*log)->data_subjects());
    std::atomic<int64_t> done{0}, failed{0};
    absl::Notification all;
    const double cpu0 = CpuSeconds();
    const absl::Time start = absl::Now();
    std::vector<std::thread> producers;
    for (int t = 0; t < 2; ++t) {
      producers.emplace_back([&, t] {
        v1::DecisionRecord r = sample;
        for (int64_t i = t; i < n; i += 2) {
          r.set_message_id(absl::StrCat("6f1c9a4e-6d1b-4c1e-9f3a-", 100000000000 + i));
          r.set_data_subjects(0, citizens[(i * 7919) % citizens.size()]);
          (*log)->Append(r, [&](absl::Status s) {
            if (!s.ok()) failed.fetch_add(1);
            if (done.fetch_add(1) + 1 == n) all.Notify();
          });
        }
      });
    }
    for (auto& p : producers) p.join();
    all.WaitForNotification();
    const double secs = absl::ToDoubleSeconds(absl::Now() - start);
    const double cpu = CpuSeconds() - cpu0;
    std::printf("audit write, group commit, 2 async producers: %lld records in %.3fs = %.0f records/s wall; %.2f CPU-s = %.0f records per CPU-second (%lld failed)\n",
                static_cast<long long>(n), secs, n / secs, cpu, n / cpu,
                static_cast<long long>(failed.load()));
    (*log)->Close();
  }

  // 2. Synchronous callers (Record), as the exchange path calls it: each waits for its commit.
  int64_t total_sync = 0;
  if (absl::GetFlag(FLAGS_sync_run)) {
    auto log = AuditLog::Open(scratch.Options("sync.db"));
    const int threads = absl::GetFlag(FLAGS_threads);
    const int64_t per = std::max<int64_t>(1, n / threads);
    std::atomic<int64_t> failed{0};
    const absl::Time start = absl::Now();
    std::vector<std::thread> callers;
    for (int t = 0; t < threads; ++t) {
      callers.emplace_back([&, t] {
        for (int64_t i = 0; i < per; ++i) {
          if (!(*log)->Record(Sample(t * per + i, (*log)->data_subjects())).ok()) failed.fetch_add(1);
        }
      });
    }
    for (auto& c : callers) c.join();
    total_sync = per * threads;
    const double secs = absl::ToDoubleSeconds(absl::Now() - start);
    std::printf("audit write, group commit, %d threads calling Record (fsync per batch): %lld records in %.3fs = %.0f records/s (%lld failed)\n",
                threads, static_cast<long long>(total_sync), secs, total_sync / secs,
                static_cast<long long>(failed.load()));
    (*log)->Close();
  }

  // 3. Verification of the whole chain (hashes, columns, subject index, checkpoints).
  {
    auto key = SignatureVerifier::FromPemFile(scratch.dir + "/sign.pub");
    auto reader = AuditReader::Open(scratch.dir + "/async.db");
    const double cpu0 = CpuSeconds();
    const absl::Time start = absl::Now();
    absl::StatusOr<VerifyResult> r = (*reader)->Verify(**key);
    const double secs = absl::ToDoubleSeconds(absl::Now() - start);
    const double cpu = CpuSeconds() - cpu0;
    if (!r.ok() || !r->intact) {
      std::fprintf(stderr, "verification failed: %s\n", r.ok() ? r->problem.c_str() : "error");
      return 1;
    }
    std::printf("audit verify (database): %lld records, %lld checkpoints in %.3fs = %.0f records/s wall; %.0f records per CPU-second\n",
                static_cast<long long>(r->records), static_cast<long long>(r->checkpoints), secs,
                r->records / secs, r->records / cpu);
    const std::string out = scratch.dir + "/export";
    (*reader)->Export(out).IgnoreError();
    const absl::Time s2 = absl::Now();
    absl::StatusOr<VerifyResult> e = VerifyExport(out, **key);
    const double secs2 = absl::ToDoubleSeconds(absl::Now() - s2);
    if (e.ok() && e->intact) {
      std::printf("audit verify (export files, offline): %lld records in %.3fs = %.0f records/s\n",
                  static_cast<long long>(e->records), secs2, e->records / secs2);
    }
  }
  std::printf("targets: write >= 50000 records/s, verify >= 200000 records/s (2 cores)\n");
  return 0;
}
