// Part of step 3 of a message's path (decide): rate limits per agreement, as token buckets.
//
// Guarantees: TryTake() takes one token from the bucket named by `key` and returns zero, or,
// when the bucket is empty, takes nothing and returns how long until a token is there. A
// bucket starts full. Buckets are keyed by the caller (agreement id, and the sender for
// per-sender limits), not by policy version, so a reload that keeps a limit keeps its state;
// a changed rate applies from the next call. Thread-safe; the clock is the caller's, so tests
// are deterministic.
#ifndef KNOOPPUNT_GATEWAY_RATELIMIT_TOKEN_BUCKETS_H_
#define KNOOPPUNT_GATEWAY_RATELIMIT_TOKEN_BUCKETS_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace knooppunt::ratelimit {

struct RateSpec {
  double per_second = 0;  // > 0
  double burst = 1;       // >= 1
};

class TokenBuckets {
 public:
  // Zero duration: allowed. Otherwise the time until the next token.
  absl::Duration TryTake(absl::string_view key, const RateSpec& rate, absl::Time now);

  size_t size() const;

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time updated;
  };
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace knooppunt::ratelimit

#endif  // KNOOPPUNT_GATEWAY_RATELIMIT_TOKEN_BUCKETS_H_
