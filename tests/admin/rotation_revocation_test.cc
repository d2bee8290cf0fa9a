// Certificate rotation and revocation while the gateway runs (through the real binary):
//  - the gateway's own certificate and key files are replaced (write + rename) under a
//    steady stream of requests: no request fails, and new connections see the new serial;
//  - a client certificate is revoked (its CA regenerates the CRL in the gateway's CRL
//    directory): the next call on the client's existing connection is refused within 5 s,
//    and a new handshake with it is refused; other clients go on;
//  - the same, without another call: the revoked client's open connection is closed by the
//    gateway within 5 s (the channel leaves READY), other clients' connections stay up;
//  - a connection that made no call before the revocation is closed at its first call.
// The CAs are made in the test with gateway/pki (the operator's CA library); the gateway
// trusts them next to the dev CA.
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gateway/client/envelope.h"
#include "gateway/pki/certificate_authority.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_certificate_verifier.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "gtest/gtest.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

const bool kEnvironmentDefaults = [] {
  setenv("KNOOPPUNT_GATEWAY_BIN", KNOOPPUNT_DEFAULT_GATEWAY_BIN, /*overwrite=*/0);
  setenv("KNOOPPUNT_TEST_PKI_DIR", KNOOPPUNT_DEFAULT_TEST_PKI_DIR, /*overwrite=*/0);
  return true;
}();

constexpr const char* kAgreement = R"yaml(
agreements:
  - id: brp-bevragen-afnemers
    message_type: gemeente.brp.v1.PersoonVraag
    reply_type: gemeente.brp.v1.Persoon
    mode: bevraging
    fields: {all: true}
    reply_fields: {all: true}
    from: [group:brp-afnemers]
    to: ["00000099200000000001"]
    purposes: [BRP-bevraging]
    valid_from: 2020-01-01
)yaml";

void WriteAtomically(const std::string& path, const std::string& contents) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << contents;
  }
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0) << path;
}

uint64_t SerialOfPem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  X509* cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  uint64_t serial = 0;
  if (cert != nullptr) {
    ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(cert));
    X509_free(cert);
  }
  return serial;
}

// Accepts any server certificate that chained to the roots, and remembers the last one.
class RecordingVerifier : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit RecordingVerifier(std::shared_ptr<std::string> seen) : seen_(std::move(seen)) {}
  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    *seen_ = std::string(request->peer_cert().data(), request->peer_cert().size());
    *sync_status = grpc::Status::OK;
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<std::string> seen_;
};

// A channel with its own connection (local subchannel pool).
std::shared_ptr<grpc::Channel> Channel(const std::string& address,
                                       std::shared_ptr<grpc::ChannelCredentials> creds) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, creds, args);
}

grpc::Status Ask(exchange::v1::Exchange::Stub* stub, absl::string_view sender) {
  gemeente::brp::v1::PersoonVraag q;
  q.set_bsn("999993653");
  exchange::v1::Envelope reply;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return stub->Request(
      &ctx, client::NewEnvelope(std::string(sender), std::string(kBrpOin), "BRP-bevraging", q),
      &reply);
}

class RotationRevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / absl::StrCat("kp-rot-", getpid(), "-", counter_++);
    std::filesystem::create_directories(dir_);
    absl::StatusOr<std::unique_ptr<pki::CertificateAuthority>> ca =
        pki::CertificateAuthority::Init({dir_ + "/ca", "Rotatie Test CA", "Knooppunt", 365});
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    // Trust roots: the dev CA and the test CA, for clients and for this test's own checks.
    roots_ = absl::StrCat(ReadPkiFile("ca.crt"), ca_->ca_certificate_pem());
    WriteAtomically(dir_ + "/roots.pem", roots_);
    absl::StatusOr<std::unique_ptr<TestEndpoint>> brp = TestEndpoint::Start("brp");
    ASSERT_TRUE(brp.ok()) << brp.status();
    brp_ = *std::move(brp);
  }
  void TearDown() override {
    gateway_.reset();
    brp_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  void StartGateway(GatewayConfigFiles files) {
    std::vector<TestOrganisation> orgs = DevPkiOrganisations();
    SetEndpoint(&orgs, kBrpOin, brp_->address());
    files.registry_yaml = RegistryYaml(orgs);
    files.agreement_files["brp.yaml"] = kAgreement;
    absl::StatusOr<std::unique_ptr<GatewayProcess>> gw = GatewayProcess::Start(files);
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = *std::move(gw);
  }
  // The gateway checks the CRL directory of the test CA, which also holds the dev CA's CRL.
  void StartGatewayCheckingCrls() {
    const std::string crl_dir = ca_->crl_directory();
    for (const auto& entry : std::filesystem::directory_iterator(PkiPath("crl"))) {
      std::filesystem::copy_file(entry.path(), crl_dir + "/" + entry.path().filename().string(),
                                 std::filesystem::copy_options::overwrite_existing);
    }
    GatewayConfigFiles files;
    files.client_ca_file = dir_ + "/roots.pem";
    files.crl_directory = crl_dir;
    StartGateway(files);
  }
  // A fresh Groningen certificate from the test CA (not revoked yet).
  absl::StatusOr<pki::IssuedCertificate> IssueGroningen() {
    pki::IssueRequest req;
    req.oin = std::string(kGroningenOin);
    req.organisation = "Gemeente Groningen";
    req.common_name = "backoffice.groningen.test";
    req.days = 30;
    return ca_->Issue(req);
  }
  std::shared_ptr<grpc::ChannelCredentials> Credentials(const std::string& cert_pem,
                                                        const std::string& key_pem) {
    return tls::MutualTlsChannelCredentials(roots_, cert_pem, key_pem, std::string(kGatewayOin));
  }

  static int counter_;
  std::string dir_;
  std::string roots_;
  std::unique_ptr<pki::CertificateAuthority> ca_;
  std::unique_ptr<TestEndpoint> brp_;
  std::unique_ptr<GatewayProcess> gateway_;
};
int RotationRevocationTest::counter_ = 0;

TEST_F(RotationRevocationTest, GatewayCertificateRotatesWithoutRestartOrFailures) {
  const std::string cert = dir_ + "/gateway.crt";
  const std::string key = dir_ + "/gateway.key";
  WriteAtomically(cert, ReadPkiFile("gateway.crt"));
  WriteAtomically(key, ReadPkiFile("gateway.key"));
  GatewayConfigFiles files;
  files.tls_cert_file = cert;
  files.tls_key_file = key;
  StartGateway(files);
  const uint64_t old_serial = SerialOfPem(ReadPkiFile("gateway.crt"));

  // Which certificate does a new connection see?
  const auto serial_of_new_connection = [&]() -> uint64_t {
    auto seen = std::make_shared<std::string>();
    auto provider = std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
        roots_, std::vector<grpc::experimental::IdentityKeyCertPair>{
                    {ReadPkiFile("groningen.key"), ReadPkiFile("groningen.crt")}});
    grpc::experimental::TlsChannelCredentialsOptions options;
    options.set_certificate_provider(provider);
    options.watch_root_certs();
    options.watch_identity_key_cert_pairs();
    options.set_verify_server_certs(true);
    options.set_certificate_verifier(
        grpc::experimental::ExternalCertificateVerifier::Create<RecordingVerifier>(seen));
    options.set_check_call_host(false);
    auto stub = exchange::v1::Exchange::NewStub(
        Channel(gateway_->address(), grpc::experimental::TlsCredentials(options)));
    if (!Ask(stub.get(), kGroningenOin).ok()) return 0;
    return SerialOfPem(*seen);
  };
  ASSERT_EQ(serial_of_new_connection(), old_serial);

  pki::IssueRequest req;
  req.kind = pki::CertificateKind::kGateway;
  req.oin = std::string(kGatewayOin);
  req.organisation = "Knooppunt";
  req.common_name = "localhost";
  req.dns_names = {"localhost"};
  req.ip_addresses = {"127.0.0.1"};
  req.days = 30;
  absl::StatusOr<pki::IssuedCertificate> issued = ca_->Issue(req);
  ASSERT_TRUE(issued.ok()) << issued.status();

  // A steady stream of requests, on one long-lived connection and on fresh ones.
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  absl::Mutex mu;
  std::string first_failure;
  std::thread load([&] {
    auto long_lived = exchange::v1::Exchange::NewStub(Channel(
        gateway_->address(), Credentials(ReadPkiFile("groningen.crt"), ReadPkiFile("groningen.key"))));
    int i = 0;
    while (!stop.load()) {
      grpc::Status s;
      if (++i % 4 == 0) {
        auto fresh = exchange::v1::Exchange::NewStub(Channel(
            gateway_->address(), Credentials(ReadPkiFile("groningen.crt"), ReadPkiFile("groningen.key"))));
        s = Ask(fresh.get(), kGroningenOin);
      } else {
        s = Ask(long_lived.get(), kGroningenOin);
      }
      if (s.ok()) {
        ++ok;
      } else {
        ++failed;
        absl::MutexLock lock(&mu);
        if (first_failure.empty()) first_failure = s.error_message();
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  });

  absl::SleepFor(absl::Milliseconds(500));
  // Key first, then certificate: each file is replaced whole.
  WriteAtomically(key, issued->private_key_pem);
  WriteAtomically(cert, issued->certificate_pem);

  // The gateway re-reads its files every tls.refresh_interval (5 s by default).
  uint64_t seen = 0;
  const absl::Time until = absl::Now() + absl::Seconds(20);
  while (absl::Now() < until) {
    seen = serial_of_new_connection();
    if (seen == issued->record.serial) break;
    absl::SleepFor(absl::Milliseconds(250));
  }
  absl::SleepFor(absl::Milliseconds(500));
  stop.store(true);
  load.join();
  EXPECT_EQ(seen, issued->record.serial);
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_GT(ok.load(), 10);
  EXPECT_TRUE(gateway_->running());
}

TEST_F(RotationRevocationTest, RevokedClientIsRefusedOnItsOpenConnectionAndAtTheHandshake) {
  StartGatewayCheckingCrls();
  absl::StatusOr<pki::IssuedCertificate> issued = IssueGroningen();
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto creds = Credentials(issued->certificate_pem, issued->private_key_pem);
  auto stub = exchange::v1::Exchange::NewStub(Channel(gateway_->address(), creds));
  grpc::Status before = Ask(stub.get(), kGroningenOin);
  ASSERT_TRUE(before.ok()) << before.error_message();

  // Revoke: the CA regenerates <ca>/crl/<issuer-hash>.r0 (written whole, then renamed).
  ASSERT_TRUE(ca_->Revoke(issued->record.serial, pki::RevocationReason::kKeyCompromise).ok());
  const absl::Time revoked_at = absl::Now();
  grpc::Status after;
  while (absl::Now() - revoked_at < absl::Seconds(10)) {
    after = Ask(stub.get(), kGroningenOin);  // the same channel and connection
    if (!after.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  const absl::Duration took = absl::Now() - revoked_at;
  // Refused per call (UNAUTHENTICATED) between the CRL swap and the gateway shutting the
  // connection down; after that the channel reconnects and the handshake is refused
  // (UNAVAILABLE). Which one the first refused call meets is a race; either way within 5 s.
  EXPECT_TRUE(after.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
              after.error_code() == grpc::StatusCode::UNAVAILABLE)
      << after.error_code() << " " << after.error_message();
  EXPECT_LT(took, absl::Seconds(5));

  // A new connection with the revoked certificate: refused at the handshake.
  auto fresh = exchange::v1::Exchange::NewStub(
      Channel(gateway_->address(), Credentials(issued->certificate_pem, issued->private_key_pem)));
  EXPECT_EQ(Ask(fresh.get(), kGroningenOin).error_code(), grpc::StatusCode::UNAVAILABLE);

  // Others go on: the dev PKI's Groningen certificate (another serial, another CA).
  auto other = exchange::v1::Exchange::NewStub(Channel(
      gateway_->address(), Credentials(ReadPkiFile("groningen.crt"), ReadPkiFile("groningen.key"))));
  grpc::Status s = Ask(other.get(), kGroningenOin);
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(RotationRevocationTest, RevokedClientsOpenConnectionIsClosedWithoutAnotherCall) {
  StartGatewayCheckingCrls();
  ASSERT_NE(gateway_, nullptr);
  absl::StatusOr<pki::IssuedCertificate> issued = IssueGroningen();
  ASSERT_TRUE(issued.ok()) << issued.status();
  auto channel = Channel(gateway_->address(),
                         Credentials(issued->certificate_pem, issued->private_key_pem));
  auto stub = exchange::v1::Exchange::NewStub(channel);
  grpc::Status before = Ask(stub.get(), kGroningenOin);
  ASSERT_TRUE(before.ok()) << before.error_message();
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);
  // Another client (dev PKI certificate, not revoked) with a connection of its own.
  auto other_channel = Channel(gateway_->address(), Credentials(ReadPkiFile("groningen.crt"),
                                                                ReadPkiFile("groningen.key")));
  auto other = exchange::v1::Exchange::NewStub(other_channel);
  grpc::Status other_before = Ask(other.get(), kGroningenOin);
  ASSERT_TRUE(other_before.ok()) << other_before.error_message();
  ASSERT_EQ(other_channel->GetState(false), GRPC_CHANNEL_READY);

  // Revoke, then only watch the connection: no call is made on it.
  ASSERT_TRUE(ca_->Revoke(issued->record.serial, pki::RevocationReason::kKeyCompromise).ok());
  const absl::Time revoked_at = absl::Now();
  const bool left_ready = channel->WaitForStateChange(
      GRPC_CHANNEL_READY, std::chrono::system_clock::now() + std::chrono::seconds(15));
  const absl::Duration took = absl::Now() - revoked_at;
  ASSERT_TRUE(left_ready) << "the revoked client's connection stayed open\n"
                          << gateway_->StderrText();
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_NE(channel->GetState(false), GRPC_CHANNEL_READY);
  // The gateway logs the shutdown right after it (the harness reads its stderr as it comes).
  const absl::Time log_deadline = absl::Now() + absl::Seconds(10);
  while (!absl::StrContains(gateway_->StderrText(), "revoked_connection_closed") &&
         absl::Now() < log_deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(absl::StrContains(gateway_->StderrText(), "revoked_connection_closed"))
      << gateway_->StderrText();

  // Reconnecting with the revoked certificate fails at the handshake.
  EXPECT_EQ(Ask(stub.get(), kGroningenOin).error_code(), grpc::StatusCode::UNAVAILABLE);

  // The other client's connection was not touched: still READY, and it carries calls.
  EXPECT_EQ(other_channel->GetState(false), GRPC_CHANNEL_READY);
  grpc::Status other_after = Ask(other.get(), kGroningenOin);
  EXPECT_TRUE(other_after.ok()) << other_after.error_message();
}

TEST_F(RotationRevocationTest, ConnectionWithoutCallsIsClosedAtItsFirstCallAfterRevocation) {
  StartGatewayCheckingCrls();
  ASSERT_NE(gateway_, nullptr);
  absl::StatusOr<pki::IssuedCertificate> issued = IssueGroningen();
  ASSERT_TRUE(issued.ok()) << issued.status();
  // Connected (handshake done) but no call yet: the gateway does not know its certificate.
  auto channel = Channel(gateway_->address(),
                         Credentials(issued->certificate_pem, issued->private_key_pem));
  ASSERT_TRUE(channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10)));

  ASSERT_TRUE(ca_->Revoke(issued->record.serial, pki::RevocationReason::kKeyCompromise).ok());
  // Wait (bounded) until the gateway has the new CRL: a new handshake is refused.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  grpc::Status fresh;
  while (absl::Now() < deadline) {
    auto probe = exchange::v1::Exchange::NewStub(Channel(
        gateway_->address(), Credentials(issued->certificate_pem, issued->private_key_pem)));
    fresh = Ask(probe.get(), kGroningenOin);
    if (fresh.error_code() == grpc::StatusCode::UNAVAILABLE) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(fresh.error_code(), grpc::StatusCode::UNAVAILABLE) << fresh.error_message();
  ASSERT_EQ(channel->GetState(false), GRPC_CHANNEL_READY);

  // Its first call is refused (UNAUTHENTICATED, or UNAVAILABLE when the gateway's shutdown of
  // the connection overtakes the refusal), and the connection is closed.
  auto stub = exchange::v1::Exchange::NewStub(channel);
  grpc::Status first = Ask(stub.get(), kGroningenOin);
  EXPECT_TRUE(first.error_code() == grpc::StatusCode::UNAUTHENTICATED ||
              first.error_code() == grpc::StatusCode::UNAVAILABLE)
      << first.error_code() << " " << first.error_message();
  EXPECT_TRUE(channel->WaitForStateChange(
      GRPC_CHANNEL_READY, std::chrono::system_clock::now() + std::chrono::seconds(10)))
      << gateway_->StderrText();
}

}  // namespace
}  // namespace knooppunt::testing
