// Operator tooling end to end: the real gateway binary (tests/testing/gateway_harness.h) with
// real mutual TLS. grpc.health.v1 and server reflection on the mTLS port; Prometheus metrics
// scraped over plain HTTP from the metrics port. Every wait is a bounded poll (a loaded
// 2-core machine may be slow), never a fixed sleep that the assertion depends on.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gateway/client/envelope.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/observability/certificate_watch.h"
#include "gateway/observability/peer_certificates.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

std::shared_ptr<grpc::Channel> MtlsChannel(const std::string& address, absl::string_view stem) {
  auto credentials = tls::MutualTlsChannelCredentials(
      ReadPkiFile("ca.crt"), ReadPkiFile(absl::StrCat(stem, ".crt")),
      ReadPkiFile(absl::StrCat(stem, ".key")), std::string(kGatewayOin));
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, credentials, args);
}

GatewayConfigFiles Files() {
  GatewayConfigFiles files;
  files.registry_yaml = DefaultRegistryYaml("");
  files.agreement_files["verhuizen.yaml"] = absl::StrCat(
      "agreements:\n"
      "  - id: verhuizen-naar-gemeenten\n"
      "    message_type: gemeente.verhuizen.v1.Verhuismelding\n"
      "    mode: melding\n"
      "    from: [\"", kVerhuizenOin, "\"]\n"
      "    to: [group:gemeenten]\n"
      "    purposes: [BRP-bijhouding]\n"
      "    fields:\n"
      "      all: true\n"
      "    retry_window: 5d\n");
  files.extra_gateway_yaml = "metrics:\n  listen: 127.0.0.1:0\n";
  return files;
}

HealthCheckResponse::ServingStatus Check(grpc::health::v1::Health::Stub& stub,
                                         const std::string& service, grpc::Status* status) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  *status = stub.Check(&context, request, &response);
  return response.status();
}

// Polls (bounded) until the health status of `service` is `want`.
bool WaitForHealth(grpc::health::v1::Health::Stub& stub, const std::string& service,
                   HealthCheckResponse::ServingStatus want, std::string* last) {
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    grpc::Status status;
    const auto got = Check(stub, service, &status);
    *last = absl::StrCat(status.error_code(), " ", status.error_message(), " status=", got);
    if (status.ok() && got == want) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

// GET /metrics over a plain TCP socket (HTTP/1.0, the server closes after the reply).
std::string ScrapeMetrics(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string out;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    const std::string request = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
      char buf[8192];
      for (ssize_t n; (n = recv(fd, buf, sizeof(buf), 0)) > 0;) out.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  return out;
}

// The value of the first sample line of `name` whose labels contain every one of `labels`.
std::optional<double> Sample(const std::string& text, absl::string_view name,
                             const std::vector<std::string>& labels) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(line, absl::StrCat(name, "{")) && !absl::StartsWith(line, absl::StrCat(name, " "))) continue;
    bool all = true;
    for (const std::string& l : labels) all = all && absl::StrContains(line, l);
    if (!all) continue;
    const size_t space = line.rfind(' ');
    double value = 0;
    if (space != absl::string_view::npos && absl::SimpleAtod(line.substr(space + 1), &value)) return value;
  }
  return std::nullopt;
}

// The metrics port, from the gateway's "metrics_listening" log line.
int MetricsPort(GatewayProcess& gw) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (absl::Now() < deadline) {
    for (absl::string_view line : absl::StrSplit(gw.StderrText(), '\n')) {
      if (!absl::StrContains(line, "\"metrics_listening\"")) continue;
      const size_t at = line.find("\"port\":\"");
      if (at == absl::string_view::npos) continue;
      absl::string_view rest = line.substr(at + 8);
      int port = 0;
      if (absl::SimpleAtoi(rest.substr(0, rest.find('"')), &port)) return port;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return 0;
}

exchange::v1::Envelope Verhuismelding(absl::string_view sender) {
  gemeente::verhuizen::v1::Verhuismelding melding;
  melding.set_bsn("999993653");
  melding.mutable_nieuw_adres()->set_gemeentecode("0014");
  return client::NewEnvelope(std::string(sender), "gemeente:0014", "BRP-bijhouding", melding);
}

grpc::Status Send(const std::string& address, absl::string_view stem, absl::string_view sender) {
  auto stub = ExchangeStubFor(address, stem);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  exchange::v1::Receipt receipt;
  return stub->Send(&context, Verhuismelding(sender), &receipt);
}

TEST(Observability, HealthIsServingOverMtlsAndReflectionListsTheServices) {
  auto gw = GatewayProcess::Start(Files());
  ASSERT_TRUE(gw.ok()) << gw.status();
  auto channel = MtlsChannel((*gw)->address(), "groningen");
  auto health = grpc::health::v1::Health::NewStub(channel);
  std::string last;
  EXPECT_TRUE(WaitForHealth(*health, "", HealthCheckResponse::SERVING, &last)) << last;
  EXPECT_TRUE(WaitForHealth(*health, "knooppunt.exchange.v1.Exchange",
                            HealthCheckResponse::SERVING, &last))
      << last;

  // Reflection (what grpcurl uses) lists the gateway's services.
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  auto stream = reflection->ServerReflectionInfo(&context);
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::set<std::string> services;
  for (const auto& s : response.list_services_response().service()) services.insert(s.name());
  while (stream->Read(&response)) {
  }
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_TRUE(services.count("knooppunt.exchange.v1.Exchange")) << services.size();
  EXPECT_TRUE(services.count("grpc.health.v1.Health"));

  // Without a client certificate there is no health answer either: the port is mTLS only.
  {
    grpc::SslCredentialsOptions options;
    options.pem_root_certs = ReadPkiFile("ca.crt");
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto plain = grpc::health::v1::Health::NewStub(
        grpc::CreateCustomChannel((*gw)->address(), grpc::SslCredentials(options), args));
    grpc::Status status;
    Check(*plain, "", &status);
    EXPECT_FALSE(status.ok());
  }

  // The melding store goes away (a deleted file cannot be made durable again): NOT_SERVING
  // within the checker's interval, on the connection already open.
  ASSERT_TRUE(std::filesystem::remove((*gw)->FilePath("meldingen.db")));
  EXPECT_TRUE(WaitForHealth(*health, "", HealthCheckResponse::NOT_SERVING, &last)) << last;
  EXPECT_TRUE(absl::StrContains((*gw)->StderrText(), "melding_store")) << (*gw)->StderrText();
}

TEST(Observability, MetricsCountRequestsReloadsAndCertificateExpiry) {
  auto gw = GatewayProcess::Start(Files());
  ASSERT_TRUE(gw.ok()) << gw.status();
  const int port = MetricsPort(**gw);
  ASSERT_NE(port, 0) << (*gw)->StderrText();

  // One allowed melding and one denied (Zaanstad has no agreement).
  grpc::Status allowed = Send((*gw)->address(), "verhuizen", kVerhuizenOin);
  ASSERT_TRUE(allowed.ok()) << allowed.error_message();
  grpc::Status denied = Send((*gw)->address(), "zaanstad", kZaanstadOin);
  ASSERT_EQ(denied.error_code(), grpc::StatusCode::PERMISSION_DENIED) << denied.error_message();
  ASSERT_TRUE((*gw)->Signal(SIGHUP));

  const std::string type = "message_type=\"gemeente.verhuizen.v1.Verhuismelding\"";
  std::string text;
  std::optional<double> ok_count, denied_count, reloads;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    text = ScrapeMetrics(port);
    ok_count = Sample(text, "knooppunt_exchange_requests_total",
                      {type, "decision=\"allowed\"", "code=\"0\"", "operation=\"Send\""});
    denied_count = Sample(text, "knooppunt_exchange_requests_total",
                          {type, "decision=\"denied\"", "code=\"7\"", "operation=\"Send\""});
    reloads = Sample(text, "knooppunt_config_reloads_total", {"result=\"succeeded\""});
    if (ok_count && denied_count && reloads && *reloads >= 1) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_TRUE(ok_count.has_value()) << text;
  EXPECT_EQ(*ok_count, 1);
  ASSERT_TRUE(denied_count.has_value()) << text;
  EXPECT_EQ(*denied_count, 1);
  ASSERT_TRUE(reloads.has_value()) << text;
  EXPECT_GE(*reloads, 1);
  EXPECT_EQ(Sample(text, "knooppunt_config_reloads_total", {"result=\"failed\""}), 0.0);
  EXPECT_TRUE(Sample(text, "knooppunt_exchange_latency_seconds_count",
                     {"operation=\"Send\"", "decision=\"allowed\""})
                  .value_or(0) >= 1)
      << text;

  // The gateway's own certificate: seconds until it expires (the dev PKI issues for years).
  std::optional<double> expiry = Sample(text, "knooppunt_certificate_expiry_seconds",
                                        {"role=\"server\"", "gateway.crt"});
  ASSERT_TRUE(expiry.has_value()) << text;
  EXPECT_GT(*expiry, 24 * 3600.0);
  EXPECT_EQ(Sample(text, "knooppunt_health_serving", {}), 1.0) << text;
  // The accepted melding waits in Groningen's inbox (no endpoint, nobody pulls it).
  const absl::Time queue_deadline = absl::Now() + absl::Seconds(30);
  while (Sample(text, "knooppunt_melding_queue_messages", {}).value_or(0) < 1 &&
         absl::Now() < queue_deadline) {
    absl::SleepFor(absl::Milliseconds(100));
    text = ScrapeMetrics(port);
  }
  EXPECT_EQ(Sample(text, "knooppunt_melding_queue_messages", {}), 1.0) << text;
  // It has waited since it was accepted, a moment ago.
  const std::optional<double> age = Sample(text, "knooppunt_melding_queue_oldest_age_seconds", {});
  ASSERT_TRUE(age.has_value()) << text;
  EXPECT_GE(*age, 0.0);
  EXPECT_LT(*age, 300.0);
}

// Polls (bounded) the metrics until `done(text)` holds; returns the last scrape.
template <typename Done>
std::string ScrapeUntil(int port, Done done) {
  std::string text;
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (absl::Now() < deadline) {
    text = ScrapeMetrics(port);
    if (done(text)) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return text;
}

TEST(Observability, MetricsShowPeerCertificateExpiryAndAuditWriteLatency) {
  absl::StatusOr<std::unique_ptr<TestEndpoint>> brp = TestEndpoint::Start("brp");
  ASSERT_TRUE(brp.ok()) << brp.status();
  const std::string keys = std::filesystem::temp_directory_path() /
                           absl::StrCat("kp-obs-keys-", getpid());
  std::filesystem::create_directories(keys);
  ASSERT_TRUE(audit::GenerateKeys(keys + "/hmac.key", keys + "/sign.key", keys + "/sign.pub").ok());
  GatewayConfigFiles files;
  files.registry_yaml = DefaultRegistryYaml((*brp)->address());
  files.agreement_files["brp.yaml"] = absl::StrCat(
      "agreements:\n"
      "  - id: brp-bevragen-afnemers\n"
      "    message_type: gemeente.brp.v1.PersoonVraag\n"
      "    reply_type: gemeente.brp.v1.Persoon\n"
      "    mode: bevraging\n"
      "    fields: {all: true}\n"
      "    reply_fields: {all: true}\n"
      "    from: [group:brp-afnemers]\n"
      "    to: [\"", kBrpOin, "\"]\n"
      "    purposes: [BRP-bevraging]\n");
  files.extra_gateway_yaml = absl::StrCat("metrics:\n  listen: 127.0.0.1:0\n", "audit:\n  db_path: ",
                                          keys, "/audit.db\n  hmac_key_file: ", keys,
                                          "/hmac.key\n  signing_key_file: ", keys, "/sign.key\n");
  auto gw = GatewayProcess::Start(files);
  ASSERT_TRUE(gw.ok()) << gw.status();
  const int port = MetricsPort(**gw);
  ASSERT_NE(port, 0) << (*gw)->StderrText();

  // One bevraging: Groningen's certificate is seen at authentication, BRP's at the forward
  // leg's handshake, and the decision is written to the audit log.
  {
    auto stub = ExchangeStubFor((*gw)->address(), "groningen");
    gemeente::brp::v1::PersoonVraag q;
    q.set_bsn("999993653");
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    exchange::v1::Envelope reply;
    grpc::Status s = stub->Request(
        &context,
        client::NewEnvelope(std::string(kGroningenOin), std::string(kBrpOin), "BRP-bevraging", q),
        &reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const std::string organisation = absl::StrCat("oin=\"", kGroningenOin, "\"");
  const std::string endpoint = absl::StrCat("oin=\"", kBrpOin, "\"");
  const std::string text = ScrapeUntil(port, [&](const std::string& t) {
    return Sample(t, "knooppunt_peer_certificate_expiry_seconds",
                  {"role=\"organisation\"", organisation})
               .has_value() &&
           Sample(t, "knooppunt_peer_certificate_expiry_seconds", {"role=\"endpoint\"", endpoint})
               .has_value() &&
           Sample(t, "knooppunt_audit_write_seconds_count", {"result=\"ok\""}).value_or(0) >= 1;
  });
  std::error_code ec;
  std::filesystem::remove_all(keys, ec);

  // Seconds until the certificates the parties presented expire (as the files say, give or
  // take the time between the gauge's refresh and now).
  const auto seconds_left = [](absl::string_view stem) {
    absl::StatusOr<absl::Time> t =
        observability::EarliestCertificateExpiry(PkiPath(absl::StrCat(stem, ".crt")));
    return t.ok() ? absl::ToDoubleSeconds(*t - absl::Now()) : -1.0;
  };
  std::optional<double> org = Sample(text, "knooppunt_peer_certificate_expiry_seconds",
                                     {"role=\"organisation\"", organisation});
  ASSERT_TRUE(org.has_value()) << text;
  EXPECT_GT(*org, 24 * 3600.0);
  EXPECT_NEAR(*org, seconds_left("groningen"), 120.0);
  std::optional<double> ep = Sample(text, "knooppunt_peer_certificate_expiry_seconds",
                                    {"role=\"endpoint\"", endpoint});
  ASSERT_TRUE(ep.has_value()) << text;
  EXPECT_GT(*ep, 24 * 3600.0);
  EXPECT_NEAR(*ep, seconds_left("brp"), 120.0);
  // Audit write latency: at least the decision record, durable, in a sane time.
  const double count = Sample(text, "knooppunt_audit_write_seconds_count", {"result=\"ok\""}).value_or(0);
  const double sum = Sample(text, "knooppunt_audit_write_seconds_sum", {"result=\"ok\""}).value_or(-1);
  EXPECT_GE(count, 1) << text;
  EXPECT_GT(sum, 0) << text;
  EXPECT_LT(sum / std::max(count, 1.0), 10.0) << text;
  EXPECT_EQ(Sample(text, "knooppunt_audit_write_seconds_count", {"result=\"failed\""}), 0.0) << text;
}

TEST(PeerCertificateExpiry, KeepsTheLatestCertificatePerPeerAndWarnsOncePerCertificate) {
  auto metrics = observability::Metrics::Start("127.0.0.1:0");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  const absl::StatusOr<absl::Time> current = observability::EarliestCertificateExpiry(PkiPath("groningen.crt"));
  const absl::StatusOr<absl::Time> expired = observability::EarliestCertificateExpiry(PkiPath("expired.crt"));
  ASSERT_TRUE(current.ok() && expired.ok());
  ASSERT_LT(*expired, *current);

  // A window longer than any dev certificate lives: the certificate in use is within it.
  observability::PeerCertificateExpiry peers(absl::Hours(24 * 365 * 200), metrics->get());
  const std::string oin(kGroningenOin);
  peers.OnPeerCertificate("organisation", oin, ReadPkiFile("expired.crt"));
  EXPECT_EQ(peers.NotAfter("organisation", oin), *expired);
  // Renewed: the later certificate counts, and an older one seen again does not undo that.
  peers.OnPeerCertificate("organisation", oin, ReadPkiFile("groningen.crt"));
  peers.OnPeerCertificate("organisation", oin, ReadPkiFile("expired.crt"));
  EXPECT_EQ(peers.NotAfter("organisation", oin), *current);
  EXPECT_EQ(peers.NotAfter("endpoint", oin), absl::InfinitePast());
  peers.OnPeerCertificate("organisation", oin, "not a certificate");  // ignored
  EXPECT_EQ(peers.NotAfter("organisation", oin), *current);

  const absl::Time now = absl::Now();
  ::testing::internal::CaptureStderr();
  peers.Refresh(now);
  peers.Refresh(now + absl::Seconds(1));  // the same certificate: not logged again
  peers.Refresh(*current + absl::Seconds(1));
  const std::string log = ::testing::internal::GetCapturedStderr();
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(log, '\n', absl::SkipEmpty())) {
    if (absl::StrContains(line, "peer_certificate_")) lines.emplace_back(line);
  }
  ASSERT_EQ(lines.size(), 2u) << log;
  EXPECT_TRUE(absl::StrContains(lines[0], "\"peer_certificate_expiring\"")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[0], "\"warning\"")) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[0], oin)) << lines[0];
  EXPECT_TRUE(absl::StrContains(lines[1], "\"peer_certificate_expired\"")) << lines[1];

  // The gauge, as scraped: negative now that (in the last refresh) it has expired.
  const std::string text = ScrapeMetrics((*metrics)->port());
  std::optional<double> gauge = Sample(text, "knooppunt_peer_certificate_expiry_seconds",
                                       {"role=\"organisation\"", absl::StrCat("oin=\"", oin, "\"")});
  ASSERT_TRUE(gauge.has_value()) << text;
  EXPECT_DOUBLE_EQ(*gauge, -1.0);
}

TEST(CertificateWatch, ReadsExpiryAndFailsOnlyForARequiredBrokenFile) {
  absl::StatusOr<absl::Time> expiry =
      observability::EarliestCertificateExpiry(PkiPath("gateway.crt"));
  ASSERT_TRUE(expiry.ok()) << expiry.status();
  EXPECT_GT(*expiry, absl::Now() + absl::Hours(24));
  // A key file holds no certificate.
  EXPECT_FALSE(observability::EarliestCertificateExpiry(PkiPath("gateway.key")).ok());
  EXPECT_FALSE(observability::EarliestCertificateExpiry("/nonexistent/x.crt").ok());

  auto metrics = observability::Metrics::Start("");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  // Within the warning window (the window is longer than any dev certificate lives): still
  // healthy, a warning is only logged.
  observability::CertificateWatch warn({{"server", PkiPath("gateway.crt"), true},
                                        {"upstream_ca", "/nonexistent/ca.crt", false}},
                                       absl::Hours(24 * 365 * 200), metrics->get());
  EXPECT_TRUE(warn.Check(absl::Now()).ok());
  // At a time after the certificate's end the required server certificate is expired.
  EXPECT_FALSE(warn.Check(*expiry + absl::Seconds(1)).ok());
  observability::CertificateWatch broken({{"server", "/nonexistent/gateway.crt", true}},
                                         absl::Hours(24), metrics->get());
  EXPECT_FALSE(broken.Check(absl::Now()).ok());
}

}  // namespace
}  // namespace knooppunt::testing
