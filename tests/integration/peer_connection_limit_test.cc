// limits.max_connections_per_peer against the real gateway (bad-input catalogue: a client that
// opens many connections; gateway/identity/peer_connection_limit.h). All test clients are
// 127.0.0.1, so they are one peer: an mTLS client holds one connection and has made a call;
// then 10 raw TCP connections that never start a TLS handshake arrive. With a limit of 4 the
// newest 7 are shut down by the gateway (the handshake timeout is far away, so that is not
// what closes them), the mTLS client's established connection keeps serving, and once the
// flood's connections are gone a new client connects and is served.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gateway/tls/credentials.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

constexpr uint32_t kLimit = 4;
constexpr int kFlood = 10;

constexpr const char* kAgreement = R"yaml(
agreements:
  - id: brp-bevragen-afnemers
    description: BRP afnemers query the central BRP person service.
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields:
      all: true
    reply_fields:
      all: true
    from: [group:brp-afnemers]
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging]
    valid_from: 2020-01-01
)yaml";

int ConnectTcp(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Whether the gateway ended the connection (EOF or reset) — without waiting.
bool ClosedByPeer(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 0) != 1) return false;
  char buf[256];
  return recv(fd, buf, sizeof(buf), MSG_DONTWAIT) <= 0;
}

// The sum of "closed" over the gateway's peer_connection_limit_closed log lines.
int ClosedByLimit(const std::string& stderr_text) {
  int total = 0;
  for (absl::string_view line : absl::StrSplit(stderr_text, '\n')) {
    google::protobuf::Struct log;
    if (line.find("peer_connection_limit_closed") == absl::string_view::npos ||
        !google::protobuf::util::JsonStringToMessage(std::string(line), &log).ok()) {
      continue;
    }
    auto it = log.fields().find("closed");
    int n = 0;
    if (it != log.fields().end() && absl::SimpleAtoi(it->second.string_value(), &n)) total += n;
  }
  return total;
}

// The knooppunt_peer_connections_limited_total sample from the gateway's metrics port (GET
// /metrics over plain HTTP/1.0); -1 when it cannot be read.
double LimitedCounter(int metrics_port) {
  const int fd = ConnectTcp(metrics_port);
  if (fd < 0) return -1;
  std::string text;
  const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  if (send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[8192];
    for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) text.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    double value = 0;
    if (absl::ConsumePrefix(&line, "knooppunt_peer_connections_limited_total ") &&
        absl::SimpleAtod(line, &value)) {
      return value;
    }
  }
  return -1;
}

// The metrics port, from the gateway's "metrics_listening" log line (bounded wait).
int MetricsPort(GatewayProcess& gw) {
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < until) {
    for (absl::string_view line : absl::StrSplit(gw.StderrText(), '\n')) {
      google::protobuf::Struct log;
      int port = 0;
      if (line.find("\"metrics_listening\"") != absl::string_view::npos &&
          google::protobuf::util::JsonStringToMessage(std::string(line), &log).ok() &&
          log.fields().count("port") > 0 &&
          absl::SimpleAtoi(log.fields().at("port").string_value(), &port)) {
        return port;
      }
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return 0;
}

// `wait_for_ready`: the call waits (within its deadline) for a connection, through reconnects.
grpc::Status Ask(exchange::v1::Exchange::Stub& stub, bool wait_for_ready = false) {
  exchange::v1::Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  exchange::v1::Envelope reply;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  context.set_wait_for_ready(wait_for_ready);
  return stub.Request(&context, request, &reply);
}

TEST(PeerConnectionLimitIntegrationTest, ConnectionsOverTheLimitPerPeerAreClosedOlderOnesServe) {
  absl::StatusOr<std::unique_ptr<TestEndpoint>> brp = TestEndpoint::Start("brp");
  ASSERT_TRUE(brp.ok()) << brp.status();
  GatewayConfigFiles files;
  files.registry_yaml = DefaultRegistryYaml((*brp)->address());
  files.agreement_files["brp.yaml"] = kAgreement;
  files.max_connections_per_peer = kLimit;
  files.handshake_timeout = "300s";  // only the connection limit closes the silent ones
  files.extra_gateway_yaml = "metrics:\n  listen: 127.0.0.1:0\n";  // a port of its own
  absl::StatusOr<std::unique_ptr<GatewayProcess>> started = GatewayProcess::Start(files);
  ASSERT_TRUE(started.ok()) << started.status();
  GatewayProcess& gw = **started;

  // The established client: one connection, one call served.
  auto creds = tls::MutualTlsChannelCredentials(ReadPkiFile("ca.crt"), ReadPkiFile("groningen.crt"),
                                                ReadPkiFile("groningen.key"),
                                                std::string(kGatewayOin));
  std::shared_ptr<grpc::Channel> channel = grpc::CreateChannel(gw.address(), creds);
  auto stub = exchange::v1::Exchange::NewStub(channel);
  ASSERT_TRUE(Ask(*stub).ok());
  // "Older" is in the order the gateway's scan (every 250 ms) first sees a connection; give
  // it several scans to see this one before the flood arrives.
  absl::SleepFor(absl::Seconds(2));

  std::vector<int> flood;
  for (int i = 0; i < kFlood; ++i) {
    const int fd = ConnectTcp(gw.port());
    ASSERT_GE(fd, 0);
    flood.push_back(fd);
  }
  // 11 connections from 127.0.0.1, 4 allowed: the 7 newest (all of the flood but 3) end.
  const int expected_closed = kFlood - static_cast<int>(kLimit - 1);
  std::vector<bool> closed(flood.size(), false);
  int closed_count = 0;
  const absl::Time until = absl::Now() + absl::Seconds(30);
  while (closed_count < expected_closed && absl::Now() < until) {
    for (size_t i = 0; i < flood.size(); ++i) {
      if (!closed[i] && ClosedByPeer(flood[i])) {
        closed[i] = true;
        ++closed_count;
      }
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(closed_count, expected_closed) << gw.StderrText();

  // The established connection was kept and serves: the gateway shut down 7 connections in
  // all (its log line follows the shutdowns; bounded wait), all of them the flood's, and the
  // next call goes over the same channel.
  const absl::Time log_until = absl::Now() + absl::Seconds(10);
  while (ClosedByLimit(gw.StderrText()) < expected_closed && absl::Now() < log_until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(ClosedByLimit(gw.StderrText()), expected_closed) << gw.StderrText();
  const int metrics_port = MetricsPort(gw);
  ASSERT_GT(metrics_port, 0) << gw.StderrText();
  while (LimitedCounter(metrics_port) < expected_closed && absl::Now() < log_until) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(LimitedCounter(metrics_port), expected_closed);
  EXPECT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  EXPECT_TRUE(Ask(*stub).ok());

  // The flood goes away; a new client gets a connection and is served (waiting for ready:
  // until the gateway has closed the flood's remaining sockets, a new connection may still
  // count as one too many and be shut down, and the client reconnects).
  for (int fd : flood) close(fd);
  auto fresh = ExchangeStubFor(gw.address(), "groningen");
  EXPECT_TRUE(Ask(*fresh, /*wait_for_ready=*/true).ok());
  EXPECT_TRUE(Ask(*stub, /*wait_for_ready=*/true).ok());
  EXPECT_TRUE(gw.running());
  EXPECT_EQ(gw.Stop(), 0);
}

}  // namespace
}  // namespace knooppunt::testing
