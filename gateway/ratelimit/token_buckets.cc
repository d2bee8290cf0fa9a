#include "gateway/ratelimit/token_buckets.h"

#include <algorithm>
#include <cmath>

namespace knooppunt::ratelimit {

absl::Duration TokenBuckets::TryTake(absl::string_view key, const RateSpec& rate, absl::Time now) {
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (inserted) {
    b.tokens = rate.burst;
  } else if (now > b.updated) {
    b.tokens = std::min(rate.burst, b.tokens + absl::ToDoubleSeconds(now - b.updated) * rate.per_second);
  } else {
    b.tokens = std::min(rate.burst, b.tokens);
  }
  b.updated = std::max(b.updated, now);
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return absl::ZeroDuration();
  }
  // Rounded up to whole milliseconds, at least one: the caller retries no earlier.
  const double wait_ms = std::ceil((1.0 - b.tokens) / rate.per_second * 1000.0);
  return absl::Milliseconds(std::max(1.0, wait_ms));
}

size_t TokenBuckets::size() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

}  // namespace knooppunt::ratelimit
