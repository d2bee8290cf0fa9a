// Holds the policy in force. Readers take a reference to the current snapshot and keep it for
// the whole exchange; Replace() installs a new one atomically, without blocking readers.
#ifndef KNOOPPUNT_GATEWAY_POLICY_POLICY_STORE_H_
#define KNOOPPUNT_GATEWAY_POLICY_POLICY_STORE_H_

#include <atomic>
#include <memory>

#include "gateway/policy/policy_snapshot.h"

namespace knooppunt::policy {

class PolicyStore {
 public:
  explicit PolicyStore(std::shared_ptr<const PolicySnapshot> initial)
      : current_(std::move(initial)) {}

  std::shared_ptr<const PolicySnapshot> Current() const { return std::atomic_load(&current_); }
  void Replace(std::shared_ptr<const PolicySnapshot> next) {
    std::atomic_store(&current_, std::move(next));
  }

 private:
  std::shared_ptr<const PolicySnapshot> current_;
};

}  // namespace knooppunt::policy

#endif  // KNOOPPUNT_GATEWAY_POLICY_POLICY_STORE_H_
