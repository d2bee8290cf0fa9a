#include "tests/testing/gateway_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gateway/tls/credentials.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

constexpr absl::Duration kPollInterval = absl::Milliseconds(20);
constexpr char kDecisionLog[] = "decisions.jsonl";
constexpr char kPortFile[] = "gateway.port";
constexpr char kStderrFile[] = "gateway.stderr";
constexpr char kStdoutFile[] = "gateway.stdout";

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "gateway_harness: %s\n", message.c_str());
  std::abort();
}

// $KNOOPPUNT_GATEWAY_BIN, checked before anything is created.
absl::StatusOr<std::string> GatewayBinary() {
  const char* bin = std::getenv("KNOOPPUNT_GATEWAY_BIN");
  if (bin == nullptr || *bin == '\0') {
    return absl::FailedPreconditionError(
        "KNOOPPUNT_GATEWAY_BIN is not set (run the tests through ctest)");
  }
  if (access(bin, X_OK) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "KNOOPPUNT_GATEWAY_BIN=", bin, " is not an executable: ", std::strerror(errno)));
  }
  return std::string(bin);
}

// A YAML double-quoted scalar.
std::string Quoted(absl::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  out.push_back('"');
  return out;
}

std::string ReadFileIfAny(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

void WriteFileOrDie(const std::string& path, absl::string_view contents) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) Die(absl::StrCat("cannot write ", path));
}

std::string MakeTempDir() {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp != nullptr && *tmp == '/') ? tmp : "/tmp";
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  // The gateway names files by their normalised absolute path; so does the test.
  base = std::filesystem::path(base).lexically_normal().string();
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::string pattern = absl::StrCat(base, "/knooppunt-it-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    Die(absl::StrCat("mkdtemp ", pattern, ": ", std::strerror(errno)));
  }
  return pattern;
}

void RemoveDir(const std::string& dir) {
  const char* keep = std::getenv("KNOOPPUNT_KEEP_TEST_DIRS");
  if (keep != nullptr && *keep != '\0') {
    std::fprintf(stderr, "gateway_harness: keeping %s\n", dir.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace

std::string GatewayConfigYaml(const GatewayConfigFiles& files, absl::string_view listen) {
  std::string yaml = absl::StrCat(
      "# Written by tests/testing/gateway_harness.cc\n", "instance_id: ",
      files.instance_id.empty() ? "knooppunt-it" : files.instance_id, "\n",
      "listen: ", Quoted(listen), "\n", "tls:\n", "  cert_file: ",
      Quoted(files.tls_cert_file.empty() ? PkiPath("gateway.crt") : files.tls_cert_file), "\n",
      "  key_file: ", Quoted(files.tls_key_file.empty() ? PkiPath("gateway.key") : files.tls_key_file),
      "\n", "  client_ca_file: ",
      Quoted(files.client_ca_file.empty() ? PkiPath("ca.crt") : files.client_ca_file), "\n");
  if (!files.crl_directory.empty()) {
    absl::StrAppend(&yaml, "  crl_directory: ", Quoted(files.crl_directory), "\n");
  } else if (files.check_crl) {
    absl::StrAppend(&yaml, "  crl_directory: ", Quoted(PkiPath("crl")), "\n");
  }
  absl::StrAppend(&yaml, "upstream_tls:\n", "  cert_file: ", Quoted(PkiPath("gateway.crt")), "\n",
                  "  key_file: ", Quoted(PkiPath("gateway.key")), "\n",
                  "  ca_file: ", Quoted(PkiPath("ca.crt")), "\n",
                  "registry_file: registry.yaml\n", "agreement_dirs:\n", "  - agreements\n");
  if (files.max_payload_bytes != 0 || !files.default_deadline.empty() ||
      !files.max_deadline.empty() || !files.handshake_timeout.empty() ||
      files.max_concurrent_streams != 0 || files.max_connections_per_peer != 0) {
    absl::StrAppend(&yaml, "limits:\n");
    if (files.max_payload_bytes != 0) {
      absl::StrAppend(&yaml, "  max_payload_bytes: ", files.max_payload_bytes, "\n");
    }
    if (!files.default_deadline.empty()) {
      absl::StrAppend(&yaml, "  default_deadline: ", files.default_deadline, "\n");
    }
    if (!files.max_deadline.empty()) {
      absl::StrAppend(&yaml, "  max_deadline: ", files.max_deadline, "\n");
    }
    if (!files.handshake_timeout.empty()) {
      absl::StrAppend(&yaml, "  handshake_timeout: ", files.handshake_timeout, "\n");
    }
    if (files.max_concurrent_streams != 0) {
      absl::StrAppend(&yaml, "  max_concurrent_streams: ", files.max_concurrent_streams, "\n");
    }
    if (files.max_connections_per_peer != 0) {
      absl::StrAppend(&yaml, "  max_connections_per_peer: ", files.max_connections_per_peer,
                      "\n");
    }
  }
  absl::StrAppend(&yaml, "decision_log:\n", "  path: ", kDecisionLog, "\n",
                  files.extra_gateway_yaml);
  return yaml;
}

namespace {

// Writes every file of the configuration into `dir`.
void WriteConfig(const std::string& dir, const GatewayConfigFiles& files,
                 absl::string_view listen) {
  WriteFileOrDie(absl::StrCat(dir, "/gateway.yaml"), GatewayConfigYaml(files, listen));
  WriteFileOrDie(absl::StrCat(dir, "/registry.yaml"), files.registry_yaml);
  const std::string agreements = absl::StrCat(dir, "/agreements");
  std::error_code ec;
  std::filesystem::create_directory(agreements, ec);
  if (ec) Die(absl::StrCat("mkdir ", agreements, ": ", ec.message()));
  for (const auto& [name, contents] : files.agreement_files) {
    WriteFileOrDie(absl::StrCat(agreements, "/", name), contents);
  }
}

// fork + execv of the gateway on dir/gateway.yaml; stdout/stderr go to files in dir.
pid_t SpawnGateway(const std::string& bin, const std::string& dir) {
  const std::string config_flag = absl::StrCat("--config=", dir, "/gateway.yaml");
  const std::string port_flag = absl::StrCat("--port_file=", dir, "/", kPortFile);
  const std::string stdout_path = absl::StrCat(dir, "/", kStdoutFile);
  const std::string stderr_path = absl::StrCat(dir, "/", kStderrFile);
  std::vector<char*> argv = {const_cast<char*>(bin.c_str()),
                             const_cast<char*>(config_flag.c_str()),
                             const_cast<char*>(port_flag.c_str()), nullptr};
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) Die(absl::StrCat("fork: ", std::strerror(errno)));
  if (pid == 0) {
    // The child of a multi-threaded process: async-signal-safe calls only until execv.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &dfl, nullptr);
    sigaction(SIGINT, &dfl, nullptr);
    sigaction(SIGPIPE, &dfl, nullptr);
    // No gateway outlives the test process (the signal follows the forking thread, which is
    // the test's main thread).
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);
    const int in = open("/dev/null", O_RDONLY);
    const int out = open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int err = open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || err < 0) _exit(126);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    // Nothing of the test process (listening sockets of test endpoints, ...) leaks in.
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) != 0)
#endif
    {
      for (int fd = 3; fd < 4096; ++fd) close(fd);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

// Reads a complete port file: digits and a newline (the gateway renames it into place).
std::optional<int> ReadPort(const std::string& path) {
  const std::string text = ReadFileIfAny(path);
  int port = 0;
  if (text.empty() || !absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) || port <= 0) {
    return std::nullopt;
  }
  return port;
}

int FreePort() {
  ClosedPort reserved;
  return reserved.port();  // released when `reserved` closes its socket
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exit code ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

grpc::ChannelArguments TestChannelArguments() {
  grpc::ChannelArguments args;
  // A fresh connection per stub: one test's certificate never rides on another's connection.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return args;
}

}  // namespace

// ---- registry ----

std::vector<TestOrganisation> DevPkiOrganisations() {
  return {
      {std::string(kVerhuizenOin), "Verhuizen (landelijke voorziening)", "collective_service",
       "", "", {"landelijke-voorzieningen"}},
      {std::string(kBrpOin), "BRP Bevragen (centrale voorziening)", "register", "", "", {}},
      {std::string(kGroningenOin), "Gemeente Groningen", "municipality", "0014", "",
       {"gemeenten", "brp-afnemers"}},
      {std::string(kZaanstadOin), "Gemeente Zaanstad", "municipality", "0479", "", {"gemeenten"}},
      {std::string(kAmsterdamOin), "Gemeente Amsterdam", "municipality", "0363", "",
       {"gemeenten"}},
      {std::string(kAuditorOin), "Auditdienst", "auditor", "", "", {}},
      {std::string(kOperatorOin), "Beheer Knooppunt", "operator", "", "", {}},
  };
}

void SetEndpoint(std::vector<TestOrganisation>* organisations, absl::string_view oin,
                 std::string address) {
  for (TestOrganisation& org : *organisations) {
    if (org.oin == oin) {
      org.endpoint_address = std::move(address);
      return;
    }
  }
  Die(absl::StrCat("SetEndpoint: no organisation with OIN ", oin));
}

std::string RegistryYaml(const std::vector<TestOrganisation>& organisations) {
  std::string yaml =
      "# Written by tests/testing/gateway_harness.cc\n"
      "groups:\n"
      "  - name: gemeenten\n"
      "    description: All municipalities\n"
      "  - name: brp-afnemers\n"
      "    description: Municipalities authorised as afnemer of the BRP person service\n"
      "  - name: landelijke-voorzieningen\n"
      "    description: Collective (national) services\n"
      "organisations:\n";
  for (const TestOrganisation& org : organisations) {
    absl::StrAppend(&yaml, "  - oin: ", Quoted(org.oin), "\n", "    name: ", Quoted(org.name),
                    "\n", "    kind: ", org.kind, "\n");
    if (!org.gemeentecode.empty()) {
      absl::StrAppend(&yaml, "    gemeentecode: ", Quoted(org.gemeentecode), "\n");
    }
    if (!org.endpoint_address.empty()) {
      absl::StrAppend(&yaml, "    endpoint:\n", "      address: ", Quoted(org.endpoint_address),
                      "\n");
    }
    if (!org.groups.empty()) {
      absl::StrAppend(&yaml, "    groups: [", absl::StrJoin(org.groups, ", "), "]\n");
    }
  }
  return yaml;
}

std::string DefaultRegistryYaml(const std::string& brp_address,
                                const std::string& groningen_address) {
  std::vector<TestOrganisation> orgs = DevPkiOrganisations();
  if (!brp_address.empty()) SetEndpoint(&orgs, kBrpOin, brp_address);
  if (!groningen_address.empty()) SetEndpoint(&orgs, kGroningenOin, groningen_address);
  return RegistryYaml(orgs);
}

// ---- the gateway process ----

absl::StatusOr<std::unique_ptr<GatewayProcess>> GatewayProcess::Start(
    const GatewayConfigFiles& files, absl::Duration startup_timeout) {
  absl::StatusOr<std::string> bin = GatewayBinary();
  if (!bin.ok()) return bin.status();
  std::unique_ptr<GatewayProcess> gw(new GatewayProcess());
  gw->dir_ = MakeTempDir();
  WriteConfig(gw->dir_, files, "127.0.0.1:0");
  gw->pid_ = SpawnGateway(*bin, gw->dir_);

  const absl::Time give_up = absl::Now() + startup_timeout;
  const std::string port_file = gw->FilePath(kPortFile);
  while (true) {
    if (std::optional<int> port = ReadPort(port_file)) {
      gw->port_ = *port;
      return gw;
    }
    if (!gw->running()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the gateway ended (", DescribeWaitStatus(gw->wait_status_),
                       ") before serving; its stderr:\n", gw->StderrText()));
    }
    if (absl::Now() > give_up) {
      const std::string stderr_text = gw->StderrText();
      gw->Stop();
      return absl::DeadlineExceededError(
          absl::StrCat("the gateway did not serve within ", absl::FormatDuration(startup_timeout),
                       "; its stderr:\n", stderr_text));
    }
    absl::SleepFor(kPollInterval);
  }
}

GatewayProcess::~GatewayProcess() {
  Stop();
  if (!dir_.empty()) RemoveDir(dir_);
}

std::string GatewayProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string GatewayProcess::FilePath(absl::string_view name) const {
  return absl::StrCat(dir_, "/", name);
}

bool GatewayProcess::running() {
  if (pid_ <= 0 || reaped_) return false;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    wait_status_ = status;
    return false;
  }
  return r == 0;
}

bool GatewayProcess::Signal(int signal) {
  if (!running()) return false;
  return kill(pid_, signal) == 0;
}

int GatewayProcess::Stop(absl::Duration grace) {
  if (pid_ <= 0 || reaped_) return wait_status_;
  if (running()) {
    kill(pid_, SIGTERM);
    const absl::Time give_up = absl::Now() + grace;
    while (running() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
    if (!reaped_) {
      std::fprintf(stderr, "gateway_harness: gateway %d ignored SIGTERM for %s; SIGKILL\n",
                   static_cast<int>(pid_), absl::FormatDuration(grace).c_str());
      kill(pid_, SIGKILL);
      int status = 0;
      while (waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
      }
      reaped_ = true;
      wait_status_ = status;
    }
  }
  return wait_status_;
}

std::vector<std::string> GatewayProcess::DecisionLogLines() const {
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(DecisionLogText(), '\n', absl::SkipEmpty())) {
    lines.emplace_back(line);
  }
  return lines;
}

std::string GatewayProcess::DecisionLogText() const { return ReadFileIfAny(FilePath(kDecisionLog)); }

std::vector<audit::v1::DecisionRecord> GatewayProcess::DecisionRecords() const {
  std::vector<audit::v1::DecisionRecord> records;
  const std::string text = DecisionLogText();
  // Only complete lines: the gateway may be writing the next one.
  const size_t end = text.rfind('\n');
  if (end == std::string::npos) return records;
  for (absl::string_view line :
       absl::StrSplit(absl::string_view(text).substr(0, end), '\n', absl::SkipEmpty())) {
    audit::v1::DecisionRecord record;
    if (!google::protobuf::util::JsonStringToMessage(std::string(line), &record).ok()) {
      Die(absl::StrCat("decision log line is not a DecisionRecord: ", line));
    }
    records.push_back(std::move(record));
  }
  return records;
}

std::vector<audit::v1::DecisionRecord> GatewayProcess::RecordsFor(absl::string_view message_id,
                                                                  absl::string_view event) const {
  std::vector<audit::v1::DecisionRecord> out;
  for (audit::v1::DecisionRecord& r : DecisionRecords()) {
    if (r.message_id() == message_id && (event.empty() || r.event() == event)) {
      out.push_back(std::move(r));
    }
  }
  return out;
}

std::vector<audit::v1::DecisionRecord> GatewayProcess::WaitForRecords(
    absl::string_view message_id, absl::string_view event, size_t n,
    absl::Duration timeout) const {
  const absl::Time give_up = absl::Now() + timeout;
  while (true) {
    std::vector<audit::v1::DecisionRecord> records = RecordsFor(message_id, event);
    if (records.size() >= n || absl::Now() > give_up) return records;
    absl::SleepFor(kPollInterval);
  }
}

std::string GatewayProcess::StderrText() const { return ReadFileIfAny(FilePath(kStderrFile)); }

GatewayExit RunGatewayExpectingFailure(const GatewayConfigFiles& files) {
  GatewayExit result;
  absl::StatusOr<std::string> bin = GatewayBinary();
  if (!bin.ok()) Die(std::string(bin.status().message()));
  result.dir = MakeTempDir();
  const int port = FreePort();
  WriteConfig(result.dir, files, absl::StrCat("127.0.0.1:", port));
  const pid_t pid = SpawnGateway(*bin, result.dir);
  const std::string port_file = absl::StrCat(result.dir, "/", kPortFile);

  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  int status = 0;
  bool reaped = false;
  while (absl::Now() < give_up) {
    if (waitpid(pid, &status, WNOHANG) == pid) {
      reaped = true;
      break;
    }
    if (ReadPort(port_file).has_value()) {
      result.served = true;
      break;
    }
    absl::SleepFor(kPollInterval);
  }
  if (!reaped) {
    // It is serving (or hanging): check the port while it runs, then stop it.
    result.listening = SomethingListensOn(port);
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  } else {
    result.exited = true;
    result.listening = SomethingListensOn(port);
  }
  if (WIFEXITED(status)) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  result.stderr_text = ReadFileIfAny(absl::StrCat(result.dir, "/", kStderrFile));
  RemoveDir(result.dir);
  return result;
}

// ---- client side ----

std::unique_ptr<exchange::v1::Exchange::Stub> ExchangeStubFor(const std::string& address,
                                                              absl::string_view cert_stem) {
  auto credentials = tls::MutualTlsChannelCredentials(
      ReadPkiFile("ca.crt"), ReadPkiFile(absl::StrCat(cert_stem, ".crt")),
      ReadPkiFile(absl::StrCat(cert_stem, ".key")), std::string(kGatewayOin));
  return exchange::v1::Exchange::NewStub(
      grpc::CreateCustomChannel(address, credentials, TestChannelArguments()));
}

std::unique_ptr<exchange::v1::Exchange::Stub> ExchangeStubWithoutCertificate(
    const std::string& address) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadPkiFile("ca.crt");
  return exchange::v1::Exchange::NewStub(
      grpc::CreateCustomChannel(address, grpc::SslCredentials(options), TestChannelArguments()));
}

std::unique_ptr<exchange::v1::Exchange::Stub> ExchangeStubWithSslCredentials(
    const std::string& address, absl::string_view cert_stem) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = ReadPkiFile("ca.crt");
  options.pem_cert_chain = ReadPkiFile(absl::StrCat(cert_stem, ".crt"));
  options.pem_private_key = ReadPkiFile(absl::StrCat(cert_stem, ".key"));
  return exchange::v1::Exchange::NewStub(
      grpc::CreateCustomChannel(address, grpc::SslCredentials(options), TestChannelArguments()));
}

ClosedPort::ClosedPort() {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) Die(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    Die(absl::StrCat("bind: ", std::strerror(errno)));
  }
  socklen_t len = sizeof(addr);
  if (getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    Die(absl::StrCat("getsockname: ", std::strerror(errno)));
  }
  port_ = ntohs(addr.sin_port);
}

ClosedPort::~ClosedPort() {
  if (fd_ >= 0) close(fd_);
}

std::string ClosedPort::address() const { return absl::StrCat("127.0.0.1:", port_); }

bool SomethingListensOn(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Die(absl::StrCat("socket: ", std::strerror(errno)));
  sockaddr_in addr;
  std::memset(&addr, 0, sizeof(addr));
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool connected = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return connected;
}

}  // namespace knooppunt::testing
