// Endpoints that fail in ways a well-behaved gRPC server never does: one that answers bytes
// that are not an Envelope, and one that accepts the TCP connection and resets it. The
// gateway answers the caller with a clear error (the endpoint's fault, marked as such where
// there was an answer), records the outcome, and keeps serving.
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gateway/client/envelope.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;

// A gRPC server with the BRP's certificate that answers every call with bytes that do not
// parse as an Envelope (a truncated varint).
class GarbageEndpoint final : public grpc::CallbackGenericService {
 public:
  GarbageEndpoint() {
    auto creds = tls::MutualTlsServerCredentials(
        {PkiPath("brp.crt"), PkiPath("brp.key"), PkiPath("ca.crt"), ""});
    EXPECT_TRUE(creds.ok()) << creds.status();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", *creds, &port_);
    builder.RegisterCallbackGenericService(this);
    server_ = builder.BuildAndStart();
  }
  ~GarbageEndpoint() override { server_->Shutdown(); }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int calls() const { return calls_.load(); }

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext*) override {
    ++calls_;
    class Reactor final : public grpc::ServerGenericBidiReactor {
     public:
      Reactor() {
        const char garbage[] = {'\x0a', '\xff', '\xff', '\xff'};
        grpc::Slice slice(garbage, sizeof(garbage));
        reply_ = grpc::ByteBuffer(&slice, 1);
        StartRead(&request_);
      }
      void OnReadDone(bool) override { StartWriteAndFinish(&reply_, {}, grpc::Status::OK); }
      void OnDone() override { delete this; }

     private:
      grpc::ByteBuffer request_, reply_;
    };
    return new Reactor;
  }

 private:
  int port_ = 0;
  std::atomic<int> calls_{0};
  std::unique_ptr<grpc::Server> server_;
};

// Accepts TCP connections and resets each at once (SO_LINGER 0), before any TLS.
class ResettingEndpoint {
 public:
  ResettingEndpoint() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 16), 0);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      for (;;) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;  // listening socket shut down
        ++accepted_;
        linger reset{1, 0};
        setsockopt(c, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
        close(c);
      }
    });
  }
  ~ResettingEndpoint() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }
  int accepted() const { return accepted_.load(); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> accepted_{0};
  std::thread thread_;
};

class EndpointFaultIntegrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto groningen = TestEndpoint::Start("groningen");
    ASSERT_TRUE(groningen.ok()) << groningen.status();
    groningen_ = *std::move(groningen);
    // The BRP answers garbage; the "mirror register" resets every connection.
    GatewayConfigFiles files;
    files.registry_yaml = FederationRegistry(garbage_.address(), groningen_->address(),
                                             resetting_.address(), closed_.address());
    files.agreement_files = FederationAgreements();
    files.default_deadline = "5s";
    auto gw = GatewayProcess::Start(files);
    ASSERT_TRUE(gw.ok()) << gw.status();
    gateway_ = *std::move(gw);
    stub_ = ExchangeStubFor(gateway_->address(), "groningen");
  }

  // Asks `recipient` as Groningen; returns the status and the request sent.
  grpc::Status Ask(absl::string_view recipient, Envelope* request) {
    *request = PersoonVraagEnvelope(kGroningenOin, recipient);
    Envelope reply;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    grpc::Status status = stub_->Request(&context, *request, &reply);
    EXPECT_FALSE(reply.has_payload());
    return status;
  }

  // The outcome record of `request` carries `code`, and the gateway still serves: an allowed
  // bevraging to Groningen's well-behaved endpoint works.
  void ExpectRecordedAndStillServing(const Envelope& request, grpc::StatusCode code) {
    const auto outcome = gateway_->WaitForRecords(request.message_id(), "outcome", 1,
                                                  absl::Seconds(10));
    ASSERT_EQ(outcome.size(), 1u);
    EXPECT_EQ(outcome[0].grpc_status(), static_cast<int>(code));
    EXPECT_TRUE(gateway_->running());
    Envelope ok_request = PersoonVraagEnvelope(kAmsterdamOin, "gemeente:0014");
    Envelope reply;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    auto amsterdam = ExchangeStubFor(gateway_->address(), "amsterdam");
    const grpc::Status s = amsterdam->Request(&context, ok_request, &reply);
    EXPECT_TRUE(s.ok()) << s.error_code() << " " << s.error_message();
  }

  GarbageEndpoint garbage_;
  ResettingEndpoint resetting_;
  ClosedPort closed_;
  std::unique_ptr<TestEndpoint> groningen_;
  std::unique_ptr<GatewayProcess> gateway_;
  std::unique_ptr<exchange::v1::Exchange::Stub> stub_;
};

TEST_F(EndpointFaultIntegrationTest, GarbageAnswerIsAnErrorNotACrash) {
  Envelope request;
  const grpc::Status status = Ask(kBrpOin, &request);
  // The reply cannot be parsed: INTERNAL, as for a reply of the wrong type.
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << status.error_message();
  EXPECT_GE(garbage_.calls(), 1);
  ExpectRecordedAndStillServing(request, grpc::StatusCode::INTERNAL);
}

TEST_F(EndpointFaultIntegrationTest, ConnectionResetByTheEndpointIsUnavailable) {
  Envelope request;
  const grpc::Status status = Ask(kMirrorRegisterOin, &request);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_GE(resetting_.accepted(), 1);
  ExpectRecordedAndStillServing(request, grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace knooppunt::testing
