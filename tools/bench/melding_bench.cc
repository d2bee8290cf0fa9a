// knooppunt-bench-melding: durable Sends per second and accept-to-delivery latency.
//
// Runs a whole gateway in this process (its real GatewayServer, SQLite store in a temp dir,
// mutual TLS everywhere) plus a Deliver endpoint for Groningen, then keeps `senders`
// concurrent Sends in flight (callback API, over `channels` connections) for `seconds`.
// Prints: acknowledged Sends/s, Send latency p50/p99 (the Receipt waits for the fsync) and
// accept-to-delivery latency p50/p99 (Receipt's accepted_at → Deliver arriving).
// Target (issue 4): >= 10,000 acknowledged messages/s with 64 senders on 2 cores.
//
//   knooppunt-bench-melding [--pki_dir=certs/dev] [--seconds=10] [--senders=64]
//                           [--postgres=own|CONNINFO [--postgres_password_file=F]]
// With --postgres the store and the audit log are PostgreSQL's (one replica's share of a
// replicated deployment): the figure for docs/operations.md's capacity section.
#include <stdlib.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/client/envelope.h"
#include "gateway/server/gateway_config.h"
#include "gateway/server/gateway_server.h"
#include "gateway/tls/credentials.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/server_builder.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"
#ifdef KNOOPPUNT_BENCH_OWN_POSTGRES
#include "tests/testing/postgres_server.h"
#endif

ABSL_FLAG(std::string, pki_dir, "certs/dev", "directory made by tools/dev-pki.sh");
ABSL_FLAG(int, seconds, 10, "measurement time");
ABSL_FLAG(int, warmup_seconds, 2, "time before measuring");
ABSL_FLAG(int, senders, 64, "concurrent Sends in flight");
ABSL_FLAG(int, channels, 8, "client connections the senders share");
ABSL_FLAG(int, in_flight_per_recipient, 64, "melding.max_in_flight_per_recipient");
ABSL_FLAG(std::string, postgres, "",
          "store meldingen and the audit log in PostgreSQL (as replicas do) instead of SQLite: "
          "a libpq conninfo, or \"own\" for a throwaway server started in a temp dir "
          "(initdb; needs postgresql-15 and a build with tests)");
ABSL_FLAG(std::string, postgres_password_file, "", "with --postgres=CONNINFO: the password file");

namespace {

using knooppunt::exchange::v1::Envelope;
using knooppunt::exchange::v1::Receipt;

constexpr char kVerhuizenOin[] = "00000099100000000001";
constexpr char kGroningenOin[] = "00000099300000000014";

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (s.empty()) {
    std::fprintf(stderr, "cannot read %s (run tools/dev-pki.sh)\n", path.c_str());
    std::exit(1);
  }
  return s;
}

void Write(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

// CPU seconds (user + system) this process has used so far: client, gateway and endpoint.
double ProcessCpuSeconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double Percentile(std::vector<double>& v, double p) {
  if (v.empty()) return 0;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<long>(i), v.end());
  return v[i];
}

// Groningen's endpoint: notes when each melding arrived.
class Endpoint final : public knooppunt::exchange::v1::Endpoint::CallbackService {
 public:
  grpc::ServerUnaryReactor* Deliver(grpc::CallbackServerContext* ctx, const Envelope* e,
                                    knooppunt::exchange::v1::DeliverResponse*) override {
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      arrived_.emplace(e->message_id(), now);
    }
    auto* r = ctx->DefaultReactor();
    r->Finish(grpc::Status::OK);
    return r;
  }
  absl::flat_hash_map<std::string, absl::Time> arrived() {
    absl::MutexLock lock(&mu_);
    return arrived_;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, absl::Time> arrived_;
};

struct Stats {
  absl::Mutex mu;
  bool measuring = false;
  bool stopping = false;
  int64_t ok = 0, failed = 0;
  std::vector<double> send_ms;
  std::vector<std::pair<std::string, absl::Time>> accepted;  // id, accepted_at
  std::string first_error;
  int active = 0;
};

// One sender: a chain of Sends, the next started when the previous completes.
class Sender {
 public:
  Sender(knooppunt::exchange::v1::Exchange::Stub* stub, Stats* stats, int id)
      : stub_(stub), stats_(stats), id_(id) {}
  void Next() {
    {
      absl::MutexLock lock(&stats_->mu);
      if (stats_->stopping) {
        --stats_->active;
        return;
      }
    }
    gemeente::verhuizen::v1::Verhuismelding m;
    m.set_bsn("999993653");
    m.mutable_nieuw_adres()->set_straat("Grote Markt");
    m.mutable_nieuw_adres()->set_huisnummer(++n_);
    m.mutable_nieuw_adres()->set_woonplaats("Groningen");
    m.set_toelichting(absl::StrCat("sender ", id_));
    request_ = knooppunt::client::NewEnvelope(kVerhuizenOin, "gemeente:0014", "BRP-bijhouding", m);
    context_ = std::make_unique<grpc::ClientContext>();
    context_->set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    started_ = absl::Now();
    stub_->async()->Send(context_.get(), &request_, &receipt_, [this](grpc::Status s) {
      const absl::Time done = absl::Now();
      {
        absl::MutexLock lock(&stats_->mu);
        if (stats_->measuring) {
          if (s.ok()) {
            ++stats_->ok;
            stats_->send_ms.push_back(absl::ToDoubleMilliseconds(done - started_));
            stats_->accepted.emplace_back(
                request_.message_id(),
                absl::FromUnixNanos(google::protobuf::util::TimeUtil::TimestampToNanoseconds(
                    receipt_.accepted_at())));
          } else {
            ++stats_->failed;
            if (stats_->first_error.empty()) {
              stats_->first_error = absl::StrCat(s.error_code(), " ", s.error_message());
            }
          }
        }
      }
      Next();
    });
  }

 private:
  knooppunt::exchange::v1::Exchange::Stub* const stub_;
  Stats* const stats_;
  const int id_;
  int n_ = 0;
  Envelope request_;
  Receipt receipt_;
  std::unique_ptr<grpc::ClientContext> context_;
  absl::Time started_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  // absl::Mutex deadlock detection is a debugging aid that costs every lock a graph update;
  // the gateway is not a debug build.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const std::string pki = std::filesystem::absolute(absl::GetFlag(FLAGS_pki_dir)).string() + "/";
  std::string tmpl = (std::filesystem::temp_directory_path() / "melding-bench.XXXXXX").string();
  const std::string dir = mkdtemp(tmpl.data());

  // Groningen's endpoint.
  auto endpoint_creds = knooppunt::tls::MutualTlsServerCredentials(
      {pki + "groningen.crt", pki + "groningen.key", pki + "ca.crt", ""});
  if (!endpoint_creds.ok()) {
    std::fprintf(stderr, "%s\n", std::string(endpoint_creds.status().message()).c_str());
    return 1;
  }
  Endpoint endpoint;
  int endpoint_port = 0;
  grpc::ServerBuilder eb;
  eb.AddListeningPort("127.0.0.1:0", *endpoint_creds, &endpoint_port);
  eb.RegisterService(&endpoint);
  std::unique_ptr<grpc::Server> endpoint_server = eb.BuildAndStart();

  // The gateway, configured as in production but in a temp dir: the tamper-evident audit
  // log records every decision (with fresh keys), the store fsyncs every acknowledged Send.
  if (absl::Status keys = knooppunt::audit::GenerateKeys(
          dir + "/audit-hmac.key", dir + "/audit-signing.key", dir + "/audit-signing.pub");
      !keys.ok()) {
    std::fprintf(stderr, "%s\n", std::string(keys.message()).c_str());
    return 1;
  }
  // Where meldingen and audit records go: SQLite files here, or a PostgreSQL database.
  std::string audit_store = "  db_path: audit.db\n";
  std::string melding_store = "  store_path: meldingen.db\n";
  std::string postgres = absl::GetFlag(FLAGS_postgres);
  std::string password_file = absl::GetFlag(FLAGS_postgres_password_file);
#ifdef KNOOPPUNT_BENCH_OWN_POSTGRES
  std::unique_ptr<knooppunt::testing::PostgresServer> own_postgres;
  if (postgres == "own") {
    auto started = knooppunt::testing::PostgresServer::Start();
    if (!started.ok()) {
      std::fprintf(stderr, "%s\n", std::string(started.status().message()).c_str());
      return 1;
    }
    own_postgres = *std::move(started);
    postgres = own_postgres->Conninfo();
    password_file = own_postgres->PasswordFile();
  }
#endif
  if (postgres == "own") {
    std::fprintf(stderr, "--postgres=own needs a build with tests (KNOOPPUNT_BUILD_TESTS=ON)\n");
    return 1;
  }
  if (!postgres.empty()) {
    const std::string connection =
        absl::StrCat("    conninfo: \"", postgres, "\"\n",
                     password_file.empty() ? "" : absl::StrCat("    password_file: ", password_file, "\n"));
    audit_store = absl::StrCat("  postgres:\n", connection);
    melding_store = absl::StrCat("  postgres:\n", connection);
  }
  std::filesystem::create_directory(dir + "/agreements");
  Write(dir + "/registry.yaml",
        absl::StrCat("groups:\n  - name: gemeenten\n    description: all\n"
                     "organisations:\n"
                     "  - oin: \"", kVerhuizenOin, "\"\n    name: Verhuizen\n    kind: collective_service\n"
                     "  - oin: \"", kGroningenOin, "\"\n    name: Gemeente Groningen\n"
                     "    kind: municipality\n    gemeentecode: \"0014\"\n"
                     "    endpoint:\n      address: 127.0.0.1:", endpoint_port, "\n"
                     "    groups: [gemeenten]\n"));
  Write(dir + "/agreements/verhuizen.yaml",
        absl::StrCat("agreements:\n  - id: verhuizen-naar-gemeenten\n"
                     "    message_type: gemeente.verhuizen.v1.Verhuismelding\n    mode: melding\n"
                     "    from: [\"", kVerhuizenOin, "\"]\n    to: [group:gemeenten]\n"
                     "    purposes: [BRP-bijhouding]\n    fields:\n      all: true\n"));
  Write(dir + "/gateway.yaml",
        absl::StrCat("instance_id: bench\nlisten: 127.0.0.1:0\n"
                     "tls:\n  cert_file: ", pki, "gateway.crt\n  key_file: ", pki, "gateway.key\n"
                     "  client_ca_file: ", pki, "ca.crt\n"
                     "upstream_tls:\n  cert_file: ", pki, "gateway.crt\n  key_file: ", pki,
                     "gateway.key\n  ca_file: ", pki, "ca.crt\n"
                     "registry_file: registry.yaml\nagreement_dirs: [agreements]\n"
                     "audit:\n", audit_store, "  hmac_key_file: audit-hmac.key\n"
                     "  signing_key_file: audit-signing.key\n"
                     "melding:\n", melding_store, "  max_in_flight_per_recipient: ",
                     absl::GetFlag(FLAGS_in_flight_per_recipient), "\n"));
  auto config = knooppunt::server::LoadGatewayConfig(dir + "/gateway.yaml");
  if (!config.ok()) {
    std::fprintf(stderr, "%s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  auto gateway = knooppunt::server::GatewayServer::Start(*config);
  if (!gateway.ok()) {
    std::fprintf(stderr, "%s\n", std::string(gateway.status().message()).c_str());
    return 1;
  }
  const std::string address = absl::StrCat("127.0.0.1:", (*gateway)->port());

  auto creds = knooppunt::tls::MutualTlsChannelCredentials(
      Read(pki + "ca.crt"), Read(pki + "verhuizen.crt"), Read(pki + "verhuizen.key"),
      "00000099000000000001");
  std::vector<std::unique_ptr<knooppunt::exchange::v1::Exchange::Stub>> stubs;
  for (int i = 0; i < std::max(1, absl::GetFlag(FLAGS_channels)); ++i) {
    grpc::ChannelArguments args;
    args.SetInt("knooppunt.bench.channel", i);  // a connection of its own
    stubs.push_back(knooppunt::exchange::v1::Exchange::NewStub(
        grpc::CreateCustomChannel(address, creds, args)));
  }

  Stats stats;
  std::vector<std::unique_ptr<Sender>> senders;
  const int n = absl::GetFlag(FLAGS_senders);
  stats.active = n;
  for (int i = 0; i < n; ++i) {
    senders.push_back(std::make_unique<Sender>(stubs[i % stubs.size()].get(), &stats, i));
  }
  std::printf("melding bench: %d concurrent senders over %zu connections, %ds (after %ds warm-up),"
              " SQLite WAL synchronous=FULL in %s\n",
              n, stubs.size(), absl::GetFlag(FLAGS_seconds), absl::GetFlag(FLAGS_warmup_seconds),
              dir.c_str());
  for (auto& s : senders) s->Next();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_warmup_seconds)));
  {
    absl::MutexLock lock(&stats.mu);
    stats.measuring = true;
  }
  const absl::Time start = absl::Now();
  const double cpu_start = ProcessCpuSeconds();
  absl::SleepFor(absl::Seconds(absl::GetFlag(FLAGS_seconds)));
  {
    absl::MutexLock lock(&stats.mu);
    stats.measuring = false;
    stats.stopping = true;
  }
  const double elapsed = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = ProcessCpuSeconds() - cpu_start;
  {
    absl::MutexLock lock(&stats.mu);
    stats.mu.Await(absl::Condition(
        +[](int* active) { return *active == 0; }, &stats.active));
  }
  // Let deliveries of measured messages arrive (bounded).
  std::vector<double> deliver_ms;
  size_t undelivered = 0;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  for (;;) {
    auto arrived = endpoint.arrived();
    deliver_ms.clear();
    undelivered = 0;
    for (const auto& [id, accepted] : stats.accepted) {
      auto it = arrived.find(id);
      if (it == arrived.end()) {
        ++undelivered;
      } else {
        deliver_ms.push_back(absl::ToDoubleMilliseconds(it->second - accepted));
      }
    }
    if (undelivered == 0 || absl::Now() > until) break;
    absl::SleepFor(absl::Milliseconds(100));
  }

  std::printf("  acknowledged Sends: %lld in %.1fs = %.0f/s (target >= 10000/s); failed: %lld%s%s\n",
              static_cast<long long>(stats.ok), elapsed, static_cast<double>(stats.ok) / elapsed,
              static_cast<long long>(stats.failed), stats.first_error.empty() ? "" : ", first: ",
              stats.first_error.c_str());
  std::printf("  CPU (client + gateway + endpoint, this process): %.2f cores busy, %.0f us per "
              "acknowledged Send\n",
              cpu / elapsed, stats.ok > 0 ? cpu * 1e6 / static_cast<double>(stats.ok) : 0.0);
  std::printf("  Send latency (Receipt after fsync): p50 %.2f ms, p99 %.2f ms\n",
              Percentile(stats.send_ms, 0.50), Percentile(stats.send_ms, 0.99));
  std::printf("  accept-to-delivery latency: p50 %.2f ms, p99 %.2f ms (%zu delivered, %zu not "
              "within 30s)\n",
              Percentile(deliver_ms, 0.50), Percentile(deliver_ms, 0.99), deliver_ms.size(),
              undelivered);
  std::fflush(stdout);
  (*gateway)->Shutdown(absl::Seconds(2));
  (*gateway)->Wait();
  gateway->reset();
  endpoint_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  std::filesystem::remove_all(dir);
  return 0;
}
