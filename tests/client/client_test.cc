// The C++ client library (gateway/client) against the real gateway binary with real mutual
// TLS: typed bevragingen and their errors, meldingen with retries that keep the message id,
// the pull inbox, delivery status, and the endpoint base class on both sides (Answer for the
// BRP, Deliver for Groningen).
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gateway/client/endpoint_service.h"
#include "gateway/client/errors.h"
#include "gateway/client/knooppunt_client.h"
#include "gateway/common/ids.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/zaken/v1/zaken.pb.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "gateway/tls/credentials.h"
#include "tests/melding/melding_fixture.h"
#include "tests/testing/gateway_harness.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using client::ClientError;
using client::DescribeError;
using client::ErrorKind;
using client::IncomingCall;
using client::KnooppuntClient;
using exchange::v1::Envelope;
using ::testing::HasSubstr;

constexpr char kKnownBsn[] = "999993653";
constexpr char kUnknownBsn[] = "111222333";  // passes the 11-proef; not in the BRP below

client::ClientOptions OptionsFor(const std::string& address, absl::string_view stem) {
  client::ClientOptions options;
  options.gateway_address = address;
  options.cert_file = PkiPath(absl::StrCat(stem, ".crt"));
  options.key_file = PkiPath(absl::StrCat(stem, ".key"));
  options.ca_file = PkiPath("ca.crt");
  options.gateway_oin = std::string(kGatewayOin);
  options.connect_timeout = absl::Seconds(10);
  options.call_timeout = absl::Seconds(10);
  return options;
}

client::EndpointServerOptions EndpointOptionsFor(absl::string_view stem) {
  client::EndpointServerOptions options;
  options.cert_file = PkiPath(absl::StrCat(stem, ".crt"));
  options.key_file = PkiPath(absl::StrCat(stem, ".key"));
  options.ca_file = PkiPath("ca.crt");
  options.gateway_oin = std::string(kGatewayOin);
  return options;
}

// Records every call it handled; shared by the two endpoint services below.
class RecordingService : public client::EndpointService {
 public:
  struct Seen {
    IncomingCall call;
    Envelope envelope;
  };
  std::vector<Seen> seen() const {
    absl::MutexLock lock(&mu_);
    return seen_;
  }
  bool WaitForCalls(size_t n, absl::Duration timeout) const {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return seen_.size() >= n; };
    return mu_.AwaitWithTimeout(absl::Condition(&enough), timeout);
  }

 protected:
  void Record(const IncomingCall& call, const Envelope& envelope) {
    absl::MutexLock lock(&mu_);
    seen_.push_back({call, envelope});
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<Seen> seen_ ABSL_GUARDED_BY(mu_);
};

// The BRP person service, built on the library's endpoint base class. It answers from a
// thread of its own, as a service that waits for its database would (AnswerAsync); Groningen's
// service below uses the synchronous form.
class BrpService final : public RecordingService {
 public:
  ~BrpService() override {
    absl::MutexLock lock(&threads_mu_);
    for (std::thread& t : threads_) t.join();
  }

  void AnswerAsync(const IncomingCall& call, const Envelope& request, AnswerDone done) override {
    absl::MutexLock lock(&threads_mu_);
    threads_.emplace_back([this, call, request, done = std::move(done)] {
      absl::SleepFor(absl::Milliseconds(20));
      done(Answer(call, request));
    });
  }

  absl::StatusOr<Envelope> Answer(const IncomingCall& call, const Envelope& request) override {
    Record(call, request);
    gemeente::brp::v1::PersoonVraag vraag;
    if (!request.payload().UnpackTo(&vraag)) {
      return absl::InvalidArgumentError("the BRP answers only PersoonVraag");
    }
    if (vraag.bsn() != kKnownBsn) return absl::NotFoundError("no person with this BSN");
    gemeente::brp::v1::Persoon persoon;
    persoon.set_bsn(vraag.bsn());
    persoon.mutable_naam()->set_geslachtsnaam("Jansen");
    return client::ReplyWith(persoon);
  }

 private:
  absl::Mutex threads_mu_;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(threads_mu_);
};

// Groningen's backoffice endpoint: takes meldingen.
class DeliveryService final : public RecordingService {
 public:
  absl::Status Deliver(const IncomingCall& call, const Envelope& melding) override {
    Record(call, melding);
    return absl::OkStatus();
  }
};

// Amsterdam may hand cases to other municipalities, at most 1 per second (burst 1): the
// second Send in a row is rate limited with a RetryInfo delay (a slow first Send on a busy
// machine still leaves most of the second's refill to wait for).
constexpr char kRateLimitedAgreement[] =
    "agreements:\n"
    "  - id: zaak-overdracht\n"
    "    message_type: gemeente.zaken.v1.ZaakAanmaken\n"
    "    mode: melding\n"
    "    from: [\"00000099300000000363\"]\n"
    "    to: [group:gemeenten]\n"
    "    purposes: [Zaakoverdracht]\n"
    "    fields:\n"
    "      all: true\n"
    "    retry_window: 1d\n"
    "    rate:\n"
    "      per_second: 1\n"
    "      burst: 1\n"
    "      per: sender\n";

class ClientLibraryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto brp = client::EndpointServer::Start(EndpointOptionsFor("brp"), &brp_service_);
    ASSERT_TRUE(brp.ok()) << brp.status();
    brp_server_ = std::move(*brp);
    auto groningen =
        client::EndpointServer::Start(EndpointOptionsFor("groningen"), &groningen_service_);
    ASSERT_TRUE(groningen.ok()) << groningen.status();
    groningen_server_ = std::move(*groningen);

    std::vector<TestOrganisation> orgs = DevPkiOrganisations();
    SetEndpoint(&orgs, kBrpOin, absl::StrCat("127.0.0.1:", brp_server_->port()));
    SetEndpoint(&orgs, kGroningenOin, absl::StrCat("127.0.0.1:", groningen_server_->port()));
    GatewayConfigFiles files;
    files.registry_yaml = RegistryYaml(orgs);
    files.agreement_files = MeldingAgreements();
    files.agreement_files["zaken.yaml"] = kRateLimitedAgreement;
    files.extra_gateway_yaml = FastMeldingYaml();
    auto gateway = GatewayProcess::Start(files);
    ASSERT_TRUE(gateway.ok()) << gateway.status();
    gateway_ = std::move(*gateway);
  }

  std::unique_ptr<KnooppuntClient> ClientFor(absl::string_view stem) {
    auto client = KnooppuntClient::Connect(OptionsFor(gateway_->address(), stem));
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? std::move(*client) : nullptr;
  }

  static gemeente::brp::v1::PersoonVraag Vraag(const std::string& bsn) {
    gemeente::brp::v1::PersoonVraag vraag;
    vraag.set_bsn(bsn);
    return vraag;
  }

  BrpService brp_service_;
  DeliveryService groningen_service_;
  std::unique_ptr<client::EndpointServer> brp_server_;
  std::unique_ptr<client::EndpointServer> groningen_server_;
  std::unique_ptr<GatewayProcess> gateway_;
};

TEST(ClientErrorsTest, EveryStatusCodeHasAKindAndOnlyTransientOnesAreRetried) {
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::OK), ErrorKind::kNone);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::PERMISSION_DENIED), ErrorKind::kDenied);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::UNAUTHENTICATED), ErrorKind::kUnauthenticated);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::INVALID_ARGUMENT), ErrorKind::kInvalid);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::NOT_FOUND), ErrorKind::kNotFound);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::ALREADY_EXISTS), ErrorKind::kConflict);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::FAILED_PRECONDITION), ErrorKind::kPrecondition);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::RESOURCE_EXHAUSTED), ErrorKind::kRetryLater);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::UNAVAILABLE), ErrorKind::kUnavailable);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::DEADLINE_EXCEEDED), ErrorKind::kTimeout);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::INTERNAL), ErrorKind::kInternal);
  EXPECT_EQ(client::ErrorKindFor(grpc::StatusCode::UNIMPLEMENTED), ErrorKind::kUnimplemented);
  for (int code = 0; code <= 16; ++code) {
    const ErrorKind kind = client::ErrorKindFor(static_cast<grpc::StatusCode>(code));
    const bool transient = code == grpc::StatusCode::UNAVAILABLE ||
                           code == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                           code == grpc::StatusCode::DEADLINE_EXCEEDED;
    EXPECT_EQ(client::IsRetryable(kind), transient) << "code " << code;
    EXPECT_NE(client::ErrorKindName(kind), "") << "code " << code;
  }
}

TEST(ClientConnectTest, AMissingCertificateFileIsNamed) {
  client::ClientOptions options = OptionsFor("127.0.0.1:1", "groningen");
  options.cert_file = "/nonexistent/groningen.crt";
  auto client = KnooppuntClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_THAT(std::string(client.status().message()), HasSubstr("/nonexistent/groningen.crt"));
}

TEST(ClientConnectTest, NoGatewayIsUnavailable) {
  ClosedPort nothing;
  client::ClientOptions options = OptionsFor(nothing.address(), "groningen");
  options.connect_timeout = absl::Seconds(1);
  auto client = KnooppuntClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(DescribeError(client.status()).kind, ErrorKind::kUnavailable);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr(nothing.address()));
}

TEST_F(ClientLibraryTest, AServerWithoutTheGatewaysOinIsRefused) {
  client::ClientOptions options = OptionsFor(gateway_->address(), "groningen");
  options.gateway_oin = std::string(kBrpOin);  // a valid certificate of the CA, not the gateway's
  options.connect_timeout = absl::Seconds(2);
  auto client = KnooppuntClient::Connect(options);
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(DescribeError(client.status()).kind, ErrorKind::kUnavailable);
  EXPECT_THAT(std::string(client.status().message()), HasSubstr(std::string(kBrpOin)));
}

TEST_F(ClientLibraryTest, BevragingReturnsTheTypedReply) {
  auto groningen = ClientFor("groningen");
  ASSERT_NE(groningen, nullptr);
  EXPECT_EQ(groningen->oin(), kGroningenOin);
  absl::StatusOr<gemeente::brp::v1::Persoon> persoon =
      groningen->Request<gemeente::brp::v1::Persoon>(std::string(kBrpOin), "BRP-bevraging",
                                                     Vraag(kKnownBsn));
  ASSERT_TRUE(persoon.ok()) << DescribeError(persoon.status()).ToString();
  EXPECT_EQ(persoon->bsn(), kKnownBsn);
  EXPECT_EQ(persoon->naam().geslachtsnaam(), "Jansen");

  // The endpoint base class saw what the gateway tells an endpoint.
  std::vector<RecordingService::Seen> seen = brp_service_.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].call.agreement_id, "brp-bevragen");
  EXPECT_EQ(seen[0].call.sender_oin, kGroningenOin);
  EXPECT_EQ(seen[0].call.caller_oin, kGatewayOin);
  EXPECT_FALSE(seen[0].call.traceparent.empty());
  EXPECT_LT(seen[0].call.deadline, absl::InfiniteFuture());
}

TEST_F(ClientLibraryTest, BevragingWithoutAgreementIsDeniedByTheGateway) {
  auto verhuizen = ClientFor("verhuizen");  // not a municipality: no BRP agreement
  ASSERT_NE(verhuizen, nullptr);
  auto persoon = verhuizen->Request<gemeente::brp::v1::Persoon>(std::string(kBrpOin),
                                                                "BRP-bevraging", Vraag(kKnownBsn));
  ASSERT_FALSE(persoon.ok());
  const ClientError error = DescribeError(persoon.status());
  EXPECT_EQ(error.kind, ErrorKind::kDenied) << error.ToString();
  EXPECT_FALSE(error.from_endpoint);
  EXPECT_FALSE(client::IsRetryable(error.kind));
  EXPECT_TRUE(brp_service_.seen().empty());
}

TEST_F(ClientLibraryTest, AnEndpointsOwnErrorIsMarkedAsSuch) {
  auto groningen = ClientFor("groningen");
  ASSERT_NE(groningen, nullptr);
  auto persoon = groningen->Request<gemeente::brp::v1::Persoon>(
      std::string(kBrpOin), "BRP-bevraging", Vraag(kUnknownBsn));
  ASSERT_FALSE(persoon.ok());
  const ClientError error = DescribeError(persoon.status());
  EXPECT_EQ(error.kind, ErrorKind::kNotFound) << error.ToString();
  EXPECT_TRUE(error.from_endpoint);
  EXPECT_THAT(error.message, HasSubstr("no person with this BSN"));
  EXPECT_THAT(error.ToString(), HasSubstr("from the endpoint"));
}

TEST_F(ClientLibraryTest, RepeatedSendReturnsTheOriginalReceipt) {
  auto verhuizen = ClientFor("verhuizen");
  ASSERT_NE(verhuizen, nullptr);
  const Envelope melding = Verhuismelding("gemeente:0479");
  absl::StatusOr<exchange::v1::Receipt> first = verhuizen->SendEnvelope(melding);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->message_id(), melding.message_id());
  EXPECT_FALSE(first->duplicate());

  // What a retry after a lost Receipt looks like to the gateway: the same envelope again.
  absl::StatusOr<exchange::v1::Receipt> again = verhuizen->SendEnvelope(melding);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->duplicate());
  EXPECT_EQ(again->message_id(), melding.message_id());
  EXPECT_EQ(again->accepted_at().seconds(), first->accepted_at().seconds());
  EXPECT_EQ(again->accepted_at().nanos(), first->accepted_at().nanos());

  // The same id for other content is a conflict, and not retried.
  Envelope other = Verhuismelding("gemeente:0479", "", "something else");
  other.set_message_id(melding.message_id());
  absl::StatusOr<exchange::v1::Receipt> conflict = verhuizen->SendEnvelope(other);
  ASSERT_FALSE(conflict.ok());
  EXPECT_EQ(DescribeError(conflict.status()).kind, ErrorKind::kConflict);
}

TEST_F(ClientLibraryTest, SendGeneratesAnIdAndRetriesARateLimitWithTheSameId) {
  auto amsterdam = ClientFor("amsterdam");
  ASSERT_NE(amsterdam, nullptr);
  gemeente::zaken::v1::ZaakAanmaken zaak;
  zaak.set_zaakidentificatie("ZAAK-2026-0001");
  zaak.set_omschrijving("Overdracht bezwaarschrift");
  auto first = amsterdam->Send("gemeente:0479", "Zaakoverdracht", zaak);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(IsValidUuid(first->message_id()));

  // The bucket (burst 1, 1/s) is empty now: the gateway answers RESOURCE_EXHAUSTED with a
  // RetryInfo delay, the client waits at least that long and sends the same envelope again.
  zaak.set_zaakidentificatie("ZAAK-2026-0002");
  const absl::Time start = absl::Now();
  auto second = amsterdam->Send("gemeente:0479", "Zaakoverdracht", zaak);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(second.ok()) << DescribeError(second.status()).ToString();
  EXPECT_NE(second->message_id(), first->message_id());
  EXPECT_FALSE(second->duplicate());

  std::vector<audit::v1::DecisionRecord> records = gateway_->RecordsFor(second->message_id());
  ASSERT_GE(records.size(), 2u) << gateway_->DecisionLogText();
  EXPECT_EQ(records.front().grpc_status(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(records.back().grpc_status(), grpc::StatusCode::OK);
  for (const auto& record : records) EXPECT_EQ(record.message_id(), second->message_id());
  EXPECT_GE(took, absl::Milliseconds(400)) << "the RetryInfo delay (up to 1s) was not honoured";
}

TEST_F(ClientLibraryTest, RecipientWithoutEndpointPullsItsInboxAndAcknowledges) {
  auto verhuizen = ClientFor("verhuizen");
  auto zaanstad = ClientFor("zaanstad");
  ASSERT_NE(verhuizen, nullptr);
  ASSERT_NE(zaanstad, nullptr);
  const Envelope melding = Verhuismelding("gemeente:0479");
  ASSERT_TRUE(verhuizen->SendEnvelope(melding).ok());

  std::vector<Envelope> handled;
  absl::StatusOr<int> acknowledged = zaanstad->ProcessInbox(
      [&](const Envelope& envelope) {
        handled.push_back(envelope);
        return absl::OkStatus();
      },
      1, absl::Seconds(10));
  ASSERT_TRUE(acknowledged.ok()) << acknowledged.status();
  EXPECT_EQ(*acknowledged, 1);
  ASSERT_EQ(handled.size(), 1u);
  EXPECT_EQ(handled[0].message_id(), melding.message_id());
  EXPECT_EQ(handled[0].sender(), kVerhuizenOin);
  EXPECT_EQ(handled[0].agreement_id(), "verhuizen-naar-gemeenten");

  // The sender sees it delivered; the recipient may ask too, naming the sender.
  absl::StatusOr<exchange::v1::DeliveryStatus> status =
      WaitForState(verhuizen->stub(), melding.message_id(), exchange::v1::DELIVERY_STATE_DELIVERED);
  ASSERT_TRUE(status.ok()) << status.status();
  auto seen_by_recipient = zaanstad->GetStatus(melding.message_id(), std::string(kVerhuizenOin));
  ASSERT_TRUE(seen_by_recipient.ok()) << seen_by_recipient.status();
  EXPECT_EQ(seen_by_recipient->state(), exchange::v1::DELIVERY_STATE_DELIVERED);
  // Nobody else learns it exists.
  auto amsterdam = ClientFor("amsterdam");
  ASSERT_NE(amsterdam, nullptr);
  auto foreign = amsterdam->GetStatus(melding.message_id(), std::string(kVerhuizenOin));
  EXPECT_EQ(DescribeError(foreign.status()).kind, ErrorKind::kNotFound);

  // Acknowledged: the inbox is empty now.
  auto rest = zaanstad->Receive(1, absl::Milliseconds(1500));
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_TRUE(rest->empty());
}

TEST_F(ClientLibraryTest, EndpointBaseClassReceivesDeliveries) {
  auto verhuizen = ClientFor("verhuizen");
  ASSERT_NE(verhuizen, nullptr);
  const Envelope melding = Verhuismelding("gemeente:0014");
  auto receipt = verhuizen->SendEnvelope(melding);
  ASSERT_TRUE(receipt.ok()) << receipt.status();

  ASSERT_TRUE(groningen_service_.WaitForCalls(1, absl::Seconds(20)));
  std::vector<RecordingService::Seen> seen = groningen_service_.seen();
  EXPECT_EQ(seen[0].envelope.message_id(), melding.message_id());
  EXPECT_EQ(seen[0].call.agreement_id, "verhuizen-naar-gemeenten");
  EXPECT_EQ(seen[0].call.sender_oin, kVerhuizenOin);
  EXPECT_EQ(seen[0].call.caller_oin, kGatewayOin);
  auto status = verhuizen->GetStatus(melding.message_id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_NE(status->state(), exchange::v1::DELIVERY_STATE_EXPIRED);
  EXPECT_TRUE(WaitForState(verhuizen->stub(), melding.message_id(),
                           exchange::v1::DELIVERY_STATE_DELIVERED)
                  .ok());
}

TEST_F(ClientLibraryTest, EndpointRefusesCallersOtherThanTheGateway) {
  // Zaanstad calls Groningen's endpoint directly, with a valid certificate of the same CA.
  auto credentials = tls::MutualTlsChannelCredentials(
      ReadPkiFile("ca.crt"), ReadPkiFile("zaanstad.crt"), ReadPkiFile("zaanstad.key"),
      std::string(kGroningenOin));
  auto stub = exchange::v1::Endpoint::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", groningen_server_->port()), credentials));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
  exchange::v1::DeliverResponse response;
  grpc::Status status = stub->Deliver(&context, Verhuismelding("gemeente:0014"), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << status.error_message();
  EXPECT_TRUE(groningen_service_.seen().empty());
}

}  // namespace
}  // namespace knooppunt::testing
