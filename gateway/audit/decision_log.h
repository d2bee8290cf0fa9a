// Step 5 of a message's path: audit. Where every decision is recorded.
//
// Guarantees: Record() returns OK only once the record has been handed to durable output
// (written and flushed); a non-OK status means it was not, and the caller must refuse the
// exchange — nothing passes the gateway unrecorded. Records hold no payload and no BSN.
// Implementations are thread-safe.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_DECISION_LOG_H_
#define KNOOPPUNT_GATEWAY_AUDIT_DECISION_LOG_H_

#include <cstdio>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "knooppunt/audit/v1/decision_record.pb.h"

namespace knooppunt::audit {

class DecisionLog {
 public:
  virtual ~DecisionLog() = default;
  virtual absl::Status Record(const v1::DecisionRecord& record) = 0;
};

// One JSON object per line, appended to a file (or standard error when path is empty).
class JsonLinesDecisionLog final : public DecisionLog {
 public:
  static absl::StatusOr<std::unique_ptr<JsonLinesDecisionLog>> Open(const std::string& path);
  ~JsonLinesDecisionLog() override;

  absl::Status Record(const v1::DecisionRecord& record) override;

 private:
  explicit JsonLinesDecisionLog(FILE* out, bool owned) : out_(out), owned_(owned) {}
  absl::Mutex mu_;
  FILE* const out_;
  const bool owned_;
};

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_DECISION_LOG_H_
