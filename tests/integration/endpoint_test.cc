// The forwarding leg through the real gateway: endpoints that are down, present the wrong
// organisation's certificate, have no endpoint, fail, are slow; deadlines and cancellation
// carried over to the endpoint.
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"

#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "tests/integration/federation.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;
using ::testing::HasSubstr;

class EndpointIntegrationTest : public FederationTest {};

TEST_F(EndpointIntegrationTest, EndpointDownIsUnavailable) {
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kClosedRegisterOin);
  Envelope reply;
  const absl::Time start = absl::Now();
  const grpc::Status status = Request("groningen", request, &reply, absl::Seconds(5));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  RecordProperty("grpc_message", status.error_message());
  // Clear: names the organisation, its OIN and that its endpoint is unavailable.
  EXPECT_THAT(status.error_message(), HasSubstr("Register zonder luisteraar (test)"));
  EXPECT_THAT(status.error_message(), HasSubstr(std::string(kClosedRegisterOin)));
  EXPECT_THAT(status.error_message(), HasSubstr("is unavailable"));
  // Fails fast instead of waiting for the deadline.
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  // Allowed (decision) and then failed (outcome).
  const std::vector<audit::v1::DecisionRecord> records =
      gateway().WaitForRecords(request.message_id(), "", 2, absl::Seconds(5));
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].decision(), audit::v1::DECISION_ALLOWED);
  EXPECT_EQ(records[1].event(), "outcome");
  EXPECT_EQ(records[1].grpc_status(), static_cast<int>(grpc::StatusCode::UNAVAILABLE));
}

TEST_F(EndpointIntegrationTest, EndpointWithAnotherOrganisationsCertificateIsNeverCalled) {
  // The registry says the mirror register is kMirrorRegisterOin; whoever listens at its address
  // presents Zaanstad's (valid, same CA) certificate. The gateway must not send it anything.
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kMirrorRegisterOin);
  Envelope reply;
  const grpc::Status status = Request("groningen", request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  RecordProperty("grpc_message", status.error_message());
  EXPECT_THAT(status.error_message(), HasSubstr(std::string(kMirrorRegisterOin)));
  // The gateway's verifier says why: the certificate names another organisation.
  EXPECT_THAT(status.error_message(),
              HasSubstr(absl::StrCat("server certificate carries OIN ", kZaanstadOin)));
  EXPECT_FALSE(reply.has_payload());
  EXPECT_EQ(mirror().call_count(), 0);
  // And again, on the gateway's now existing channel.
  const grpc::Status again =
      Request("groningen", PersoonVraagEnvelope(kGroningenOin, kMirrorRegisterOin), &reply);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::UNAVAILABLE) << again.error_message();
  EXPECT_EQ(mirror().call_count(), 0);
}

TEST_F(EndpointIntegrationTest, RecipientWithoutEndpointIsFailedPrecondition) {
  // Zaanstad is an allowed recipient but answers no bevragingen.
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kZaanstadOin);
  Envelope reply;
  const grpc::Status status = Request("groningen", request, &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("has no endpoint"));
  const std::vector<audit::v1::DecisionRecord> outcome =
      gateway().WaitForRecords(request.message_id(), "outcome", 1, absl::Seconds(5));
  ASSERT_EQ(outcome.size(), 1u);
  EXPECT_EQ(outcome[0].grpc_status(), static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
}

TEST_F(EndpointIntegrationTest, EndpointErrorStatusPassesThrough) {
  brp().SetHandler([](const EndpointCall&) {
    return EndpointReply::WithStatus(grpc::StatusCode::NOT_FOUND, "no person with this BSN");
  });
  Envelope reply;
  const grpc::Status status =
      Request("groningen", PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("recipient endpoint: no person with this BSN"));
  EXPECT_EQ(brp().call_count(), 1);
}

TEST_F(EndpointIntegrationTest, EndpointErrorsAreMarkedAsTheEndpoints) {
  brp().SetHandler([](const EndpointCall&) {
    return EndpointReply::WithStatus(grpc::StatusCode::PERMISSION_DENIED, "not for you");
  });
  auto stub = ExchangeStubFor(gateway().address(), "groningen");
  Envelope reply;
  grpc::ClientContext from_endpoint;
  EXPECT_EQ(stub->Request(&from_endpoint, PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  const auto& trailers = from_endpoint.GetServerTrailingMetadata();
  auto source = trailers.find("knooppunt-error-source");
  ASSERT_NE(source, trailers.end());
  EXPECT_EQ(std::string(source->second.data(), source->second.size()), "endpoint");

  // The gateway's own denial of the same code carries no such mark.
  grpc::ClientContext from_gateway;
  EXPECT_EQ(stub->Request(&from_gateway, PersoonVraagEnvelope(kGroningenOin, kBrpOin, "geen-doel"),
                          &reply)
                .error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(from_gateway.GetServerTrailingMetadata().count("knooppunt-error-source"), 0u);
}

TEST_F(EndpointIntegrationTest, SlowEndpointIsDeadlineExceededAndSeesCancellation) {
  brp().SetHandler([](const EndpointCall& call) {
    return AnswerPersoonVraag(call).After(absl::Seconds(3));
  });
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  Envelope reply;
  const absl::Time start = absl::Now();
  const grpc::Status status = Request("groningen", request, &reply, absl::Milliseconds(300));
  const absl::Duration elapsed = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED) << status.error_message();
  EXPECT_LT(elapsed, absl::Seconds(2));
  EXPECT_FALSE(reply.has_payload());

  // The caller's deadline travelled with the forwarded call ...
  ASSERT_TRUE(brp().WaitForCalls(1, absl::Seconds(2)));
  const EndpointCall call = brp().calls().front();
  EXPECT_LE(call.deadline, start + absl::Milliseconds(300) + absl::Milliseconds(100));
  // ... and the endpoint learns that nobody waits for its answer any more, long before its
  // 3 s are up.
  EXPECT_TRUE(brp().WaitForCancellations(1, absl::Seconds(2)))
      << "the endpoint was not cancelled within 2 s of the deadline";
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));

  // The exchange's end is on record (which code: see the next test).
  const std::vector<audit::v1::DecisionRecord> outcome =
      gateway().WaitForRecords(request.message_id(), "outcome", 1, absl::Seconds(5));
  ASSERT_EQ(outcome.size(), 1u);
  EXPECT_NE(outcome[0].grpc_status(), 0);
}

TEST_F(EndpointIntegrationTest, DeadlineOutcomeIsRecordedAsDeadlineExceeded) {
  // The caller's deadline and the upstream deadline fire at the same moment; whichever gRPC
  // notices first, the audit trail must say "deadline", not "the caller gave up".
  brp().SetHandler([](const EndpointCall& call) {
    return AnswerPersoonVraag(call).After(absl::Seconds(3));
  });
  for (int i = 0; i < 5; ++i) {
    const Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
    Envelope reply;
    const grpc::Status status = Request("groningen", request, &reply, absl::Milliseconds(200));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    const std::vector<audit::v1::DecisionRecord> outcome =
        gateway().WaitForRecords(request.message_id(), "outcome", 1, absl::Seconds(5));
    ASSERT_EQ(outcome.size(), 1u);
    EXPECT_EQ(outcome[0].grpc_status(), static_cast<int>(grpc::StatusCode::DEADLINE_EXCEEDED))
        << "run " << i;
  }
}

TEST_F(EndpointIntegrationTest, CallerCancellationReachesEndpoint) {
  brp().SetHandler([](const EndpointCall& call) {
    return AnswerPersoonVraag(call).After(absl::Seconds(5));
  });
  const Envelope request = PersoonVraagEnvelope(kGroningenOin, kBrpOin);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(8)));
  Envelope reply;
  grpc::Status status;
  std::thread caller([&] { status = StubFor("groningen").Request(&context, request, &reply); });
  const bool arrived = brp().WaitForCalls(1, absl::Seconds(5));
  context.TryCancel();
  caller.join();
  ASSERT_TRUE(arrived) << "the call never reached the endpoint";
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED) << status.error_message();
  EXPECT_TRUE(brp().WaitForCancellations(1, absl::Seconds(2)))
      << "the caller's cancellation did not reach the endpoint";
  const std::vector<audit::v1::DecisionRecord> outcome =
      gateway().WaitForRecords(request.message_id(), "outcome", 1, absl::Seconds(5));
  ASSERT_EQ(outcome.size(), 1u);
  EXPECT_EQ(outcome[0].grpc_status(), static_cast<int>(grpc::StatusCode::CANCELLED));
}

TEST_F(EndpointIntegrationTest, DefaultDeadlineAppliesWhenCallerSetsNone) {
  grpc::ClientContext context;  // no deadline
  Envelope reply;
  const absl::Time start = absl::Now();
  const grpc::Status status =
      StubFor("groningen").Request(&context, PersoonVraagEnvelope(kGroningenOin, kBrpOin), &reply);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(brp().call_count(), 1);
  const EndpointCall call = brp().calls().front();
  // limits.default_deadline is 5s.
  EXPECT_GE(call.deadline, start + absl::Seconds(4));
  // (gRPC rounds a deadline it sends up to 3 significant digits of its timeout.)
  EXPECT_LE(call.deadline, absl::Now() + absl::Seconds(5) + absl::Milliseconds(250));
}

TEST_F(EndpointIntegrationTest, LongDeadlineIsCapped) {
  Envelope reply;
  const grpc::Status status = Request("groningen", PersoonVraagEnvelope(kGroningenOin, kBrpOin),
                                      &reply, absl::Seconds(60));
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(brp().call_count(), 1);
  // limits.max_deadline is 10s (gRPC rounds a 10 s timeout up to the next 100 ms).
  EXPECT_LE(brp().calls().front().deadline,
            absl::Now() + absl::Seconds(10) + absl::Milliseconds(250));
}

}  // namespace
}  // namespace knooppunt::testing
