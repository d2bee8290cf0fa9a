#include "tests/melding/melding_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gateway/client/envelope.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/tls/credentials.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "grpcpp/server_builder.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::trunc) << text;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string FastMeldingYaml(absl::string_view extra) {
  return absl::StrCat(
      "melding:\n"
      "  initial_backoff: 0.05s\n"
      "  max_backoff: 0.4s\n"
      "  attempt_timeout: 5s\n"
      "  visibility_timeout: 1s\n",
      extra);
}

std::map<std::string, std::string> MeldingAgreements(absl::string_view retry_window) {
  return {
      {"verhuizen.yaml",
       absl::StrCat("agreements:\n"
                    "  - id: verhuizen-naar-gemeenten\n"
                    "    message_type: gemeente.verhuizen.v1.Verhuismelding\n"
                    "    mode: melding\n"
                    "    from: [\"",
                    kVerhuizenOin,
                    "\"]\n"
                    "    to: [group:gemeenten]\n"
                    "    purposes: [BRP-bijhouding]\n"
                    "    fields:\n"
                    "      all: true\n"
                    "    retry_window: ",
                    retry_window, "\n")},
      {"brp.yaml", absl::StrCat("agreements:\n"
                                "  - id: brp-bevragen\n"
                                "    message_type: gemeente.brp.v1.PersoonVraag\n"
                                "    reply_type: gemeente.brp.v1.Persoon\n"
                                "    mode: bevraging\n"
                                "    from: [group:gemeenten]\n"
                                "    to: [\"",
                                kBrpOin,
                                "\"]\n"
                                "    purposes: [BRP-bevraging]\n"
                                "    fields:\n"
                                "      all: true\n"
                                "    reply_fields:\n"
                                "      all: true\n")},
  };
}

GatewayConfigFiles MeldingFiles(const std::string& groningen_address,
                                absl::string_view retry_window, absl::string_view melding_extra) {
  std::vector<TestOrganisation> orgs = DevPkiOrganisations();
  if (!groningen_address.empty()) SetEndpoint(&orgs, kGroningenOin, groningen_address);
  GatewayConfigFiles files;
  files.registry_yaml = RegistryYaml(orgs);
  files.agreement_files = MeldingAgreements(retry_window);
  files.extra_gateway_yaml = FastMeldingYaml(melding_extra);
  return files;
}

// ---- MeldingGateway ----

MeldingGateway::MeldingGateway(const GatewayConfigFiles& files) {
  std::string tmpl = (std::filesystem::temp_directory_path() / "melding-it.XXXXXX").string();
  dir_ = mkdtemp(tmpl.data());
  WriteFile(dir_ + "/gateway.yaml", GatewayConfigYaml(files, "127.0.0.1:0"));
  WriteFile(dir_ + "/registry.yaml", files.registry_yaml);
  std::filesystem::create_directory(dir_ + "/agreements");
  for (const auto& [name, text] : files.agreement_files) {
    WriteFile(dir_ + "/agreements/" + name, text);
  }
}

MeldingGateway::~MeldingGateway() {
  if (pid_ > 0) Kill9();
  std::filesystem::remove_all(dir_);
}

std::string MeldingGateway::address() const { return absl::StrCat("127.0.0.1:", port_); }

std::string MeldingGateway::Stderr() const { return ReadFile(dir_ + "/gateway.stderr"); }

bool MeldingGateway::Start(absl::Duration timeout) {
  // ctest sets KNOOPPUNT_GATEWAY_BIN; failing that, the binary next to the test PKI (both
  // live in the build directory).
  std::string bin_path;
  if (const char* bin = std::getenv("KNOOPPUNT_GATEWAY_BIN"); bin != nullptr) {
    bin_path = bin;
  } else {
    bin_path = (std::filesystem::path(PkiDir()).parent_path() / "gateway" / "knooppunt-gateway")
                   .string();
  }
  const char* bin = bin_path.c_str();
  const std::string port_file = dir_ + "/gateway.port";
  std::filesystem::remove(port_file);
  const std::string config_flag = absl::StrCat("--config=", dir_, "/gateway.yaml");
  const std::string port_flag = absl::StrCat("--port_file=", port_file);
  const std::string err = dir_ + "/gateway.stderr";
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    const int fd = open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) dup2(fd, 2);
    execl(bin, bin, config_flag.c_str(), port_flag.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  const absl::Time until = absl::Now() + timeout;
  while (absl::Now() < until) {
    std::string text = ReadFile(port_file);
    int port = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(text), &port) && port > 0) {
      port_ = port;
      return true;
    }
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      std::fprintf(stderr, "gateway exited at start:\n%s\n", Stderr().c_str());
      return false;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  std::fprintf(stderr, "gateway did not serve in time:\n%s\n", Stderr().c_str());
  Kill9();
  return false;
}

void MeldingGateway::Kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int status = 0;
  waitpid(pid_, &status, 0);
  pid_ = -1;
}

bool MeldingGateway::Stop() {
  if (pid_ <= 0) return true;
  kill(pid_, SIGTERM);
  const absl::Time until = absl::Now() + absl::Seconds(30);
  int status = 0;
  while (absl::Now() < until) {
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) && WEXITSTATUS(status) == 0;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  Kill9();
  return false;
}

// ---- DeliverEndpoint ----

class DeliverEndpoint::Service final : public exchange::v1::Endpoint::CallbackService {
 public:
  grpc::ServerUnaryReactor* Deliver(grpc::CallbackServerContext* ctx,
                                    const exchange::v1::Envelope* request,
                                    exchange::v1::DeliverResponse*) override {
    auto* reactor = ctx->DefaultReactor();
    Delivery d;
    d.envelope = *request;
    absl::StatusOr<std::string> oin = authenticator_.Authenticate(*ctx->auth_context());
    d.caller_oin = oin.ok() ? *oin : "";
    auto it = ctx->client_metadata().find("knooppunt-agreement-id");
    if (it != ctx->client_metadata().end()) d.agreement_id.assign(it->second.data(), it->second.size());
    bool fail;
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      fail = fail_every_ > 0 && calls_ % fail_every_ == 0;
      if (!fail) delivered_.push_back(std::move(d));
    }
    reactor->Finish(fail ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "test endpoint says no")
                         : grpc::Status::OK);
    return reactor;
  }

  mutable absl::Mutex mu_;
  int fail_every_ ABSL_GUARDED_BY(mu_) = 0;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<Delivery> delivered_ ABSL_GUARDED_BY(mu_);
  identity::PeerAuthenticator authenticator_;
};

std::unique_ptr<DeliverEndpoint> DeliverEndpoint::Start(absl::string_view cert_stem, int port) {
  auto credentials = tls::MutualTlsServerCredentials(
      {PkiPath(absl::StrCat(cert_stem, ".crt")), PkiPath(absl::StrCat(cert_stem, ".key")),
       PkiPath("ca.crt"), "", absl::Seconds(60)});
  if (!credentials.ok()) return nullptr;
  std::unique_ptr<DeliverEndpoint> endpoint(new DeliverEndpoint());
  endpoint->service_ = std::make_unique<Service>();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(absl::StrCat("127.0.0.1:", port), *credentials, &endpoint->port_);
  builder.RegisterService(endpoint->service_.get());
  endpoint->server_ = builder.BuildAndStart();
  if (endpoint->server_ == nullptr || endpoint->port_ == 0) return nullptr;
  return endpoint;
}

DeliverEndpoint::~DeliverEndpoint() {
  if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

std::string DeliverEndpoint::address() const { return absl::StrCat("127.0.0.1:", port_); }

void DeliverEndpoint::FailEvery(int n) {
  absl::MutexLock lock(&service_->mu_);
  service_->fail_every_ = n;
}

std::vector<DeliverEndpoint::Delivery> DeliverEndpoint::delivered() const {
  absl::MutexLock lock(&service_->mu_);
  return service_->delivered_;
}

int DeliverEndpoint::calls() const {
  absl::MutexLock lock(&service_->mu_);
  return service_->calls_;
}

bool DeliverEndpoint::WaitForIds(const std::vector<std::string>& ids,
                                 absl::Duration timeout) const {
  const absl::Time until = absl::Now() + timeout;
  for (;;) {
    std::set<std::string> seen;
    for (const Delivery& d : delivered()) seen.insert(d.envelope.message_id());
    bool all = true;
    for (const std::string& id : ids) all = all && seen.count(id) > 0;
    if (all) return true;
    if (absl::Now() >= until) return false;
    absl::SleepFor(absl::Milliseconds(50));
  }
}

// ---- client helpers ----

exchange::v1::Envelope Verhuismelding(absl::string_view recipient, absl::string_view correlation_id,
                                      absl::string_view toelichting) {
  gemeente::verhuizen::v1::Verhuismelding melding;
  melding.set_bsn("999993653");
  melding.mutable_nieuw_adres()->set_straat("Grote Markt");
  melding.mutable_nieuw_adres()->set_huisnummer(1);
  melding.mutable_nieuw_adres()->set_woonplaats("Groningen");
  melding.mutable_nieuw_adres()->set_gemeentecode("0014");
  melding.set_toelichting(std::string(toelichting));
  exchange::v1::Envelope e = client::NewEnvelope(std::string(kVerhuizenOin), std::string(recipient),
                                                 "BRP-bijhouding", melding);
  e.set_correlation_id(std::string(correlation_id));
  return e;
}

grpc::Status SendMelding(exchange::v1::Exchange::Stub& stub, const exchange::v1::Envelope& e,
                         exchange::v1::Receipt* receipt, absl::Duration deadline) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  return stub.Send(&ctx, e, receipt);
}

absl::StatusOr<exchange::v1::DeliveryStatus> GetStatus(exchange::v1::Exchange::Stub& stub,
                                                       absl::string_view message_id,
                                                       absl::string_view sender) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  exchange::v1::StatusRequest request;
  request.set_message_id(std::string(message_id));
  request.set_sender(std::string(sender));
  exchange::v1::DeliveryStatus status;
  grpc::Status s = stub.GetStatus(&ctx, request, &status);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return status;
}

absl::StatusOr<exchange::v1::DeliveryStatus> WaitForState(exchange::v1::Exchange::Stub& stub,
                                                          absl::string_view message_id,
                                                          exchange::v1::DeliveryState state,
                                                          absl::Duration timeout) {
  const absl::Time until = absl::Now() + timeout;
  absl::StatusOr<exchange::v1::DeliveryStatus> last;
  for (;;) {
    last = GetStatus(stub, message_id);
    if (last.ok() && last->state() == state) return last;
    if (absl::Now() >= until) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  if (!last.ok()) return last.status();
  return absl::DeadlineExceededError(absl::StrCat("state stayed ", last->state(), ": ",
                                                  last->ShortDebugString()));
}

}  // namespace knooppunt::testing
