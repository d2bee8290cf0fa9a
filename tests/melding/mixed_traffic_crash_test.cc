// The gateway killed (kill -9) at random moments during mixed traffic — bevragingen forwarded
// to the BRP's endpoint, meldingen sent to Groningen, GetStatus polls — three times, restarted
// on the same files each time (bad-input and fault catalogue, SECURITY.md). Expected: no
// crash at restart, no accepted melding lost, no unaudited exchange:
//  - every Send that got a Receipt is delivered in the end (the endpoint received it and
//    GetStatus says DELIVERED) and its allowed decision is in the audit database;
//  - every bevraging that got an OK answer has its allowed decision in the audit database,
//    and so has every bevraging the BRP's endpoint received (nothing forwarded unrecorded);
//  - every melding delivered has its Send decision or, recovered after a crash, a "resumed"
//    record; nothing delivered that was never sent;
//  - the audit database's hash chain and checkpoints verify (AuditReader::Verify).
// The kill moments come from a seeded generator; the seed is printed, and
// KNOOPPUNT_CRASH_SEED=<seed> replays the same choices. No timing is asserted: waits are
// bounded with generous deadlines.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/client/envelope.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gtest/gtest.h"
#include "knooppunt/audit/v1/decision_record.pb.h"
#include "tests/melding/melding_fixture.h"
#include "tests/testing/test_endpoint.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;
using exchange::v1::Receipt;

constexpr int kKills = 3;
constexpr int kRequesters = 3;  // Groningen → BRP bevragingen
constexpr int kSenders = 3;     // Verhuizen → Groningen meldingen
// A round's kill comes after a random number (up to this) of OK answers in that round, plus
// a random delay (up to kMaxDelayMs): early kills land while the previous crash's meldingen
// are being recovered, later ones in the middle of steady traffic.
constexpr int kMaxProgress = 400;
constexpr int kMaxDelayMs = 500;

uint32_t Seed() {
  const char* env = std::getenv("KNOOPPUNT_CRASH_SEED");
  uint32_t seed = 0;
  if (env != nullptr && absl::SimpleAtoi(env, &seed)) return seed;
  return std::random_device{}();
}

Envelope PersoonVraag() {
  gemeente::brp::v1::PersoonVraag vraag;
  vraag.set_bsn("999993653");
  return client::NewEnvelope(std::string(kGroningenOin), std::string(kBrpOin), "BRP-bevraging",
                             vraag);
}

// What the clients saw, over all rounds.
struct Traffic {
  absl::Mutex mu;
  std::set<std::string> sent;                 // every melding id a sender tried
  std::vector<std::string> acknowledged;      // Send answered with a Receipt
  std::vector<std::string> answered;          // bevraging answered OK
  int round_ok = 0;                           // OK answers in the current round
};

// Runs mixed traffic against `address` until `stop`.
std::vector<std::thread> StartTraffic(const std::string& address, Traffic* traffic,
                                      std::atomic<bool>* stop) {
  std::vector<std::thread> threads;
  for (int t = 0; t < kRequesters; ++t) {
    threads.emplace_back([address, traffic, stop] {
      auto stub = ExchangeStubFor(address, "groningen");
      while (!stop->load()) {
        const Envelope request = PersoonVraag();
        Envelope reply;
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(10)));
        if (stub->Request(&context, request, &reply).ok()) {
          absl::MutexLock lock(&traffic->mu);
          traffic->answered.push_back(request.message_id());
          ++traffic->round_ok;
        } else {
          absl::SleepFor(absl::Milliseconds(20));  // gateway gone: do not spin
        }
      }
    });
  }
  for (int t = 0; t < kSenders; ++t) {
    threads.emplace_back([address, traffic, stop] {
      auto stub = ExchangeStubFor(address, "verhuizen");
      while (!stop->load()) {
        const Envelope e = Verhuismelding("gemeente:0014", "", "mixed traffic");
        {
          absl::MutexLock lock(&traffic->mu);
          traffic->sent.insert(e.message_id());
        }
        Receipt receipt;
        if (SendMelding(*stub, e, &receipt, absl::Seconds(10)).ok()) {
          absl::MutexLock lock(&traffic->mu);
          traffic->acknowledged.push_back(e.message_id());
          ++traffic->round_ok;
        } else {
          absl::SleepFor(absl::Milliseconds(20));
        }
      }
    });
  }
  // Status polls of acknowledged meldingen (the answers do not matter here: the load does).
  threads.emplace_back([address, traffic, stop] {
    auto stub = ExchangeStubFor(address, "verhuizen");
    size_t i = 0;
    while (!stop->load()) {
      std::string id;
      {
        absl::MutexLock lock(&traffic->mu);
        if (!traffic->acknowledged.empty()) {
          id = traffic->acknowledged[i++ % traffic->acknowledged.size()];
        }
      }
      if (id.empty() || !GetStatus(*stub, id).ok()) absl::SleepFor(absl::Milliseconds(20));
    }
  });
  return threads;
}

TEST(MixedTrafficCrash, Kill9AtRandomMomentsLosesNoMeldingAndLeavesNoExchangeUnaudited) {
  const uint32_t seed = Seed();
  std::printf("mixed traffic crash test: seed %u (KNOOPPUNT_CRASH_SEED=%u to replay)\n", seed,
              seed);
  SCOPED_TRACE(absl::StrCat("KNOOPPUNT_CRASH_SEED=", seed));
  std::mt19937 rng(seed);

  auto groningen = DeliverEndpoint::Start("groningen");
  ASSERT_NE(groningen, nullptr);
  absl::StatusOr<std::unique_ptr<TestEndpoint>> brp = TestEndpoint::Start("brp");
  ASSERT_TRUE(brp.ok()) << brp.status();

  GatewayConfigFiles files = MeldingFiles(groningen->address());
  std::vector<TestOrganisation> orgs = DevPkiOrganisations();
  SetEndpoint(&orgs, kGroningenOin, groningen->address());
  SetEndpoint(&orgs, kBrpOin, (*brp)->address());
  files.registry_yaml = RegistryYaml(orgs);
  // The tamper-evident audit log next to gateway.yaml (relative paths resolve there).
  absl::StrAppend(&files.extra_gateway_yaml,
                  "audit:\n"
                  "  db_path: audit.db\n"
                  "  hmac_key_file: hmac.key\n"
                  "  signing_key_file: sign.key\n"
                  "  checkpoint_every_records: 50\n"
                  "  checkpoint_every: 1s\n");
  MeldingGateway gw(files);
  ASSERT_TRUE(audit::GenerateKeys(gw.dir() + "/hmac.key", gw.dir() + "/sign.key",
                                  gw.dir() + "/sign.pub")
                  .ok());

  Traffic traffic;
  for (int round = 1; round <= kKills; ++round) {
    ASSERT_TRUE(gw.Start()) << "round " << round << ": the gateway did not come back\n"
                            << gw.Stderr();
    {
      absl::MutexLock lock(&traffic.mu);
      traffic.round_ok = 0;
    }
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads = StartTraffic(gw.address(), &traffic, &stop);
    // Traffic is flowing (bounded wait), then the kill comes at a random moment.
    const int progress = std::uniform_int_distribution<int>(1, kMaxProgress)(rng);
    const int delay_ms = std::uniform_int_distribution<int>(0, kMaxDelayMs)(rng);
    {
      absl::MutexLock lock(&traffic.mu);
      traffic.mu.AwaitWithTimeout(
          absl::Condition(
              +[](std::pair<Traffic*, int>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return a->first->round_ok >= a->second;
              },
              std::make_unique<std::pair<Traffic*, int>>(&traffic, progress).get()),
          absl::Seconds(60));
    }
    absl::SleepFor(absl::Milliseconds(delay_ms));
    gw.Kill9();
    stop = true;
    for (std::thread& t : threads) t.join();
    absl::MutexLock lock(&traffic.mu);
    std::printf("round %d: killed %d ms after %d answers (%d answered by the kill); %zu "
                "receipts, %zu bevragingen answered, %d deliveries so far\n",
                round, delay_ms, progress, traffic.round_ok, traffic.acknowledged.size(),
                traffic.answered.size(), groningen->calls());
    ASSERT_GE(traffic.round_ok, progress) << "round " << round << ": traffic did not flow";
  }

  // Back once more on the same files: everything acknowledged arrives.
  ASSERT_TRUE(gw.Start()) << gw.Stderr();
  std::vector<std::string> acked, answered;
  std::set<std::string> sent;
  {
    absl::MutexLock lock(&traffic.mu);
    acked = traffic.acknowledged;
    answered = traffic.answered;
    sent = traffic.sent;
  }
  EXPECT_TRUE(groningen->WaitForIds(acked, absl::Seconds(120)))
      << "acknowledged meldingen missing after the restarts";
  {
    auto stub = ExchangeStubFor(gw.address(), "verhuizen");
    for (const std::string& id : acked) {
      absl::StatusOr<exchange::v1::DeliveryStatus> status =
          WaitForState(*stub, id, exchange::v1::DELIVERY_STATE_DELIVERED, absl::Seconds(30));
      EXPECT_TRUE(status.ok()) << id << ": " << status.status();
    }
  }
  ASSERT_TRUE(gw.Stop()) << gw.Stderr();

  // The audit database, read as an auditor would.
  absl::StatusOr<std::unique_ptr<audit::AuditReader>> reader =
      audit::AuditReader::Open(gw.dir() + "/audit.db");
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::set<std::string> request_allowed, send_allowed, resumed;
  ASSERT_TRUE((*reader)
                  ->Query(audit::QueryFilter{},
                          [&](const audit::AuditEntry& entry) {
                            const audit::v1::DecisionRecord& r = entry.record;
                            if (r.event() == "decision" &&
                                r.decision() == audit::v1::DECISION_ALLOWED) {
                              (r.operation() == "Send" ? send_allowed : request_allowed)
                                  .insert(r.message_id());
                            } else if (r.event() == "resumed") {
                              resumed.insert(r.message_id());
                            }
                            return true;
                          })
                  .ok());
  for (const std::string& id : answered) {
    EXPECT_EQ(request_allowed.count(id), 1u) << "bevraging answered OK without a record: " << id;
  }
  int forwarded = 0;
  for (const EndpointCall& call : (*brp)->calls()) {
    ++forwarded;
    EXPECT_EQ(request_allowed.count(call.request.message_id()), 1u)
        << "bevraging forwarded without a record: " << call.request.message_id();
  }
  for (const std::string& id : acked) {
    EXPECT_EQ(send_allowed.count(id), 1u) << "melding acknowledged without a record: " << id;
  }
  std::set<std::string> delivered;
  for (const auto& d : groningen->delivered()) delivered.insert(d.envelope.message_id());
  for (const std::string& id : delivered) {
    EXPECT_EQ(sent.count(id), 1u) << "delivered something never sent: " << id;
    EXPECT_TRUE(send_allowed.count(id) + resumed.count(id) > 0) << "delivered unrecorded: " << id;
  }
  absl::StatusOr<std::unique_ptr<audit::SignatureVerifier>> key =
      audit::SignatureVerifier::FromPemFile(gw.dir() + "/sign.pub");
  ASSERT_TRUE(key.ok()) << key.status();
  absl::StatusOr<audit::VerifyResult> verified = (*reader)->Verify(**key);
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_TRUE(verified->intact) << "seq " << verified->first_bad_seq << ": " << verified->problem;
  EXPECT_EQ(verified->unsigned_tail, 0) << "the last shutdown signs a checkpoint";
  std::printf("%zu receipts, %zu bevragingen answered (%d forwarded), %zu meldingen delivered, "
              "%zu resumed records, %lld audit records, %lld checkpoints: chain intact\n",
              acked.size(), answered.size(), forwarded, delivered.size(), resumed.size(),
              static_cast<long long>(verified->records),
              static_cast<long long>(verified->checkpoints));
}

}  // namespace
}  // namespace knooppunt::testing
