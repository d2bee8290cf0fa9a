#include "gateway/common/serial_executor.h"

#include <utility>

namespace knooppunt {

SerialExecutor::SerialExecutor() : thread_([this] { Loop(); }) {}

SerialExecutor::~SerialExecutor() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

void SerialExecutor::Run(absl::AnyInvocable<void() &&> closure) {
  absl::MutexLock lock(&mu_);
  queue_.push_back(std::move(closure));
}

void SerialExecutor::Loop() {
  std::deque<absl::AnyInvocable<void() &&>> ready;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](SerialExecutor* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // stopping, and everything given has run
      ready.swap(queue_);
    }
    // Taken all at once: one lock round trip per burst, not per closure.
    for (auto& closure : ready) std::move(closure)();
    ready.clear();
  }
}

}  // namespace knooppunt
