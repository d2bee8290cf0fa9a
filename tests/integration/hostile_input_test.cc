// The bad-input catalogue's cases that are not covered elsewhere (SECURITY.md lists them all
// with their tests): hostile payloads, headers and connections against the real gateway.
// Each case asserts the status the caller gets, that nothing reached an endpoint, what the
// decision log holds for it (a denial for every envelope the gateway saw; nothing for a
// call or connection refused before there was an envelope), and — in TearDown, for every
// test — that the gateway still serves an allowed bevraging.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gateway/tls/credentials.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;

class HostileInputIntegrationTest : public FederationTest {
 protected:
  // Groningen asks the BRP with `payload_bytes` as the PersoonVraag's serialized value.
  static Envelope WithPayloadBytes(std::string payload_bytes) {
    Envelope e = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
    e.mutable_payload()->set_value(std::move(payload_bytes));
    return e;
  }

  // The call was refused with `code` as a recorded denial of the transform step (the
  // agreement matched, the payload did not pass), and the BRP was never called.
  static void ExpectPayloadDenied(const Envelope& request, grpc::StatusCode code) {
    Envelope reply;
    const grpc::Status status = Request("groningen", request, &reply);
    EXPECT_EQ(status.error_code(), code) << status.error_message();
    EXPECT_EQ(brp().call_count(), 0);
    const std::vector<audit::v1::DecisionRecord> records =
        gateway().RecordsFor(request.message_id());
    ASSERT_EQ(records.size(), 1u) << "one decision record, no outcome";
    EXPECT_EQ(records[0].decision(), audit::v1::DECISION_DENIED);
    EXPECT_EQ(records[0].grpc_status(), static_cast<int>(code));
    EXPECT_EQ(records[0].reason(), "invalid payload");
  }

  // A TCP connection to the gateway's port.
  static int ConnectTcp() {
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(gateway().port()));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }

  // Whether the peer closes `fd` (EOF or reset) within `timeout`; whatever it sends first
  // is read and ignored.
  static bool ClosedByPeerWithin(int fd, absl::Duration timeout) {
    const absl::Time until = absl::Now() + timeout;
    char buf[4096];
    while (absl::Now() < until) {
      pollfd p{fd, POLLIN, 0};
      const int left = static_cast<int>(absl::ToInt64Milliseconds(until - absl::Now()));
      if (poll(&p, 1, std::max(left, 1)) <= 0) continue;
      const ssize_t n = recv(fd, buf, sizeof(buf), 0);
      if (n <= 0) return true;
    }
    return false;
  }
};

// A payload nested deeper than the parser allows (unknown groups, 500 levels):
// the parser's recursion limit stops it; INVALID_ARGUMENT, recorded, nothing forwarded.
TEST_F(HostileInputIntegrationTest, DeeplyNestedPayloadIsInvalidArgument) {
  gemeente::brp::v1::PersoonVraag q;
  q.set_bsn(std::string(kTestBsn));
  // 500 levels (protobuf allows 100): as deep as fits in this federation's 1 KiB payloads.
  std::string fitting = q.SerializeAsString();
  fitting.append(500, static_cast<char>((15 << 3) | 3));  // start group, field 15
  fitting.append(500, static_cast<char>((15 << 3) | 4));  // end group, field 15
  ASSERT_LE(fitting.size(), kFederationMaxPayloadBytes);
  ExpectPayloadDenied(WithPayloadBytes(fitting), grpc::StatusCode::INVALID_ARGUMENT);
}

// A string field that is not UTF-8 (proto3 strings must be): the payload does not parse as
// its type; INVALID_ARGUMENT, recorded, nothing forwarded.
TEST_F(HostileInputIntegrationTest, InvalidUtf8InAStringFieldIsInvalidArgument) {
  std::string bytes;
  auto append_string_field = [&bytes](int field, const std::string& value) {
    bytes.push_back(static_cast<char>((field << 3) | 2));
    bytes.push_back(static_cast<char>(value.size()));
    bytes.append(value);
  };
  append_string_field(1, std::string(kTestBsn));  // bsn
  append_string_field(2, "na\xc3\x28me");          // velden: an invalid 2-byte sequence
  ExpectPayloadDenied(WithPayloadBytes(bytes), grpc::StatusCode::INVALID_ARGUMENT);
}

// A BSN that fails the 11-proef: INVALID_ARGUMENT naming the field, recorded without the
// number itself.
TEST_F(HostileInputIntegrationTest, BadBsnIsInvalidArgumentAndNotLogged) {
  gemeente::brp::v1::PersoonVraag q;
  q.set_bsn("123456789");
  Envelope request = WithPayloadBytes(q.SerializeAsString());
  ExpectPayloadDenied(request, grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(gateway().DecisionLogText(), ::testing::Not(::testing::HasSubstr("123456789")));
}

// 64 KiB of request headers: refused by gRPC before the call reaches the gateway's code
// (limits.max_metadata_bytes), so there is no envelope and no decision; nothing forwarded.
// gRPC treats it as an error of the connection, so the hostile client loses that one
// connection (its own stub here); everyone else is served on.
TEST_F(HostileInputIntegrationTest, HugeMetadataIsRefusedBeforeTheCall) {
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  context.AddMetadata("x-filler", std::string(64 * 1024, 'a'));
  Envelope reply;
  auto own_connection = ExchangeStubFor(gateway().address(), "groningen");
  const grpc::Status status = own_connection->Request(&context, request, &reply);
  EXPECT_FALSE(status.ok());
  RecordProperty("grpc_status", static_cast<int>(status.error_code()));
  EXPECT_EQ(brp().call_count(), 0);
  EXPECT_TRUE(gateway().RecordsFor(request.message_id()).empty());
}

// A traceparent that is not W3C trace context: the exchange goes through, on a fresh trace
// (the garbage is neither forwarded nor recorded).
TEST_F(HostileInputIntegrationTest, MalformedTraceContextStartsAFreshTrace) {
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  request.mutable_trace()->set_traceparent("00-not-a-trace-\n-injected\"},{\"x\":1");
  Envelope reply;
  const grpc::Status status = Request("groningen", request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::vector<audit::v1::DecisionRecord> records =
      gateway().WaitForRecords(request.message_id(), "decision", 1, absl::Seconds(5));
  ASSERT_FALSE(records.empty());
  const std::string& trace_id = records[0].trace_id();
  EXPECT_EQ(trace_id.size(), 32u);
  EXPECT_TRUE(std::all_of(trace_id.begin(), trace_id.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  })) << trace_id;
  EXPECT_THAT(gateway().DecisionLogText(), ::testing::Not(::testing::HasSubstr("injected")));
}

// A client that connects and never completes the TLS handshake (says nothing, or half a
// ClientHello) is disconnected after limits.handshake_timeout.
TEST_F(HostileInputIntegrationTest, HandshakeThatNeverCompletesIsClosed) {
  absl::Duration timeout;
  ASSERT_TRUE(absl::ParseDuration(kFederationHandshakeTimeout, &timeout));
  const int silent = ConnectTcp();
  const int partial = ConnectTcp();
  ASSERT_GE(silent, 0);
  ASSERT_GE(partial, 0);
  // The first bytes of a TLS record header of a ClientHello, and then nothing.
  const char hello_start[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01};
  ASSERT_EQ(send(partial, hello_start, sizeof(hello_start), 0),
            static_cast<ssize_t>(sizeof(hello_start)));
  // Bounded generously for a loaded machine, but far below gRPC's default of 120s.
  EXPECT_TRUE(ClosedByPeerWithin(silent, timeout + absl::Seconds(15)));
  EXPECT_TRUE(ClosedByPeerWithin(partial, timeout + absl::Seconds(15)));
  close(silent);
  close(partial);
}

// A client that opens streams and never sends a request on them: one connection holds at
// most limits.max_concurrent_streams of them — further calls on it wait for a free stream
// (here: until their deadline) — while other connections are served; once the client gives
// up its streams, the connection works again. Such a stream never became an envelope, so
// nothing is recorded for it.
TEST_F(HostileInputIntegrationTest, StreamsThatNeverSendAreBoundedPerConnection) {
  auto creds = tls::MutualTlsChannelCredentials(ReadPkiFile("ca.crt"), ReadPkiFile("groningen.crt"),
                                                ReadPkiFile("groningen.key"),
                                                std::string(kGatewayOin));
  grpc::ChannelArguments args;
  args.SetInt("knooppunt.test.hanging", 1);  // a connection of its own
  std::shared_ptr<grpc::Channel> channel =
      grpc::CreateCustomChannel(gateway().address(), creds, args);
  // Connected first, so the client knows the gateway's stream limit (its SETTINGS frame).
  ASSERT_TRUE(channel->WaitForConnected(absl::ToChronoTime(absl::Now() + absl::Seconds(10))));
  grpc::GenericStub generic(channel);
  grpc::CompletionQueue cq;
  struct Hanging {
    grpc::ClientContext context;
    std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call;
  };
  std::vector<std::unique_ptr<Hanging>> hanging;
  const int n = static_cast<int>(kFederationMaxConcurrentStreams) + 4;
  for (int i = 0; i < n; ++i) {
    auto h = std::make_unique<Hanging>();
    h->call = generic.PrepareCall(&h->context, "/knooppunt.exchange.v1.Exchange/Request", &cq);
    h->call->StartCall(h.get());  // headers only; no message, no half-close
    hanging.push_back(std::move(h));
  }
  // The first max_concurrent_streams of them have their headers out (their StartCall
  // completes); the rest wait for a stream.
  for (uint32_t started = 0; started < kFederationMaxConcurrentStreams;) {
    void* tag;
    bool ok;
    ASSERT_EQ(cq.AsyncNext(&tag, &ok, absl::ToChronoTime(absl::Now() + absl::Seconds(10))),
              grpc::CompletionQueue::GOT_EVENT);
    ASSERT_TRUE(ok);
    ++started;
  }
  // Same connection: no stream is free, so this call waits and times out.
  auto same_connection = exchange::v1::Exchange::NewStub(channel);
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  Envelope reply;
  EXPECT_EQ(Request(*same_connection, request, &reply, absl::Seconds(2)).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  // Another connection is served meanwhile.
  Envelope other = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  EXPECT_TRUE(Request("groningen", other, &reply).ok());

  for (auto& h : hanging) h->context.TryCancel();
  cq.Shutdown();
  void* tag;
  bool ok;
  while (cq.Next(&tag, &ok)) {
  }
  hanging.clear();
  Envelope again = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  EXPECT_TRUE(Request(*same_connection, again, &reply, absl::Seconds(10)).ok());
  EXPECT_TRUE(gateway().RecordsFor(request.message_id()).empty())
      << "the call that never got a stream was never seen by the gateway";
}

}  // namespace
}  // namespace knooppunt::testing
