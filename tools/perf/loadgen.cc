// knooppunt-perf-loadgen: the load generator of the performance comparison
// (tools/perf/compare.sh). A real gRPC client over mutual TLS (the project's own credentials,
// gateway/tls/credentials.h) that keeps --concurrency bevragingen in flight for --seconds and
// reports one JSON object on stdout.
//
// What it measures, and what it guarantees:
// - Every call's status is checked, and every reply must carry a gemeente.brp.v1.Persoon of
//   at least --reply_bytes. Any failed call makes the run fail (exit 1, the first error
//   printed): a run that reports a rate is a run in which every counted call succeeded.
// - --rpc=request calls Exchange.Request (client → Knooppunt → endpoint); --rpc=answer calls
//   Endpoint.Answer with the same envelope (client → endpoint, or through nginx / HAProxy,
//   which forward the RPC they are given). Each call has a fresh UUID message id.
// - Calls are spread over --channels connections (distinct channel args: one TCP + TLS
//   connection each), --concurrency calls in flight in total; as each call completes the next
//   one starts (closed loop). The first --warmup_seconds are not counted.
// - Requests/s and latency percentiles (p50, p99, p99.9, from every call completed in the
//   measured window) are the client's view. CPU seconds (utime + stime from /proc/PID/stat)
//   of --proxy_pids (the gateway or proxy) and --endpoint_pids are taken over the same window;
//   peak RSS is their VmHWM at the end. The load generator's own CPU is reported too.
// - --idle_connections=N instead opens N connections (each to READY, handshake done), holds
//   them for --seconds without calls, and reports the VmRSS / VmHWM of --proxy_pids then.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "gateway/client/envelope.h"
#include "gateway/tls/credentials.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/grpcpp.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"
#include "tools/perf/payload.h"

ABSL_FLAG(std::string, target, "127.0.0.1:18443", "host:port of the gateway, proxy or endpoint");
ABSL_FLAG(std::string, rpc, "request", "request: Exchange.Request; answer: Endpoint.Answer");
ABSL_FLAG(std::string, cert, "", "PEM client certificate presented");
ABSL_FLAG(std::string, key, "", "its private key");
ABSL_FLAG(std::string, ca, "", "CA the server's certificate must chain to");
ABSL_FLAG(std::string, server_oin, "", "OIN the server's certificate must carry");
ABSL_FLAG(std::string, sender, "00000099300000000014", "envelope sender (OIN)");
ABSL_FLAG(std::string, recipient, "00000099200000000001", "envelope recipient");
ABSL_FLAG(std::string, purpose, "BRP-bevraging", "envelope purpose");
ABSL_FLAG(int, request_bytes, 1024, "serialized size of the PersoonVraag sent");
ABSL_FLAG(int, reply_bytes, 1024, "a reply's Persoon must be at least this large");
ABSL_FLAG(int, concurrency, 1, "calls in flight");
ABSL_FLAG(int, channels, 0, "connections; 0: min(concurrency, 4)");
ABSL_FLAG(double, seconds, 5, "measured duration (idle mode: how long connections are held)");
ABSL_FLAG(double, warmup_seconds, 1, "not counted, before the measured window");
ABSL_FLAG(std::string, proxy_pids, "", "comma-separated pids of the gateway or proxy");
ABSL_FLAG(std::string, endpoint_pids, "", "comma-separated pids of the endpoint");
ABSL_FLAG(std::string, label, "", "copied into the JSON (setup name)");
ABSL_FLAG(int, idle_connections, 0, "idle mode: open this many connections and hold them");

namespace {

using Clock = std::chrono::steady_clock;
using knooppunt::exchange::v1::Envelope;

std::vector<int> ParsePids(const std::string& list) {
  std::vector<int> pids;
  for (absl::string_view part : absl::StrSplit(list, ',', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(part, &pid)) pids.push_back(pid);
  }
  return pids;
}

// utime + stime of `pid` in seconds; 0 when it cannot be read.
double CpuSeconds(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may contain spaces) start after the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
  // fields[0] is field 3 (state); utime is field 14, stime field 15.
  if (fields.size() < 13) return 0;
  double utime = 0, stime = 0;
  if (!absl::SimpleAtod(fields[11], &utime) || !absl::SimpleAtod(fields[12], &stime)) return 0;
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

double SumCpu(const std::vector<int>& pids) {
  double sum = 0;
  for (int pid : pids) sum += CpuSeconds(pid);
  return sum;
}

// A "VmHWM:" / "VmRSS:" line of /proc/PID/status, in MiB, summed over `pids`.
double SumStatusMib(const std::vector<int>& pids, const std::string& field) {
  double kib = 0;
  for (int pid : pids) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind(field, 0) != 0) continue;
      double value = 0;
      std::istringstream(line.substr(field.size())) >> value;
      kib += value;
    }
  }
  return kib / 1024.0;
}

double SelfCpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

std::shared_ptr<grpc::Channel> OpenChannel(const std::shared_ptr<grpc::ChannelCredentials>& creds,
                                           int index) {
  grpc::ChannelArguments args;
  // Distinct args: this channel gets its own subchannel, so its own connection.
  args.SetInt("knooppunt.perf.connection", index);
  args.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(absl::GetFlag(FLAGS_target), creds, args);
}

// A counter-based UUID (8-4-4-4-12 hex): unique within a run, cheap to make.
void SetMessageId(Envelope& envelope, uint64_t slot, uint64_t sequence) {
  envelope.set_message_id(absl::StrFormat("%08x-%04x-4%03x-8%03x-%012x",
                                          static_cast<uint32_t>(slot), 0xbe7c, 0, 0, sequence));
}

// One call slot: its calls run one after another (the next starts from the completion
// callback), so its fields need no lock.
struct Slot {
  uint64_t index = 0;
  uint64_t sequence = 0;
  knooppunt::exchange::v1::Exchange::Stub* exchange = nullptr;
  knooppunt::exchange::v1::Endpoint::Stub* endpoint = nullptr;
  Envelope request;
  Envelope reply;
  std::unique_ptr<grpc::ClientContext> context;
  Clock::time_point started;
  std::vector<uint32_t> latencies_ns;  // calls completed in the measured window
};

class Run {
 public:
  Run(Clock::time_point measure_from, Clock::time_point until, bool use_exchange,
      size_t reply_bytes)
      : measure_from_(measure_from), until_(until), use_exchange_(use_exchange),
        reply_bytes_(reply_bytes) {}

  void Start(Slot* slot) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++active_;
    }
    Issue(slot);
  }

  void WaitAll() {
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [this] { return active_ == 0; });
  }

  bool failed() const { return failures_ > 0; }
  uint64_t failures() const { return failures_; }
  std::string first_error() {
    std::lock_guard<std::mutex> lock(mu_);
    return first_error_;
  }

 private:
  void Issue(Slot* slot) {
    SetMessageId(slot->request, slot->index, slot->sequence++);
    slot->reply.Clear();
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    slot->started = Clock::now();
    auto on_done = [this, slot](grpc::Status status) { Completed(slot, status); };
    if (use_exchange_) {
      slot->exchange->async()->Request(slot->context.get(), &slot->request, &slot->reply,
                                       std::move(on_done));
    } else {
      slot->endpoint->async()->Answer(slot->context.get(), &slot->request, &slot->reply,
                                      std::move(on_done));
    }
  }

  void Completed(Slot* slot, const grpc::Status& status) {
    const Clock::time_point now = Clock::now();
    std::string error;
    if (!status.ok()) {
      error = absl::StrCat("call failed: code ", status.error_code(), ": ", status.error_message());
    } else if (slot->reply.payload().type_url() != kPersonTypeUrl ||
               slot->reply.payload().value().size() < reply_bytes_) {
      error = absl::StrCat("unexpected reply: ", slot->reply.payload().type_url(), " of ",
                           slot->reply.payload().value().size(), " bytes");
    }
    if (!error.empty()) {
      ++failures_;
      std::lock_guard<std::mutex> lock(mu_);
      if (first_error_.empty()) first_error_ = error;
    } else if (now >= measure_from_ && now <= until_) {
      slot->latencies_ns.push_back(static_cast<uint32_t>(
          std::min<int64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                now - slot->started).count(), UINT32_MAX)));
    }
    if (now < until_ && failures_ == 0) {
      Issue(slot);
      return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    if (--active_ == 0) done_.notify_all();
  }

  static constexpr char kPersonTypeUrl[] = "type.googleapis.com/gemeente.brp.v1.Persoon";
  const Clock::time_point measure_from_;
  const Clock::time_point until_;
  const bool use_exchange_;
  const size_t reply_bytes_;
  std::atomic<uint64_t> failures_{0};
  std::mutex mu_;
  std::condition_variable done_;
  int active_ = 0;  // guarded by mu_
  std::string first_error_;
};

double Percentile(const std::vector<uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(index, sorted.size() - 1)]) / 1e3;  // µs
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials() {
  absl::StatusOr<std::string> ca = knooppunt::tls::ReadPemFile(absl::GetFlag(FLAGS_ca), "CA");
  if (!ca.ok()) return ca.status();
  absl::StatusOr<std::string> cert =
      knooppunt::tls::ReadPemFile(absl::GetFlag(FLAGS_cert), "certificate");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = knooppunt::tls::ReadPemFile(absl::GetFlag(FLAGS_key), "key");
  if (!key.ok()) return key.status();
  return knooppunt::tls::MutualTlsChannelCredentials(*ca, *cert, *key,
                                                     absl::GetFlag(FLAGS_server_oin));
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "knooppunt-perf-loadgen: %s\n", message.c_str());
  return 1;
}

// Opens `count` connections, waits until each is READY, holds them, reports the server's RSS.
int HoldIdleConnections(const std::shared_ptr<grpc::ChannelCredentials>& creds, int count) {
  const std::vector<int> proxy = ParsePids(absl::GetFlag(FLAGS_proxy_pids));
  const double rss_before = SumStatusMib(proxy, "VmRSS:");
  const absl::Time start = absl::Now();
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  channels.reserve(static_cast<size_t>(count));
  int ready = 0;
  // In batches, so that handshakes do not pile up past their deadlines on 2 cores.
  constexpr int kBatch = 200;
  for (int first = 0; first < count; first += kBatch) {
    const int last = std::min(count, first + kBatch);
    for (int i = first; i < last; ++i) {
      channels.push_back(OpenChannel(creds, i));
      channels.back()->GetState(/*try_to_connect=*/true);
    }
    for (int i = first; i < last; ++i) {
      if (channels[static_cast<size_t>(i)]->WaitForConnected(std::chrono::system_clock::now() +
                                                             std::chrono::seconds(60))) {
        ++ready;
      }
    }
  }
  const double open_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::this_thread::sleep_for(std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds)));
  // Still connected after the hold?
  int still_ready = 0;
  for (auto& channel : channels) {
    if (channel->GetState(false) == GRPC_CHANNEL_READY) ++still_ready;
  }
  const double rss = SumStatusMib(proxy, "VmRSS:");
  const double hwm = SumStatusMib(proxy, "VmHWM:");
  std::printf(
      "{\"label\":\"%s\",\"mode\":\"idle\",\"connections\":%d,\"ready\":%d,\"still_ready\":%d,"
      "\"open_seconds\":%.1f,\"proxy_rss_before_mib\":%.1f,\"proxy_rss_mib\":%.1f,"
      "\"proxy_hwm_mib\":%.1f,\"client_rss_mib\":%.1f}\n",
      absl::GetFlag(FLAGS_label).c_str(), count, ready, still_ready, open_seconds, rss_before,
      rss, hwm, SumStatusMib({getpid()}, "VmRSS:"));
  std::fflush(stdout);
  return ready == count && still_ready == count ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds = Credentials();
  if (!creds.ok()) return Fail(creds.status().ToString());
  if (absl::GetFlag(FLAGS_idle_connections) > 0) {
    return HoldIdleConnections(*creds, absl::GetFlag(FLAGS_idle_connections));
  }

  const int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  const int channel_count = absl::GetFlag(FLAGS_channels) > 0 ? absl::GetFlag(FLAGS_channels)
                                                              : std::min(concurrency, 4);
  const std::string rpc = absl::GetFlag(FLAGS_rpc);
  if (rpc != "request" && rpc != "answer") return Fail("--rpc must be request or answer");
  const bool use_exchange = rpc == "request";

  std::vector<std::shared_ptr<grpc::Channel>> channels;
  std::vector<std::unique_ptr<knooppunt::exchange::v1::Exchange::Stub>> exchange_stubs;
  std::vector<std::unique_ptr<knooppunt::exchange::v1::Endpoint::Stub>> endpoint_stubs;
  for (int i = 0; i < channel_count; ++i) {
    channels.push_back(OpenChannel(*creds, i));
    if (!channels.back()->WaitForConnected(std::chrono::system_clock::now() +
                                           std::chrono::seconds(10))) {
      return Fail(absl::StrCat("no connection to ", absl::GetFlag(FLAGS_target), " within 10 s"));
    }
    exchange_stubs.push_back(knooppunt::exchange::v1::Exchange::NewStub(channels.back()));
    endpoint_stubs.push_back(knooppunt::exchange::v1::Endpoint::NewStub(channels.back()));
  }

  const Envelope prototype = knooppunt::client::NewEnvelope(
      absl::GetFlag(FLAGS_sender), absl::GetFlag(FLAGS_recipient), absl::GetFlag(FLAGS_purpose),
      knooppunt::perf::QueryOfSize(static_cast<size_t>(absl::GetFlag(FLAGS_request_bytes))));
  const Clock::time_point start = Clock::now();
  const Clock::time_point measure_from =
      start + std::chrono::duration_cast<Clock::duration>(
                  std::chrono::duration<double>(absl::GetFlag(FLAGS_warmup_seconds)));
  const Clock::time_point until =
      measure_from + std::chrono::duration_cast<Clock::duration>(
                         std::chrono::duration<double>(absl::GetFlag(FLAGS_seconds)));
  Run run(measure_from, until, use_exchange,
          static_cast<size_t>(std::max(0, absl::GetFlag(FLAGS_reply_bytes))));
  std::vector<Slot> slots(static_cast<size_t>(concurrency));
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& slot = slots[i];
    slot.index = i;
    slot.request = prototype;
    slot.exchange = exchange_stubs[i % exchange_stubs.size()].get();
    slot.endpoint = endpoint_stubs[i % endpoint_stubs.size()].get();
    slot.latencies_ns.reserve(1 << 16);
  }
  for (Slot& slot : slots) run.Start(&slot);

  const std::vector<int> proxy = ParsePids(absl::GetFlag(FLAGS_proxy_pids));
  const std::vector<int> endpoint = ParsePids(absl::GetFlag(FLAGS_endpoint_pids));
  std::this_thread::sleep_until(measure_from);
  const double proxy_cpu0 = SumCpu(proxy), endpoint_cpu0 = SumCpu(endpoint);
  const double self_cpu0 = SelfCpuSeconds();
  std::this_thread::sleep_until(until);
  const double proxy_cpu = SumCpu(proxy) - proxy_cpu0;
  const double endpoint_cpu = SumCpu(endpoint) - endpoint_cpu0;
  const double self_cpu = SelfCpuSeconds() - self_cpu0;
  run.WaitAll();
  if (run.failed()) {
    return Fail(absl::StrCat(run.failures(), " call(s) failed; first: ", run.first_error()));
  }

  std::vector<uint32_t> latencies;
  for (const Slot& slot : slots) {
    latencies.insert(latencies.end(), slot.latencies_ns.begin(), slot.latencies_ns.end());
  }
  std::sort(latencies.begin(), latencies.end());
  const double seconds = absl::GetFlag(FLAGS_seconds);
  const double calls = static_cast<double>(latencies.size());
  const double per_1k = calls > 0 ? 1000.0 / calls : 0;
  std::printf(
      "{\"label\":\"%s\",\"mode\":\"load\",\"rpc\":\"%s\",\"request_bytes\":%d,"
      "\"concurrency\":%d,\"channels\":%d,\"seconds\":%.1f,\"calls\":%.0f,\"rps\":%.1f,"
      "\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
      "\"proxy_cpu_s_per_1k\":%.4f,\"endpoint_cpu_s_per_1k\":%.4f,\"loadgen_cpu_s_per_1k\":%.4f,"
      "\"proxy_hwm_mib\":%.1f,\"endpoint_hwm_mib\":%.1f}\n",
      absl::GetFlag(FLAGS_label).c_str(), rpc.c_str(), absl::GetFlag(FLAGS_request_bytes),
      concurrency, channel_count, seconds, calls, calls / seconds, Percentile(latencies, 0.50),
      Percentile(latencies, 0.99), Percentile(latencies, 0.999), proxy_cpu * per_1k,
      endpoint_cpu * per_1k, self_cpu * per_1k, SumStatusMib(proxy, "VmHWM:"),
      SumStatusMib(endpoint, "VmHWM:"));
  std::fflush(stdout);
  return 0;
}
