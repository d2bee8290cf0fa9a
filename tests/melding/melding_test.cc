// Meldingen end to end: the real gateway binary, a real SQLite file in a temp dir, real
// mutual TLS to an in-process Deliver endpoint. Waits are polls with generous bounds, never
// fixed sleeps that a loaded machine could outrun.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gateway/audit/audit_crypto.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gateway/client/envelope.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/melding/melding_fixture.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::DeliveryState;
using exchange::v1::Envelope;
using exchange::v1::Receipt;

GatewayConfigFiles Files(const std::string& groningen_address, absl::string_view retry_window,
                         absl::string_view melding_extra) {
  return MeldingFiles(groningen_address, retry_window, melding_extra);
}

std::unique_ptr<MeldingGateway> StartGateway(const GatewayConfigFiles& files) {
  auto gw = std::make_unique<MeldingGateway>(files);
  if (!gw->Start()) return nullptr;
  return gw;
}

TEST(Melding, SendIsStoredDeliveredAndVisibleAsDelivered) {
  auto groningen = DeliverEndpoint::Start("groningen");
  ASSERT_NE(groningen, nullptr);
  auto gw = StartGateway(Files(groningen->address(), "5d", ""));
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");

  Envelope e = Verhuismelding("gemeente:0014", "", "verhuizing per 1 mei");
  Receipt receipt;
  grpc::Status s = SendMelding(*verhuizen, e, &receipt);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(receipt.message_id(), e.message_id());
  EXPECT_EQ(receipt.agreement_id(), "verhuizen-naar-gemeenten");
  EXPECT_FALSE(receipt.duplicate());
  EXPECT_TRUE(receipt.has_accepted_at());

  ASSERT_TRUE(groningen->WaitForIds({e.message_id()}, absl::Seconds(30)));
  auto delivered = groningen->delivered();
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0].caller_oin, kGatewayOin);
  EXPECT_EQ(delivered[0].agreement_id, "verhuizen-naar-gemeenten");
  EXPECT_EQ(delivered[0].envelope.sender(), kVerhuizenOin);
  EXPECT_EQ(delivered[0].envelope.payload().value(), e.payload().value());

  auto status = WaitForState(*verhuizen, e.message_id(), exchange::v1::DELIVERY_STATE_DELIVERED);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->recipient(), kGroningenOin);
  EXPECT_EQ(status->attempts(), 1u);
  EXPECT_TRUE(status->has_delivered_at());
  EXPECT_TRUE(status->has_expires_at());
  EXPECT_EQ(status->expires_at().seconds() - status->accepted_at().seconds(), 5 * 24 * 3600);

  // The recipient may look too (naming the sender); a third party may not, nor learn that
  // the message exists.
  auto groningen_stub = ExchangeStubFor(gw->address(), "groningen");
  EXPECT_TRUE(GetStatus(*groningen_stub, e.message_id(), kVerhuizenOin).ok());
  auto zaanstad = ExchangeStubFor(gw->address(), "zaanstad");
  EXPECT_TRUE(absl::IsNotFound(GetStatus(*zaanstad, e.message_id(), kVerhuizenOin).status()));
  EXPECT_TRUE(absl::IsNotFound(GetStatus(*verhuizen, "00000000-0000-4000-8000-000000000000").status()));
  EXPECT_TRUE(gw->Stop()) << gw->Stderr();

  // Accountability: the decision, the Send's outcome and the delivery are on record.
  std::ifstream log(gw->dir() + "/decisions.jsonl");
  int decision = 0, outcome = 0, delivered_record = 0;
  for (std::string line; std::getline(log, line);) {
    if (line.find(e.message_id()) == std::string::npos) continue;
    decision += line.find("\"event\":\"decision\"") != std::string::npos;
    outcome += line.find("\"event\":\"outcome\"") != std::string::npos;
    if (line.find("\"event\":\"delivered\"") != std::string::npos) {
      ++delivered_record;
      EXPECT_NE(line.find("\"operation\":\"Deliver\""), std::string::npos) << line;
      EXPECT_NE(line.find(std::string(kGroningenOin)), std::string::npos) << line;
    }
  }
  EXPECT_EQ(decision, 1);
  EXPECT_EQ(outcome, 1);
  EXPECT_EQ(delivered_record, 1);
}

TEST(Melding, DuplicateIdSameContentIsTheSameReceiptAndStoredOnce) {
  auto groningen = DeliverEndpoint::Start("groningen");
  ASSERT_NE(groningen, nullptr);
  auto gw = StartGateway(Files(groningen->address(), "5d", ""));
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");

  Envelope e = Verhuismelding();
  Receipt first, second;
  ASSERT_TRUE(SendMelding(*verhuizen, e, &first).ok());
  ASSERT_TRUE(groningen->WaitForIds({e.message_id()}, absl::Seconds(30)));
  Envelope again = e;
  again.mutable_created_at()->set_seconds(e.created_at().seconds() + 60);  // a client retry
  ASSERT_TRUE(SendMelding(*verhuizen, again, &second).ok());
  EXPECT_TRUE(second.duplicate());
  EXPECT_EQ(second.accepted_at().seconds(), first.accepted_at().seconds());
  EXPECT_EQ(second.accepted_at().nanos(), first.accepted_at().nanos());

  // Same id, different content: refused.
  Envelope conflicting = Verhuismelding("gemeente:0014", "", "iets anders");
  conflicting.set_message_id(e.message_id());
  Receipt refused;
  grpc::Status s = SendMelding(*verhuizen, conflicting, &refused);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS) << s.error_message();

  // A later message arrives; the duplicate never did.
  Envelope later = Verhuismelding();
  Receipt r;
  ASSERT_TRUE(SendMelding(*verhuizen, later, &r).ok());
  ASSERT_TRUE(groningen->WaitForIds({later.message_id()}, absl::Seconds(30)));
  int copies = 0;
  for (const auto& d : groningen->delivered()) copies += d.envelope.message_id() == e.message_id();
  EXPECT_EQ(copies, 1);
}

TEST(Melding, SendUnderABevragingAgreementIsPermissionDenied) {
  auto gw = StartGateway(Files("", "5d", ""));
  ASSERT_NE(gw, nullptr);
  auto groningen = ExchangeStubFor(gw->address(), "groningen");
  gemeente::brp::v1::PersoonVraag q;
  q.set_bsn("999993653");
  Envelope e = client::NewEnvelope(std::string(kGroningenOin), std::string(kBrpOin),
                                   "BRP-bevraging", q);
  Receipt receipt;
  grpc::Status s = SendMelding(*groningen, e, &receipt);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
  // Posing as another sender is refused as for Request.
  auto zaanstad = ExchangeStubFor(gw->address(), "zaanstad");
  s = SendMelding(*zaanstad, Verhuismelding(), &receipt);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << s.error_message();
}

TEST(Melding, EndpointDownThenUpGetsEverythingDelivered) {
  int port;
  {
    ClosedPort reserved;  // refuses connections for now
    port = reserved.port();
  }
  auto gw = StartGateway(Files(absl::StrCat("127.0.0.1:", port), "5d", ""));
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    Envelope e = Verhuismelding();
    Receipt r;
    ASSERT_TRUE(SendMelding(*verhuizen, e, &r).ok());
    ids.push_back(e.message_id());
  }
  // The first one is being retried, with the reason visible to the sender.
  const absl::Time until = absl::Now() + absl::Seconds(30);
  absl::StatusOr<exchange::v1::DeliveryStatus> st;
  do {
    st = GetStatus(*verhuizen, ids[0]);
    ASSERT_TRUE(st.ok()) << st.status();
    if (st->attempts() >= 2 && !st->last_error().empty()) break;
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < until);
  EXPECT_EQ(st->state(), exchange::v1::DELIVERY_STATE_ACCEPTED);
  EXPECT_GE(st->attempts(), 2u);
  EXPECT_FALSE(st->last_error().empty());

  auto groningen = DeliverEndpoint::Start("groningen", port);
  ASSERT_NE(groningen, nullptr);
  ASSERT_TRUE(groningen->WaitForIds(ids, absl::Seconds(60)));
  for (const std::string& id : ids) {
    auto status = WaitForState(*verhuizen, id, exchange::v1::DELIVERY_STATE_DELIVERED);
    EXPECT_TRUE(status.ok()) << status.status();
  }
  EXPECT_TRUE(gw->Stop()) << gw->Stderr();

  // Every attempt is on record: the failed ones while Groningen was down, then the delivery.
  std::ifstream log(gw->dir() + "/decisions.jsonl");
  int failed_attempts = 0, delivered = 0;
  for (std::string line; std::getline(log, line);) {
    if (line.find(ids[0]) == std::string::npos) continue;
    if (line.find("\"event\":\"delivery_failed\"") != std::string::npos) {
      ++failed_attempts;
      EXPECT_NE(line.find("\"operation\":\"Deliver\""), std::string::npos) << line;
      EXPECT_NE(line.find("\"grpc_status\":14"), std::string::npos) << line;  // UNAVAILABLE
    }
    delivered += line.find("\"event\":\"delivered\"") != std::string::npos;
  }
  EXPECT_GE(failed_attempts, 2);
  EXPECT_EQ(delivered, 1);
}

TEST(Melding, SameCorrelationIdIsDeliveredInAcceptanceOrderDespiteFailures) {
  auto groningen = DeliverEndpoint::Start("groningen");
  ASSERT_NE(groningen, nullptr);
  groningen->FailEvery(3);
  auto gw = StartGateway(Files(groningen->address(), "5d", ""));
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");
  std::vector<std::string> ids;
  for (int i = 0; i < 30; ++i) {
    Envelope e = Verhuismelding("gemeente:0014", "zaak-42", absl::StrCat("deel ", i));
    Receipt r;
    ASSERT_TRUE(SendMelding(*verhuizen, e, &r).ok());
    ids.push_back(e.message_id());
  }
  ASSERT_TRUE(groningen->WaitForIds(ids, absl::Seconds(60)));
  std::vector<std::string> order;
  for (const auto& d : groningen->delivered()) order.push_back(d.envelope.message_id());
  EXPECT_EQ(order, ids);
  EXPECT_GT(groningen->calls(), 30);  // there were failures, retried
}

TEST(Melding, MessageIsExpiredWhenTheRetryWindowEnds) {
  ClosedPort down;
  auto gw = StartGateway(Files(down.address(), "1s", ""));
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");
  Envelope e = Verhuismelding();
  Receipt r;
  ASSERT_TRUE(SendMelding(*verhuizen, e, &r).ok());
  auto status = WaitForState(*verhuizen, e.message_id(), exchange::v1::DELIVERY_STATE_EXPIRED);
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_GE(status->attempts(), 1u);
  EXPECT_FALSE(status->last_error().empty());
  EXPECT_FALSE(status->has_delivered_at());
}

TEST(Melding, PullInboxHandsOutAgainWhatACrashedConsumerDidNotAcknowledge) {
  // Amsterdam has no endpoint: it pulls.
  auto gw = StartGateway(Files("", "5d", ""));
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");
  Envelope e = Verhuismelding("gemeente:0363");
  Receipt r;
  ASSERT_TRUE(SendMelding(*verhuizen, e, &r).ok());

  auto amsterdam = ExchangeStubFor(gw->address(), "amsterdam");
  {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
    auto reader = amsterdam->Receive(&ctx, exchange::v1::ReceiveRequest());
    Envelope got;
    ASSERT_TRUE(reader->Read(&got));
    EXPECT_EQ(got.message_id(), e.message_id());
    EXPECT_EQ(got.agreement_id(), "verhuizen-naar-gemeenten");
    ctx.TryCancel();  // the consumer crashes before Ack
    while (reader->Read(&got)) {
    }
    reader->Finish().IgnoreError();
  }
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
  auto reader = amsterdam->Receive(&ctx, exchange::v1::ReceiveRequest());
  Envelope again;
  ASSERT_TRUE(reader->Read(&again));  // after the visibility timeout
  EXPECT_EQ(again.message_id(), e.message_id());

  // Only the recipient can acknowledge.
  exchange::v1::AckRequest ack;
  ack.set_sender(std::string(kVerhuizenOin));
  ack.set_message_id(e.message_id());
  exchange::v1::AckResponse ack_reply;
  {
    auto zaanstad = ExchangeStubFor(gw->address(), "zaanstad");
    grpc::ClientContext c;
    EXPECT_EQ(zaanstad->Ack(&c, ack, &ack_reply).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext c;
    grpc::Status s = amsterdam->Ack(&c, ack, &ack_reply);
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  auto status = GetStatus(*verhuizen, e.message_id());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->state(), exchange::v1::DELIVERY_STATE_DELIVERED);
  EXPECT_EQ(status->attempts(), 2u);
  ctx.TryCancel();
  reader->Finish().IgnoreError();
}

// SIGTERM ends open Receive streams (UNAVAILABLE) instead of leaving them to the drain
// deadline, and the gateway exits cleanly. (Reactors finished from the store's or the
// scheduler's thread have their completion picked up by gRPC's backup poller during shutdown,
// which can add a few seconds; the bound allows for that.)
TEST(Melding, GatewayStopsCleanlyWithAnOpenInboxStream) {
  auto gw = StartGateway(Files("", "5d", ""));
  ASSERT_NE(gw, nullptr);
  auto amsterdam = ExchangeStubFor(gw->address(), "amsterdam");
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
  auto reader = amsterdam->Receive(&ctx, exchange::v1::ReceiveRequest());
  // The stream is open once a melding arrives on it.
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");
  Envelope e = Verhuismelding("gemeente:0363");
  Receipt r;
  ASSERT_TRUE(SendMelding(*verhuizen, e, &r).ok());
  Envelope got;
  ASSERT_TRUE(reader->Read(&got));
  // The consumer keeps reading, as a real one does, while the gateway is stopped.
  grpc::Status end;
  std::thread consumer([&] {
    Envelope more;
    while (reader->Read(&more)) {
    }
    end = reader->Finish();
  });
  const absl::Time start = absl::Now();
  EXPECT_TRUE(gw->Stop()) << gw->Stderr();
  EXPECT_LT(absl::Now() - start, absl::Seconds(25)) << gw->Stderr();
  consumer.join();
  EXPECT_EQ(end.error_code(), grpc::StatusCode::UNAVAILABLE) << end.error_message();
}

TEST(Melding, FullStoreAnswersResourceExhaustedAndKeepsWhatItAccepted) {
  auto gw = StartGateway(Files("", "5d", "  max_pending_messages: 3\n"));
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");
  std::vector<Envelope> accepted;
  for (int i = 0; i < 3; ++i) {
    Envelope e = Verhuismelding("gemeente:0479");  // Zaanstad pulls, and nobody does
    Receipt r;
    ASSERT_TRUE(SendMelding(*verhuizen, e, &r).ok());
    accepted.push_back(e);
  }
  Receipt r;
  grpc::Status s = SendMelding(*verhuizen, Verhuismelding("gemeente:0479"), &r);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  // A retry of an accepted message still gets its receipt.
  s = SendMelding(*verhuizen, accepted[0], &r);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(r.duplicate());
  for (const Envelope& e : accepted) {
    auto st = GetStatus(*verhuizen, e.message_id());
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->state(), exchange::v1::DELIVERY_STATE_ACCEPTED);
  }
}

// A second gateway pointed at a melding store another gateway holds (the file is locked):
// it does not start, and says which file and why; the first one serves on.
TEST(Melding, StoreFileHeldByAnotherGatewayIsAClearStartupError) {
  const std::string dir = std::filesystem::temp_directory_path() /
                          absl::StrCat("kp-melding-locked-", getpid());
  std::filesystem::create_directories(dir);
  const std::string store = dir + "/shared-meldingen.db";
  const std::string extra = absl::StrCat("  store_path: ", store, "\n");
  auto first = StartGateway(Files("", "5d", extra));
  ASSERT_NE(first, nullptr);
  MeldingGateway second(Files("", "5d", extra));
  EXPECT_FALSE(second.Start(absl::Seconds(30)));
  EXPECT_THAT(second.Stderr(), ::testing::HasSubstr(store));
  EXPECT_THAT(second.Stderr(), ::testing::HasSubstr("locked"));
  auto verhuizen = ExchangeStubFor(first->address(), "verhuizen");
  Receipt r;
  EXPECT_TRUE(SendMelding(*verhuizen, Verhuismelding("gemeente:0479"), &r).ok());
  first.reset();
  std::filesystem::remove_all(dir);
}

// The decision record and the store append of a Send are committed concurrently: when the
// record cannot be written (the audit database reached max_db_bytes), the Send is refused
// with UNAVAILABLE and the message, although the store had it, is taken back — never
// delivered, unknown to GetStatus, and its id free for the sender's retry.
TEST(Melding, SendWhoseDecisionCannotBeRecordedIsRefusedAndNeverDelivered) {
  auto groningen = DeliverEndpoint::Start("groningen");
  ASSERT_NE(groningen, nullptr);
  const std::string keys = std::filesystem::temp_directory_path() /
                           absl::StrCat("kp-melding-audit-", getpid());
  std::filesystem::create_directories(keys);
  ASSERT_TRUE(audit::GenerateKeys(keys + "/hmac.key", keys + "/sign.key", keys + "/sign.pub").ok());
  GatewayConfigFiles files = Files(groningen->address(), "5d", "");
  absl::StrAppend(&files.extra_gateway_yaml, "audit:\n  db_path: ", keys, "/audit.db\n",
                  "  hmac_key_file: ", keys, "/hmac.key\n  signing_key_file: ", keys,
                  "/sign.key\n  max_db_bytes: 65536\n");
  auto gw = StartGateway(files);
  ASSERT_NE(gw, nullptr);
  auto verhuizen = ExchangeStubFor(gw->address(), "verhuizen");

  std::vector<std::string> acknowledged;
  Envelope refused;
  for (int i = 0; i < 5000 && refused.message_id().empty(); ++i) {
    Envelope e = Verhuismelding("gemeente:0014");
    Receipt r;
    grpc::Status s = SendMelding(*verhuizen, e, &r);
    if (s.ok()) {
      acknowledged.push_back(e.message_id());
    } else {
      ASSERT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
      refused = e;
    }
  }
  ASSERT_FALSE(refused.message_id().empty()) << "the audit database never filled up";
  ASSERT_FALSE(acknowledged.empty());

  EXPECT_TRUE(groningen->WaitForIds(acknowledged, absl::Seconds(60)));
  auto status = GetStatus(*verhuizen, refused.message_id());
  EXPECT_EQ(status.status().code(), absl::StatusCode::kNotFound) << status.status();
  // Delivery of everything acknowledged is done; the refused one never went out.
  for (const auto& d : groningen->delivered()) {
    EXPECT_NE(d.envelope.message_id(), refused.message_id());
  }
  std::filesystem::remove_all(keys);
}

}  // namespace
}  // namespace knooppunt::testing
