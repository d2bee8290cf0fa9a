// kill -9 during a burst: every message the gateway acknowledged (Receipt) is delivered after
// a restart on the same database; duplicates only as at-least-once allows, recognisable by
// message_id; nothing delivered that was not sent, and nothing delivered unrecorded.
#include <atomic>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "knooppunt/audit/v1/decision_record.pb.h"
#include "tests/melding/melding_fixture.h"
#include "tests/testing/test_pki.h"

namespace knooppunt::testing {
namespace {

using exchange::v1::Envelope;
using exchange::v1::Receipt;

TEST(MeldingCrash, Kill9DuringABurstLosesNoAcknowledgedMessage) {
  auto groningen = DeliverEndpoint::Start("groningen");
  ASSERT_NE(groningen, nullptr);
  MeldingGateway gw(MeldingFiles(groningen->address()));
  ASSERT_TRUE(gw.Start());

  constexpr int kSenders = 32;
  constexpr int kTotal = 3000;
  std::mt19937 rng(std::random_device{}());
  const size_t kill_after = std::uniform_int_distribution<size_t>(200, 1500)(rng);

  absl::Mutex mu;
  std::vector<std::string> acknowledged;  // ids with a Receipt
  std::set<std::string> sent;             // every id a sender tried
  std::atomic<int> next{0};
  const std::string address = gw.address();
  std::vector<std::thread> senders;
  for (int t = 0; t < kSenders; ++t) {
    senders.emplace_back([&] {
      auto stub = ExchangeStubFor(address, "verhuizen");
      for (int i = next++; i < kTotal; i = next++) {
        Envelope e = Verhuismelding("gemeente:0014", "", absl::StrCat("burst ", i));
        {
          absl::MutexLock lock(&mu);
          sent.insert(e.message_id());
        }
        Receipt r;
        if (SendMelding(*stub, e, &r, absl::Seconds(30)).ok()) {
          absl::MutexLock lock(&mu);
          acknowledged.push_back(e.message_id());
        }
      }
    });
  }
  {
    absl::MutexLock lock(&mu);
    mu.AwaitWithTimeout(absl::Condition(
                            +[](std::pair<std::vector<std::string>*, size_t>* a) {
                              return a->first->size() >= a->second;
                            },
                            std::make_unique<std::pair<std::vector<std::string>*, size_t>>(
                                &acknowledged, kill_after)
                                .get()),
                        absl::Seconds(120));
  }
  gw.Kill9();
  for (std::thread& t : senders) t.join();
  std::vector<std::string> acked;
  {
    absl::MutexLock lock(&mu);
    acked = acknowledged;
  }
  ASSERT_GE(acked.size(), kill_after) << "the burst was too slow to reach the kill point";
  std::printf("killed after %zu receipts; %zu acknowledged in all, %zu sent; %zu delivered "
              "before the kill (incl. retries)\n",
              kill_after, acked.size(), sent.size(), groningen->delivered().size());

  ASSERT_TRUE(gw.Start()) << gw.Stderr();
  EXPECT_TRUE(groningen->WaitForIds(acked, absl::Seconds(180)))
      << "acknowledged messages missing after restart";

  std::map<std::string, int> copies;
  for (const auto& d : groningen->delivered()) ++copies[d.envelope.message_id()];
  int duplicates = 0;
  for (const auto& [id, n] : copies) {
    EXPECT_EQ(sent.count(id), 1u) << "delivered something never sent: " << id;
    duplicates += n - 1;
  }
  for (const std::string& id : acked) EXPECT_GE(copies[id], 1) << id;
  std::printf("%zu distinct delivered, %d duplicate deliveries (at-least-once)\n", copies.size(),
              duplicates);

  // Nothing went out unrecorded: every delivered message has its Send decision on record or,
  // recovered from the store after the crash (whose decision record may have been lost
  // between the two concurrent commits), a "resumed" record written before delivery resumed.
  // (This gateway's decision log is decisions.jsonl in its directory, each line written and
  // flushed before the record's `done`; the operational log is its stderr.)
  int64_t pending_at_restart = -1;
  for (absl::string_view line : absl::StrSplit(gw.Stderr(), '\n')) {
    google::protobuf::Struct log;
    if (absl::StrContains(line, "\"melding_store_open\"") &&
        google::protobuf::util::JsonStringToMessage(std::string(line), &log).ok()) {
      pending_at_restart = std::stoll(log.fields().at("pending").string_value());
    }
  }
  std::set<std::string> on_record;
  int resumed = 0;
  for (absl::string_view line : absl::StrSplit(ReadFileOrDie(gw.dir() + "/decisions.jsonl"), '\n')) {
    audit::v1::DecisionRecord r;
    google::protobuf::util::JsonParseOptions lenient;
    lenient.ignore_unknown_fields = true;
    if (!google::protobuf::util::JsonStringToMessage(std::string(line), &r, lenient).ok()) continue;
    if (r.event() == "resumed") {
      ++resumed;
      on_record.insert(r.message_id());
    } else if (r.event() == "decision" && r.operation() == "Send" &&
               r.decision() == audit::v1::DECISION_ALLOWED) {
      on_record.insert(r.message_id());
    }
  }
  EXPECT_EQ(resumed, pending_at_restart) << "one resumed record per recovered message";
  for (const auto& [id, n] : copies) EXPECT_EQ(on_record.count(id), 1u) << "unrecorded: " << id;

  // Idempotency survived the crash: resending an acknowledged message is a duplicate.
  auto stub = ExchangeStubFor(gw.address(), "verhuizen");
  auto status = GetStatus(*stub, acked.front());
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_TRUE(gw.Stop()) << gw.Stderr();
}

}  // namespace
}  // namespace knooppunt::testing
