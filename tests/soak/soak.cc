// knooppunt-soak: a bounded run of mixed traffic at a fixed rate against the real gateway
// binary, configured as in production (tamper-evident audit log, melding store, mTLS on
// both legs), that reports the gateway's RSS over time, errors by kind and meldingen lost.
//
// Traffic, every tick: bevragingen Groningen → BRP (allowed), bevragingen with a purpose no
// agreement covers (denied: PERMISSION_DENIED is expected), and Verhuismeldingen Verhuizen →
// Groningen (pushed to Groningen's Deliver endpoint). At most --max_in_flight calls are
// outstanding; a tick that finds no room counts as "shed" instead of queueing without bound.
//
// At the end it stops sending, waits (bounded) until every acknowledged melding has been
// delivered, and prints the report. Lost = acknowledged meldingen never delivered; it must be
// 0. The exit status is non-zero when meldingen were lost, when a call failed in a way that
// is not expected (anything but the planned denials), or when RSS kept growing: the last
// quarter's average more than --max_rss_growth above the third quarter's. (The first half is
// warm-up: the SQLite page caches of the audit log (64 MiB) and the store (8 MiB) fill up as
// the databases grow; at 200 calls/s that takes about four minutes.)
//
//   knooppunt-soak --duration=10m --rate=200 [--sample_every=10s]
// (run by tools/soak.sh, which builds it and makes the dev PKI; KNOOPPUNT_GATEWAY_BIN and
// KNOOPPUNT_TEST_PKI_DIR tell it where the gateway binary and the PKI are.)
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/client/envelope.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "tests/melding/melding_fixture.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

ABSL_FLAG(absl::Duration, duration, absl::Minutes(10), "how long to send");
ABSL_FLAG(int, rate, 200, "calls per second in all (bevragingen, denials and meldingen)");
ABSL_FLAG(absl::Duration, sample_every, absl::Seconds(10), "RSS sampling interval");
ABSL_FLAG(int, max_in_flight, 256, "outstanding calls at most; beyond that a call is shed");
ABSL_FLAG(double, max_rss_growth, 0.05, "allowed RSS growth, last quarter vs third quarter");

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;

// RSS of `pid` in KiB from /proc, 0 when it cannot be read.
long RssKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) != 0) continue;
    std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
    long kib = 0;
    if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kib)) return kib;
  }
  return 0;
}

struct Tally {
  absl::Mutex mu;
  int in_flight ABSL_GUARDED_BY(mu) = 0;
  std::map<std::string, long> outcomes ABSL_GUARDED_BY(mu);  // "<kind> <status>" → count
  long unexpected ABSL_GUARDED_BY(mu) = 0;
  long shed ABSL_GUARDED_BY(mu) = 0;
  std::vector<std::string> acked ABSL_GUARDED_BY(mu);  // melding ids with a Receipt

  bool TryStart() {
    absl::MutexLock lock(&mu);
    if (in_flight >= absl::GetFlag(FLAGS_max_in_flight)) {
      ++shed;
      return false;
    }
    ++in_flight;
    return true;
  }
  void Done(const std::string& kind, const grpc::Status& s, grpc::StatusCode expected) {
    absl::MutexLock lock(&mu);
    --in_flight;
    ++outcomes[absl::StrCat(kind, " ", s.error_code())];
    if (s.error_code() != expected) ++unexpected;
  }
};

// One asynchronous call with its own context and messages; deletes itself when done.
template <typename Reply>
struct Call {
  grpc::ClientContext context;
  Envelope request;
  Reply reply;
};

int Run() {
  const std::string keys = std::filesystem::temp_directory_path() /
                           absl::StrCat("knooppunt-soak-keys-", getpid());
  std::filesystem::create_directories(keys);
  if (absl::Status s = audit::GenerateKeys(keys + "/hmac.key", keys + "/sign.key",
                                           keys + "/sign.pub");
      !s.ok()) {
    std::fprintf(stderr, "audit keys: %s\n", std::string(s.message()).c_str());
    return 2;
  }
  auto brp = TestEndpoint::Start("brp");
  auto groningen = DeliverEndpoint::Start("groningen");
  if (!brp.ok() || groningen == nullptr) {
    std::fprintf(stderr, "cannot start the endpoints (is KNOOPPUNT_TEST_PKI_DIR set?)\n");
    return 2;
  }
  GatewayConfigFiles files = MeldingFiles(groningen->address());
  std::vector<TestOrganisation> orgs = DevPkiOrganisations();
  SetEndpoint(&orgs, kBrpOin, (*brp)->address());
  SetEndpoint(&orgs, kGroningenOin, groningen->address());
  files.registry_yaml = RegistryYaml(orgs);
  absl::StrAppend(&files.extra_gateway_yaml, "audit:\n  db_path: ", keys, "/audit.db\n",
                  "  hmac_key_file: ", keys, "/hmac.key\n  signing_key_file: ", keys,
                  "/sign.key\n");
  MeldingGateway gateway(files);
  if (!gateway.Start()) return 2;

  auto groningen_stub = ExchangeStubFor(gateway.address(), "groningen");
  auto verhuizen_stub = ExchangeStubFor(gateway.address(), "verhuizen");
  Tally tally;
  std::vector<std::pair<absl::Duration, long>> rss;  // (time since start, KiB)

  const int rate = std::max(3, absl::GetFlag(FLAGS_rate));
  const absl::Duration tick = absl::Milliseconds(20);
  const double per_tick = rate * absl::ToDoubleSeconds(tick);
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::GetFlag(FLAGS_duration);
  absl::Time next_sample = start;
  double owed = 0;
  long sent = 0;
  std::printf("soak: %d calls/s for %s against %s (pid %d)\n", rate,
              absl::FormatDuration(absl::GetFlag(FLAGS_duration)).c_str(),
              gateway.address().c_str(), static_cast<int>(gateway.pid()));
  std::fflush(stdout);
  for (absl::Time t = start; t < end; t += tick) {
    absl::SleepFor(t - absl::Now());
    if (absl::Now() >= next_sample) {
      rss.emplace_back(absl::Now() - start, RssKib(gateway.pid()));
      std::printf("  t=%6.0fs  rss=%ld KiB\n", absl::ToDoubleSeconds(rss.back().first),
                  rss.back().second);
      std::fflush(stdout);
      next_sample += absl::GetFlag(FLAGS_sample_every);
    }
    for (owed += per_tick; owed >= 1; owed -= 1, ++sent) {
      if (!tally.TryStart()) continue;
      const int kind = static_cast<int>(sent % 3);
      if (kind == 2) {  // a melding
        auto* call = new Call<exchange::v1::Receipt>;
        call->request = Verhuismelding("gemeente:0014", "", absl::StrCat("soak ", sent));
        call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
        verhuizen_stub->async()->Send(&call->context, &call->request, &call->reply,
                                      [call, &tally](grpc::Status s) {
                                        if (s.ok()) {
                                          absl::MutexLock lock(&tally.mu);
                                          tally.acked.push_back(call->request.message_id());
                                        }
                                        tally.Done("melding", s, grpc::StatusCode::OK);
                                        delete call;
                                      });
        continue;
      }
      gemeente::brp::v1::PersoonVraag q;
      q.set_bsn("999993653");
      auto* call = new Call<Envelope>;
      // kind 1 asks for a purpose no agreement covers: a planned denial.
      call->request = client::NewEnvelope(std::string(kGroningenOin), std::string(kBrpOin),
                                          kind == 0 ? "BRP-bevraging" : "Nieuwsgierigheid", q);
      call->context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      const grpc::StatusCode expected =
          kind == 0 ? grpc::StatusCode::OK : grpc::StatusCode::PERMISSION_DENIED;
      groningen_stub->async()->Request(&call->context, &call->request, &call->reply,
                                       [call, &tally, kind, expected](grpc::Status s) {
                                         tally.Done(kind == 0 ? "bevraging" : "denied", s,
                                                    expected);
                                         delete call;
                                       });
    }
  }
  // Drain: every outstanding call ends (deadlines bound it), then deliveries catch up.
  {
    absl::MutexLock lock(&tally.mu);
    tally.mu.AwaitWithTimeout(absl::Condition(
                                  +[](int* n) { return *n == 0; }, &tally.in_flight),
                              absl::Seconds(60));
  }
  rss.emplace_back(absl::Now() - start, RssKib(gateway.pid()));
  std::vector<std::string> acked;
  {
    absl::MutexLock lock(&tally.mu);
    acked = tally.acked;
  }
  groningen->WaitForIds(acked, absl::Seconds(120));
  std::set<std::string> delivered;
  for (const auto& d : groningen->delivered()) delivered.insert(d.envelope.message_id());
  long lost = 0;
  for (const std::string& id : acked) lost += delivered.count(id) == 0 ? 1 : 0;
  const bool stopped_cleanly = gateway.Stop();

  // RSS levels off: compare the averages of the third and the last quarter of the samples.
  auto average = [&rss](size_t from, size_t to) {
    double sum = 0;
    for (size_t i = from; i < to; ++i) sum += static_cast<double>(rss[i].second);
    return to > from ? sum / static_cast<double>(to - from) : 0.0;
  };
  const size_t q = rss.size() / 4;
  const double third_quarter = average(2 * q, 3 * q);
  const double last_quarter = average(rss.size() - q, rss.size());
  const double growth = q > 0 && third_quarter > 0 ? last_quarter / third_quarter - 1 : 0;
  const bool rss_ok = q == 0 || growth <= absl::GetFlag(FLAGS_max_rss_growth);

  absl::MutexLock lock(&tally.mu);
  std::printf("\nsoak report\n  sent %ld calls (%ld shed at the in-flight limit)\n", sent,
              tally.shed);
  for (const auto& [kind, n] : tally.outcomes) {
    std::printf("  %-24s %ld\n", kind.c_str(), n);
  }
  std::printf("  unexpected outcomes: %ld\n", tally.unexpected);
  std::printf("  meldingen acknowledged: %zu, delivered: %zu distinct, lost: %ld\n", acked.size(),
              delivered.size(), lost);
  std::printf("  RSS: first %ld KiB, peak %ld KiB, last %ld KiB; last quarter vs third "
              "quarter: %+.1f%% (%s)\n",
              rss.empty() ? 0 : rss.front().second,
              rss.empty() ? 0
                          : std::max_element(rss.begin(), rss.end(),
                                             [](auto& a, auto& b) { return a.second < b.second; })
                                ->second,
              rss.empty() ? 0 : rss.back().second, growth * 100,
              q == 0 ? "too short to tell" : rss_ok ? "levels off" : "KEEPS GROWING");
  std::printf("  gateway stopped cleanly: %s\n", stopped_cleanly ? "yes" : "NO");
  std::filesystem::remove_all(keys);
  const bool ok = lost == 0 && tally.unexpected == 0 && rss_ok && stopped_cleanly;
  std::printf("  verdict: %s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace knooppunt::testing

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return knooppunt::testing::Run();
}
