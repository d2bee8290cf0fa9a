// Exchange.Request end to end through the real gateway binary: the allowed path (reply,
// header, endpoint metadata, audit), envelope validation, size limits and bad replies.
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/ids.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;
using ::testing::HasSubstr;
using ::testing::Not;

class ExchangeIntegrationTest : public FederationTest {};

// The 32-hex trace id of a traceparent "00-<trace>-<span>-<flags>".
std::string TraceIdOf(const std::string& traceparent) {
  return traceparent.size() == 55 ? traceparent.substr(3, 32) : "";
}
std::string SpanIdOf(const std::string& traceparent) {
  return traceparent.size() == 55 ? traceparent.substr(36, 16) : "";
}

TEST_F(ExchangeIntegrationTest, AllowedBevragingReturnsTheEndpointsReply) {
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  Envelope reply;
  const grpc::Status status = Request("groningen", request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();

  gemeente::brp::v1::Persoon persoon;
  ASSERT_TRUE(reply.payload().UnpackTo(&persoon)) << reply.payload().type_url();
  EXPECT_EQ(persoon.bsn(), kTestBsn);
  EXPECT_EQ(persoon.naam().geslachtsnaam(), "Jansen");

  // The gateway, not the endpoint, fills in the reply's header.
  EXPECT_EQ(reply.sender(), kBrpOin);
  EXPECT_EQ(reply.recipient(), kGroningenOin);
  EXPECT_EQ(reply.correlation_id(), request.message_id());
  EXPECT_EQ(reply.agreement_id(), "brp-bevragen-afnemers");
  EXPECT_EQ(reply.purpose(), request.purpose());
  EXPECT_TRUE(IsValidUuid(reply.message_id())) << reply.message_id();
  EXPECT_NE(reply.message_id(), request.message_id());
  EXPECT_TRUE(reply.has_created_at());
  // The trace continues: same trace id, the gateway's own span.
  EXPECT_EQ(TraceIdOf(reply.trace().traceparent()), TraceIdOf(request.trace().traceparent()));
  EXPECT_NE(SpanIdOf(reply.trace().traceparent()), SpanIdOf(request.trace().traceparent()));
}

TEST_F(ExchangeIntegrationTest, AllowedBevragingPassesEnvelopeAndMetadataToEndpoint) {
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin, "BRP-bijhouding");
  request.mutable_trace()->set_tracestate("knooppunt=test");
  Envelope reply;
  const grpc::Status status = Request("groningen", request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();

  const std::vector<EndpointCall> calls = brp().calls();
  ASSERT_EQ(calls.size(), 1u);
  const EndpointCall& call = calls.front();
  // The request envelope arrives exactly as the sender sent it.
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(call.request, request))
      << call.request.DebugString();
  EXPECT_EQ(call.agreement_id, "brp-bevragen-afnemers");
  EXPECT_EQ(call.sender_oin, kGroningenOin);
  EXPECT_EQ(TraceIdOf(call.traceparent), TraceIdOf(request.trace().traceparent()))
      << call.traceparent;
  EXPECT_NE(SpanIdOf(call.traceparent), SpanIdOf(request.trace().traceparent()));
  // The gateway calls with its own certificate.
  EXPECT_EQ(call.peer_oin, kGatewayOin);
  // The reply carries the caller's tracestate back and the span the endpoint saw.
  EXPECT_EQ(reply.trace().tracestate(), "knooppunt=test");
  EXPECT_EQ(reply.trace().traceparent(), call.traceparent);
  EXPECT_EQ(groningen().call_count(), 0);
}

TEST_F(ExchangeIntegrationTest, AllowedBevragingIsAuditedWithoutPayload) {
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  Envelope reply;
  const grpc::Status status = Request("groningen", request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  const std::vector<EndpointCall> calls = brp().calls();
  ASSERT_EQ(calls.size(), 1u);

  const std::vector<audit::v1::DecisionRecord> records =
      gateway().WaitForRecords(request.message_id(), "", 2, absl::Seconds(5));
  ASSERT_EQ(records.size(), 2u) << gateway().DecisionLogText();
  const audit::v1::DecisionRecord& decision = records[0];
  const audit::v1::DecisionRecord& outcome = records[1];
  EXPECT_EQ(decision.event(), "decision");
  EXPECT_EQ(outcome.event(), "outcome");
  for (const audit::v1::DecisionRecord* r : {&decision, &outcome}) {
    SCOPED_TRACE(r->event());
    EXPECT_EQ(r->decision(), audit::v1::DECISION_ALLOWED);
    EXPECT_EQ(r->operation(), "Request");
    EXPECT_EQ(r->instance_id(), "knooppunt-it");
    EXPECT_EQ(r->authenticated_oin(), kGroningenOin);
    EXPECT_EQ(r->sender(), kGroningenOin);
    EXPECT_EQ(r->recipient(), kBrpOin);
    EXPECT_EQ(r->recipient_oin(), kBrpOin);
    EXPECT_EQ(r->message_type(), "gemeente.brp.v1.PersoonVraag");
    EXPECT_EQ(r->purpose(), "BRP-bevraging");
    EXPECT_EQ(r->agreement_id(), "brp-bevragen-afnemers");
    EXPECT_EQ(r->trace_id(), TraceIdOf(request.trace().traceparent()));
    EXPECT_EQ(r->span_id(), SpanIdOf(calls.front().traceparent));
    EXPECT_EQ(r->payload_bytes(), static_cast<int64_t>(request.payload().value().size()));
    EXPECT_EQ(r->payload_sha256(), Sha256Hex(request.payload().value()));
    EXPECT_TRUE(r->has_time());
  }
  EXPECT_EQ(outcome.grpc_status(), 0);

  // Accountability without the data: neither the BSN nor any payload bytes are in the log.
  const std::string log = gateway().DecisionLogText();
  EXPECT_THAT(log, Not(HasSubstr(std::string(kTestBsn))));
  EXPECT_THAT(log, Not(HasSubstr(request.payload().value())));
  EXPECT_THAT(log, Not(HasSubstr(reply.payload().value())));
  EXPECT_THAT(log, Not(HasSubstr("Jansen")));
  EXPECT_THAT(gateway().StderrText(), Not(HasSubstr(std::string(kTestBsn))));
}

TEST_F(ExchangeIntegrationTest, GemeentecodeRecipientResolves) {
  const Envelope request = PersoonVraagEnvelope(kAmsterdamOin, "gemeente:0014");
  Envelope reply;
  const grpc::Status status = Request("amsterdam", request, &reply);
  ASSERT_TRUE(status.ok()) << status.error_code() << " " << status.error_message();
  EXPECT_EQ(reply.sender(), kGroningenOin);
  EXPECT_EQ(reply.recipient(), kAmsterdamOin);
  EXPECT_EQ(reply.agreement_id(), "brp-lokaal-groningen");
  ASSERT_EQ(groningen().call_count(), 1);
  EXPECT_EQ(groningen().calls().front().request.recipient(), "gemeente:0014");
  EXPECT_EQ(brp().call_count(), 0);
  const std::vector<audit::v1::DecisionRecord> records =
      gateway().RecordsFor(request.message_id(), "decision");
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].recipient(), "gemeente:0014");
  EXPECT_EQ(records[0].recipient_oin(), kGroningenOin);
}

// An invalid envelope is refused before policy or forwarding, and the refusal is logged.
void ExpectInvalid(const Envelope& request, absl::string_view cert_stem,
                   grpc::StatusCode expected_code, absl::string_view message_part,
                   GatewayProcess& gateway, TestEndpoint& endpoint) {
  Envelope reply;
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  std::unique_ptr<exchange::v1::Exchange::Stub> stub =
      ExchangeStubFor(gateway.address(), cert_stem);
  const grpc::Status status = stub->Request(&context, request, &reply);
  EXPECT_EQ(status.error_code(), expected_code) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr(std::string(message_part)));
  EXPECT_EQ(endpoint.call_count(), 0);
  EXPECT_FALSE(reply.has_payload());
  const std::vector<audit::v1::DecisionRecord> records = gateway.RecordsFor(request.message_id());
  if (request.message_id().empty()) return;  // nothing to find the record by
  ASSERT_EQ(records.size(), 1u) << gateway.DecisionLogText();
  EXPECT_EQ(records[0].decision(), audit::v1::DECISION_DENIED);
  EXPECT_EQ(records[0].grpc_status(), static_cast<int>(expected_code));
}

TEST_F(ExchangeIntegrationTest, EmptyPayloadIsInvalidArgument) {
  // A PersoonVraag without fields serialises to zero bytes: a typed but empty payload.
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  request.mutable_payload()->PackFrom(gemeente::brp::v1::PersoonVraag());
  ASSERT_TRUE(request.payload().value().empty());
  ExpectInvalid(request, "groningen", grpc::StatusCode::INVALID_ARGUMENT, "payload is empty",
                gateway(), brp());
}

TEST_F(ExchangeIntegrationTest, MissingPayloadIsInvalidArgument) {
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  request.clear_payload();
  ExpectInvalid(request, "groningen", grpc::StatusCode::INVALID_ARGUMENT, "payload is missing",
                gateway(), brp());
}

TEST_F(ExchangeIntegrationTest, BadMessageIdIsInvalidArgument) {
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  request.set_message_id("not-a-uuid");
  ExpectInvalid(request, "groningen", grpc::StatusCode::INVALID_ARGUMENT, "message_id", gateway(),
                brp());
  request.set_message_id("");
  ExpectInvalid(request, "groningen", grpc::StatusCode::INVALID_ARGUMENT, "message_id", gateway(),
                brp());
}

TEST_F(ExchangeIntegrationTest, UnknownMessageTypeIsInvalidArgument) {
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  request.mutable_payload()->set_type_url("type.googleapis.com/gemeente.onbekend.v1.Iets");
  ExpectInvalid(request, "groningen", grpc::StatusCode::INVALID_ARGUMENT,
                "unknown message type 'gemeente.onbekend.v1.Iets'", gateway(), brp());
}

TEST_F(ExchangeIntegrationTest, MalformedHeaderFieldsAreInvalidArgument) {
  struct Case {
    const char* name;
    void (*mutate)(Envelope*);
    const char* message_part;
  };
  const Case cases[] = {
      {"sender not an OIN", [](Envelope* e) { e->set_sender("gemeente:0014"); }, "sender"},
      {"empty recipient", [](Envelope* e) { e->set_recipient(""); }, "recipient"},
      {"recipient neither OIN nor gemeente", [](Envelope* e) { e->set_recipient("brp"); },
       "recipient"},
      {"gemeentecode not 4 digits", [](Envelope* e) { e->set_recipient("gemeente:14"); },
       "gemeentecode"},
      {"empty purpose", [](Envelope* e) { e->set_purpose(""); }, "purpose"},
      {"payload without type", [](Envelope* e) { e->mutable_payload()->set_type_url(""); },
       "payload is missing"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
    c.mutate(&request);
    ExpectInvalid(request, "groningen", grpc::StatusCode::INVALID_ARGUMENT, c.message_part,
                  gateway(), brp());
  }
}

TEST_F(ExchangeIntegrationTest, UnregisteredRecipientIsNotFound) {
  ExpectInvalid(PersoonVraagEnvelope(kGroningenOin, "00000099999999999999"), "groningen",
                grpc::StatusCode::NOT_FOUND, "not registered", gateway(), brp());
  ExpectInvalid(PersoonVraagEnvelope(kGroningenOin, "gemeente:9999"), "groningen",
                grpc::StatusCode::NOT_FOUND, "9999", gateway(), brp());
}

TEST_F(ExchangeIntegrationTest, PayloadOverLimitIsResourceExhausted) {
  // Over limits.max_payload_bytes (1024) but well under gRPC's receive limit.
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  gemeente::brp::v1::PersoonVraag vraag;
  vraag.set_bsn(std::string(kTestBsn));
  for (int i = 0; i < 200; ++i) vraag.add_velden("verblijfplaats");
  request.mutable_payload()->PackFrom(vraag);
  ASSERT_GT(request.payload().value().size(), kFederationMaxPayloadBytes);
  ASSERT_LT(request.payload().value().size(), 16u * 1024);
  ExpectInvalid(request, "groningen", grpc::StatusCode::RESOURCE_EXHAUSTED, "exceeds the limit",
                gateway(), brp());
}

TEST_F(ExchangeIntegrationTest, MessageOverReceiveLimitIsResourceExhausted) {
  // Far above what the gateway accepts on the wire (max payload + 64 KiB): gRPC refuses it
  // before the gateway sees it, so there is no decision record.
  Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  gemeente::brp::v1::PersoonVraag vraag;
  vraag.set_bsn(std::string(kTestBsn));
  vraag.add_velden(std::string(1 << 20, 'x'));
  request.mutable_payload()->PackFrom(vraag);
  Envelope reply;
  const grpc::Status status = Request("groningen", request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_EQ(brp().call_count(), 0);
  EXPECT_TRUE(gateway().RecordsFor(request.message_id()).empty());
}

TEST_F(ExchangeIntegrationTest, ReplyOfWrongTypeIsInternal) {
  // The endpoint answers a PersoonVraag with a PersoonVraag instead of a Persoon.
  brp().SetHandler([](const EndpointCall&) {
    gemeente::brp::v1::PersoonVraag wrong;
    wrong.set_bsn(std::string(kTestBsn));
    return EndpointReply::WithPayload(wrong);
  });
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  Envelope reply;
  grpc::Status status = Request("groningen", request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("gemeente.brp.v1.Persoon"));
  EXPECT_FALSE(reply.has_payload());
  EXPECT_EQ(brp().call_count(), 1);
  const std::vector<audit::v1::DecisionRecord> outcome =
      gateway().WaitForRecords(request.message_id(), "outcome", 1, absl::Seconds(5));
  ASSERT_EQ(outcome.size(), 1u);
  EXPECT_EQ(outcome[0].grpc_status(), static_cast<int>(grpc::StatusCode::INTERNAL));

  // A reply without any payload is just as wrong.
  brp().SetHandler([](const EndpointCall&) { return EndpointReply(); });
  Envelope reply2;
  status = Request("groningen", PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply2);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INTERNAL) << status.error_message();
}

TEST_F(ExchangeIntegrationTest, ReplyOverLimitIsResourceExhausted) {
  brp().SetHandler([](const EndpointCall&) {
    gemeente::brp::v1::Persoon persoon;
    persoon.set_bsn(std::string(kTestBsn));
    persoon.mutable_naam()->set_voornamen(std::string(4 * kFederationMaxPayloadBytes, 'P'));
    return EndpointReply::WithPayload(persoon);
  });
  Envelope reply;
  const grpc::Status status =
      Request("groningen", PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_FALSE(reply.has_payload());
  EXPECT_EQ(brp().call_count(), 1);
}

TEST_F(ExchangeIntegrationTest, KeepsServingAfterBadInputs) {
  // A burst of everything that is refused, then an allowed request on the same connection and
  // on a fresh one.
  for (int i = 0; i < 3; ++i) {
    Envelope reply;
    Envelope bad = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
    bad.set_message_id("x");
    EXPECT_EQ(Request("groningen", bad, &reply).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(Request("zaanstad", PersoonVraagEnvelope(kZaanstadOin, kBrpOin), &reply).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(Request("zaanstad", PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply)
                  .error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(Request("no-oin", PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
    EXPECT_EQ(Request(*ExchangeStubFor(gateway().address(), "foreign"),
                      PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply)
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
    EXPECT_EQ(Request(*ExchangeStubWithoutCertificate(gateway().address()),
                      PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply)
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
    Envelope big = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
    gemeente::brp::v1::PersoonVraag vraag;
    vraag.add_velden(std::string(256 * 1024, 'x'));
    big.mutable_payload()->PackFrom(vraag);
    EXPECT_EQ(Request("groningen", big, &reply).error_code(),
              grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_EQ(Request("groningen", PersoonVraagEnvelope(kGroningenOin, kMirrorRegisterOin), &reply)
                  .error_code(),
              grpc::StatusCode::UNAVAILABLE);
  }
  EXPECT_EQ(brp().call_count(), 0);

  Envelope reply;
  grpc::Status status = Request("groningen", PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  status = Request(*ExchangeStubFor(gateway().address(), "groningen"),
                   PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(brp().call_count(), 2);
}

}  // namespace
}  // namespace knooppunt::testing
