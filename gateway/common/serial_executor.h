// A thread of its own that runs closures one at a time, in the order they were given.
//
// Why: a group-commit writer (the melding store, the audit log) must not run its callers'
// completions itself — they finish gRPC calls and take other modules' locks, and while they
// run, the next batch's fsync would wait. Handing them here lets the writer start the next
// transaction at once, while completions keep their submission order.
//
// Guarantees: closures run in Run() order, on one thread, never on the caller's thread from
// within Run(); the destructor runs everything already given, then joins. Thread-safe.
#ifndef KNOOPPUNT_GATEWAY_COMMON_SERIAL_EXECUTOR_H_
#define KNOOPPUNT_GATEWAY_COMMON_SERIAL_EXECUTOR_H_

#include <deque>
#include <thread>

#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace knooppunt {

class SerialExecutor {
 public:
  SerialExecutor();
  ~SerialExecutor();
  SerialExecutor(const SerialExecutor&) = delete;
  SerialExecutor& operator=(const SerialExecutor&) = delete;

  void Run(absl::AnyInvocable<void() &&> closure);

 private:
  void Loop();

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void() &&>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace knooppunt

#endif  // KNOOPPUNT_GATEWAY_COMMON_SERIAL_EXECUTOR_H_
