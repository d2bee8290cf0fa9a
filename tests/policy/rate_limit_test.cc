#include "gateway/ratelimit/token_buckets.h"

#include "gtest/gtest.h"

namespace knooppunt::ratelimit {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1'800'000'000);

TEST(TokenBucketsTest, BurstThenRefillAtTheRate) {
  TokenBuckets buckets;
  const RateSpec rate{/*per_second=*/2, /*burst=*/3};
  for (int i = 0; i < 3; ++i) EXPECT_EQ(buckets.TryTake("a", rate, kT0), absl::ZeroDuration());
  // Empty: the next token is 0.5 s away.
  EXPECT_EQ(buckets.TryTake("a", rate, kT0), absl::Milliseconds(500));
  EXPECT_EQ(buckets.TryTake("a", rate, kT0 + absl::Milliseconds(200)), absl::Milliseconds(300));
  EXPECT_EQ(buckets.TryTake("a", rate, kT0 + absl::Milliseconds(500)), absl::ZeroDuration());
  // Refill never exceeds the burst.
  const absl::Time later = kT0 + absl::Hours(1);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(buckets.TryTake("a", rate, later), absl::ZeroDuration());
  EXPECT_GT(buckets.TryTake("a", rate, later), absl::ZeroDuration());
}

TEST(TokenBucketsTest, KeysAreIndependent) {
  TokenBuckets buckets;
  const RateSpec rate{1, 1};
  EXPECT_EQ(buckets.TryTake("agreement/sender-1", rate, kT0), absl::ZeroDuration());
  EXPECT_GT(buckets.TryTake("agreement/sender-1", rate, kT0), absl::ZeroDuration());
  EXPECT_EQ(buckets.TryTake("agreement/sender-2", rate, kT0), absl::ZeroDuration());
  EXPECT_EQ(buckets.size(), 2u);
}

TEST(TokenBucketsTest, ClockGoingBackwardsAddsNothing) {
  TokenBuckets buckets;
  const RateSpec rate{1, 1};
  EXPECT_EQ(buckets.TryTake("a", rate, kT0), absl::ZeroDuration());
  EXPECT_GT(buckets.TryTake("a", rate, kT0 - absl::Seconds(10)), absl::ZeroDuration());
  EXPECT_EQ(buckets.TryTake("a", rate, kT0 + absl::Seconds(1)), absl::ZeroDuration());
}

TEST(TokenBucketsTest, WaitIsRoundedUpToWholeMilliseconds) {
  TokenBuckets buckets;
  const RateSpec rate{3, 1};
  EXPECT_EQ(buckets.TryTake("a", rate, kT0), absl::ZeroDuration());
  EXPECT_EQ(buckets.TryTake("a", rate, kT0), absl::Milliseconds(334));
}

}  // namespace
}  // namespace knooppunt::ratelimit
