#include "gateway/store/sqlite_message_store.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/store/message_store_contract.h"
#include "tests/testing/small_filesystem.h"

namespace knooppunt::store {
namespace {

using contract::AppendSync;
using contract::kId1;
using contract::Record;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "store-test.XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The MessageStore contract (message_store_contract.h) on a fresh file per test.
struct SqliteBackend {
  using Store = SqliteMessageStore;
  static constexpr const char* kName = "Sqlite";
  absl::StatusOr<std::unique_ptr<Store>> Open(const contract::StoreLimits& limits) {
    SqliteStoreOptions options{dir.File("m.db")};
    options.max_pending_messages = limits.max_pending_messages;
    options.max_pending_bytes = limits.max_pending_bytes;
    options.retain_final = limits.retain_final;
    options.purge_every = limits.purge_every;
    return SqliteMessageStore::Open(options);
  }
  std::string SkipReason() { return ""; }
  TempDir dir;
};

}  // namespace
// (gtest names the suite unqualified: instantiated in its namespace.)
namespace contract {
INSTANTIATE_TYPED_TEST_SUITE_P(Sqlite, MessageStoreContract, ::testing::Types<SqliteBackend>,
                               BackendName);
}  // namespace contract
namespace {

// LoadPending: everything still to deliver, in seq order (what ClaimWork hands over once).
TEST(SqliteMessageStore, LoadPendingListsWhatIsStillToDeliver) {
  TempDir dir;
  auto store = SqliteMessageStore::Open({dir.File("m.db")});
  ASSERT_TRUE(store.ok()) << store.status();
  auto a = AppendSync(**store, Record(kId1));
  auto b = AppendSync(**store, Record(contract::kId2));
  ASSERT_TRUE(a.ok() && b.ok());
  MessageStore& s = **store;
  ASSERT_TRUE(contract::DoneSync([&](MessageStore::Done d) {
                s.MarkDelivered(a->record.seq, absl::Now(), 1, std::move(d));
              }).ok());
  auto pending = (*store)->LoadPending();
  ASSERT_TRUE(pending.ok());
  ASSERT_EQ(pending->size(), 1u);
  EXPECT_EQ((*pending)[0].seq, b->record.seq);
  EXPECT_EQ((*pending)[0].envelope, "envelope-hello");
}

TEST(SqliteMessageStore, RealDiskFullRefusesAppendsAndLosesNothingAcknowledged) {
  TempDir dir;
  auto fs = knooppunt::testing::SmallFileSystem::Mount(dir.File(""), 4);
  if (fs == nullptr) GTEST_SKIP() << "cannot loop-mount here (not root or no loop device)";
  const std::string path = fs->path() + "/m.db";
  std::set<std::string> acknowledged;
  {
    auto store = SqliteMessageStore::Open({path});
    ASSERT_TRUE(store.ok()) << store.status();
    absl::Status failed;
    for (int i = 0; i < 100000 && failed.ok(); ++i) {
      const std::string id = absl::StrFormat("00000000-0000-4000-8000-%012d", i);
      MessageRecord r = Record(id, std::string(8000, 'x') + id);
      auto res = AppendSync(**store, r);
      if (res.ok()) {
        acknowledged.insert(id);
      } else {
        failed = res.status();
      }
    }
    EXPECT_EQ(failed.code(), absl::StatusCode::kUnavailable) << failed;
    EXPECT_GT(acknowledged.size(), 10u);
  }
  {
    auto store = SqliteMessageStore::Open({path});
    ASSERT_TRUE(store.ok()) << store.status();
    auto pending = (*store)->LoadPending();
    ASSERT_TRUE(pending.ok()) << pending.status();
    std::set<std::string> found;
    for (const MessageRecord& r : *pending) found.insert(r.message_id);
    EXPECT_EQ(found, acknowledged);
  }
  ASSERT_TRUE(fs->RemountReadOnly());
  auto store = SqliteMessageStore::Open({path});
  if (store.ok()) {
    auto res = AppendSync(**store, Record("ffffffff-0000-4000-8000-000000000001"));
    EXPECT_FALSE(res.ok());
  }
}

TEST(SqliteMessageStore, SecondWriterIsRefusedAtOnce) {
  TempDir dir;
  const std::string path = dir.File("m.db");
  auto store = SqliteMessageStore::Open({path});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE(AppendSync(**store, Record(kId1)).ok());
  const absl::Time before = absl::Now();
  auto second = SqliteMessageStore::Open({path});
  ASSERT_FALSE(second.ok());
  EXPECT_LT(absl::Now() - before, absl::Seconds(2)) << "no waiting on SQLite's busy timeout";
  EXPECT_EQ(second.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(second.status().message()),
              ::testing::HasSubstr("locked by another process"));
  store->reset();
  auto third = SqliteMessageStore::Open({path});
  ASSERT_TRUE(third.ok()) << third.status();
  auto pending = (*third)->LoadPending();
  ASSERT_TRUE(pending.ok());
  EXPECT_EQ(pending->size(), 1u);
}

}  // namespace
}  // namespace knooppunt::store
