// Runs the real knooppunt-gateway binary ($KNOOPPUNT_GATEWAY_BIN) for integration tests, on
// 127.0.0.1 with real mutual TLS from the test PKI ($KNOOPPUNT_TEST_PKI_DIR).
//
// GatewayProcess writes gateway.yaml, registry.yaml and the agreement files a test gives it
// into a fresh temporary directory, starts the gateway with listen port 0 and --port_file,
// and waits (bounded) until it serves. It exposes the port, the decision log and the
// gateway's standard error; its destructor stops the gateway (SIGTERM, then SIGKILL after a
// bounded wait) and removes the directory. The child gets SIGKILL if the test process dies,
// so no gateway outlives its test.
//
// RunGatewayExpectingFailure() starts the gateway on a configuration that should be
// rejected and reports how it ended.
//
// Also here: the client side of the tests — stubs to the gateway with a party's certificate
// (or with none) — and a registry builder with the dev PKI's organisations.
#ifndef KNOOPPUNT_TESTS_TESTING_GATEWAY_HARNESS_H_
#define KNOOPPUNT_TESTS_TESTING_GATEWAY_HARNESS_H_

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "knooppunt/audit/v1/decision_record.pb.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::testing {

// One organisation in a test registry.
struct TestOrganisation {
  std::string oin;
  std::string name;
  std::string kind;  // "municipality", "register", "collective_service", ...
  std::string gemeentecode;
  std::string endpoint_address;  // empty: no endpoint
  std::vector<std::string> groups;
};

// The organisations of the dev PKI (certs/README.md), none with an endpoint yet, in the groups
// "gemeenten" (every municipality), "brp-afnemers" (Groningen) and
// "landelijke-voorzieningen" (Verhuizen).
std::vector<TestOrganisation> DevPkiOrganisations();

// Sets the endpoint address of the organisation with `oin`; aborts when it is not there.
void SetEndpoint(std::vector<TestOrganisation>* organisations, absl::string_view oin,
                 std::string address);

// registry.yaml text declaring the groups above and `organisations`.
std::string RegistryYaml(const std::vector<TestOrganisation>& organisations);

// The usual case: the dev PKI's organisations with BRP's and Groningen's endpoints at the
// given addresses (empty: no endpoint).
std::string DefaultRegistryYaml(const std::string& brp_address,
                                const std::string& groningen_address = "");

// Everything a test gateway is configured with.
struct GatewayConfigFiles {
  std::string instance_id;  // empty: "knooppunt-it"
  std::string registry_yaml;
  // File name (inside the agreements/ directory) → contents.
  std::map<std::string, std::string> agreement_files;
  uint32_t max_payload_bytes = 0;  // 0: the gateway's default
  std::string default_deadline;    // e.g. "5s"; empty: the gateway's default
  std::string max_deadline;        // empty: the gateway's default
  std::string handshake_timeout;   // e.g. "1s"; empty: the gateway's default
  uint32_t max_concurrent_streams = 0;  // 0: the gateway's default
  uint32_t max_connections_per_peer = 0;  // 0: the gateway's default (off)
  bool check_crl = false;          // tls.crl_directory = the PKI's crl/
  // Overrides of the tls: section (empty: the test PKI's gateway.crt/.key, ca.crt, and crl/
  // when check_crl).
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string client_ca_file;
  std::string crl_directory;
  // Appended verbatim to the generated gateway.yaml (e.g. a misspelt key).
  std::string extra_gateway_yaml;
};

// The gateway.yaml text the harness writes for `files` (paths to the test PKI, the registry
// and agreements next to it, the decision log in the same directory).
std::string GatewayConfigYaml(const GatewayConfigFiles& files, absl::string_view listen);

// How a gateway run that was expected to fail ended.
struct GatewayExit {
  bool exited = false;      // it exited by itself (not killed by the harness)
  int exit_code = -1;       // when exited normally
  int signal = 0;           // when killed by a signal
  bool served = false;      // it wrote its port file, i.e. it started serving
  bool listening = false;   // something accepted a connection on its configured port after it ended
  std::string stderr_text;  // everything it wrote to standard error
  std::string dir;          // where its files were (already removed)
};

// Starts the gateway on `files` with a fixed free port, waits (bounded) for it to exit, and
// reports how it ended. If it starts serving instead, it is stopped and `served` is set.
GatewayExit RunGatewayExpectingFailure(const GatewayConfigFiles& files);

class GatewayProcess {
 public:
  // Writes the files and starts the gateway; fails (with its stderr) when it does not serve
  // within `startup_timeout`.
  static absl::StatusOr<std::unique_ptr<GatewayProcess>> Start(
      const GatewayConfigFiles& files, absl::Duration startup_timeout = absl::Seconds(20));
  ~GatewayProcess();
  GatewayProcess(const GatewayProcess&) = delete;
  GatewayProcess& operator=(const GatewayProcess&) = delete;

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"
  const std::string& dir() const { return dir_; }
  std::string FilePath(absl::string_view name) const;  // dir()/name

  // Whether the process is still running (reaps it if it has ended).
  bool running();
  // Its process id (e.g. to watch its threads); -1 before it was started.
  pid_t pid() const { return pid_; }
  // Sends `signal` (e.g. SIGHUP to reload the policy) unless the process has ended; returns
  // whether it was sent.
  bool Signal(int signal);

  // The decision log: its raw JSON lines, and the lines parsed (a line that does not parse
  // aborts the test process with the line).
  std::vector<std::string> DecisionLogLines() const;
  std::vector<audit::v1::DecisionRecord> DecisionRecords() const;
  // The records with this message_id, in log order; with `event` non-empty only those.
  std::vector<audit::v1::DecisionRecord> RecordsFor(absl::string_view message_id,
                                                    absl::string_view event = "") const;
  // Polls (bounded) until at least `n` records for message_id/event exist.
  std::vector<audit::v1::DecisionRecord> WaitForRecords(absl::string_view message_id,
                                                        absl::string_view event, size_t n,
                                                        absl::Duration timeout) const;
  // The whole decision log file as text.
  std::string DecisionLogText() const;

  // Everything the gateway wrote to standard error so far.
  std::string StderrText() const;

  // SIGTERM, then waits (bounded) for the exit, SIGKILL after `grace`. Returns the wait
  // status (as from waitpid). Idempotent.
  int Stop(absl::Duration grace = absl::Seconds(5));

 private:
  GatewayProcess() = default;

  std::string dir_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int wait_status_ = 0;
  int port_ = 0;
};

// ---- client side ----

// A stub to the gateway at `address` presenting PkiPath("<cert_stem>.crt"/".key"), verifying
// the gateway against the dev CA and the gateway's OIN. Each stub has its own channel and
// connection.
std::unique_ptr<exchange::v1::Exchange::Stub> ExchangeStubFor(const std::string& address,
                                                              absl::string_view cert_stem);

// A stub that presents no client certificate (plain TLS, server verified against the dev CA).
std::unique_ptr<exchange::v1::Exchange::Stub> ExchangeStubWithoutCertificate(
    const std::string& address);

// The same plain-TLS path but with a client certificate: the control for the above.
std::unique_ptr<exchange::v1::Exchange::Stub> ExchangeStubWithSslCredentials(
    const std::string& address, absl::string_view cert_stem);

// A TCP port on 127.0.0.1 that nothing listens on for as long as the object lives: the
// socket is bound (so nobody else gets the port) but never listens, so a connection attempt
// is refused.
class ClosedPort {
 public:
  ClosedPort();
  ~ClosedPort();
  ClosedPort(const ClosedPort&) = delete;
  ClosedPort& operator=(const ClosedPort&) = delete;
  int port() const { return port_; }
  std::string address() const;

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Whether a TCP connection to 127.0.0.1:port is accepted.
bool SomethingListensOn(int port);

}  // namespace knooppunt::testing

#endif  // KNOOPPUNT_TESTS_TESTING_GATEWAY_HARNESS_H_
