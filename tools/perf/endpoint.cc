// knooppunt-perf-endpoint: the bevraging endpoint of the performance comparison
// (tools/perf/compare.sh). It answers every Endpoint.Answer with a gemeente.brp.v1.Persoon as
// large as the query: the largest of --reply_sizes not above the query payload's size (the
// smallest when all are above). The replies are built once at start, so the endpoint costs the
// same in every setup and the differences measured are those of what sits between client and
// endpoint.
//
// It is the project's own EndpointServer (gateway/client/endpoint_service.h): mutual TLS, and
// only the certificate with --gateway_oin may call (in the direct and proxy setups the load
// generator or the proxy presents the gateway's certificate). It serves until SIGTERM/SIGINT.
//
//   knooppunt-perf-endpoint --cert=brp.crt --key=brp.key --ca=ca.crt
//       --gateway_oin=00000099000000000001 --reply_sizes=1024,16384 --port_file=FILE
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <algorithm>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "gateway/client/endpoint_service.h"
#include "tools/perf/payload.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "host:port to serve on");
ABSL_FLAG(std::string, cert, "", "PEM certificate of the endpoint (the BRP service's)");
ABSL_FLAG(std::string, key, "", "its private key");
ABSL_FLAG(std::string, ca, "", "CA the caller's certificate chains to");
ABSL_FLAG(std::string, gateway_oin, "", "the only OIN allowed to call");
ABSL_FLAG(std::vector<std::string>, reply_sizes, {"1024"},
          "serialized sizes of the Persoon replies (comma-separated bytes)");
ABSL_FLAG(std::string, port_file, "", "write the port listened on to this file");

namespace {

class SizedReplies final : public knooppunt::client::EndpointService {
 public:
  explicit SizedReplies(std::vector<size_t> sizes) {
    std::sort(sizes.begin(), sizes.end());
    for (size_t bytes : sizes) {
      replies_.emplace_back(bytes, knooppunt::client::ReplyWith(knooppunt::perf::PersonOfSize(bytes)));
    }
  }

  absl::StatusOr<knooppunt::exchange::v1::Envelope> Answer(
      const knooppunt::client::IncomingCall&,
      const knooppunt::exchange::v1::Envelope& request) override {
    const size_t asked = request.payload().value().size();
    const auto* chosen = &replies_.front();
    for (const auto& reply : replies_) {
      if (reply.first <= asked) chosen = &reply;
    }
    return chosen->second;
  }

 private:
  std::vector<std::pair<size_t, knooppunt::exchange::v1::Envelope>> replies_;
};

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::vector<size_t> sizes;
  for (const std::string& size : absl::GetFlag(FLAGS_reply_sizes)) {
    size_t bytes = 0;
    if (!absl::SimpleAtoi(size, &bytes) || bytes == 0) {
      std::fprintf(stderr, "knooppunt-perf-endpoint: bad --reply_sizes entry '%s'\n", size.c_str());
      return 1;
    }
    sizes.push_back(bytes);
  }
  if (sizes.empty()) sizes.push_back(1024);
  SizedReplies service(std::move(sizes));
  knooppunt::client::EndpointServerOptions options;
  options.listen_address = absl::GetFlag(FLAGS_listen);
  options.cert_file = absl::GetFlag(FLAGS_cert);
  options.key_file = absl::GetFlag(FLAGS_key);
  options.ca_file = absl::GetFlag(FLAGS_ca);
  options.gateway_oin = absl::GetFlag(FLAGS_gateway_oin);
  absl::StatusOr<std::unique_ptr<knooppunt::client::EndpointServer>> server =
      knooppunt::client::EndpointServer::Start(options, &service);
  if (!server.ok()) {
    std::fprintf(stderr, "knooppunt-perf-endpoint: %s\n", server.status().ToString().c_str());
    return 1;
  }
  if (!absl::GetFlag(FLAGS_port_file).empty()) {
    std::ofstream(absl::GetFlag(FLAGS_port_file)) << (*server)->port() << "\n";
  }
  int sig = 0;
  sigwait(&signals, &sig);
  (*server)->Shutdown(absl::Seconds(2));
  return 0;
}
