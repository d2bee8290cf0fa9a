// Step 5 of a message's path: audit. Where every decision is recorded. The gateway's default
// is the tamper-evident AuditLog (audit_log.h); JsonLinesDecisionLog is an extra operational
// sink (not tamper-evident), and TeeDecisionLog writes to both.
//
// Guarantees: Record() returns OK only once the record has been handed to durable output
// (written and flushed); a non-OK status means it was not, and the caller must refuse the
// exchange — nothing passes the gateway unrecorded. Records hold no payload and no BSN.
// Implementations are thread-safe.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_DECISION_LOG_H_
#define KNOOPPUNT_GATEWAY_AUDIT_DECISION_LOG_H_

#include <cstdio>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/descriptor.h"
#include "knooppunt/audit/v1/decision_record.pb.h"

namespace knooppunt::audit {

class DecisionLog {
 public:
  virtual ~DecisionLog() = default;
  virtual absl::Status Record(const v1::DecisionRecord& record) = 0;
  // The same without waiting: `done` gets the status once the record is written or not,
  // possibly on another thread. With an empty `done` the record is best effort (denials,
  // outcomes, deliveries: nothing waits for it) and a log may commit it lazily, with the next
  // record somebody waits for. The default writes synchronously.
  virtual void RecordAsync(const v1::DecisionRecord& record,
                           std::function<void(absl::Status)> done) {
    absl::Status s = Record(record);
    if (done) done(std::move(s));
  }
  // Adds the data subjects of a payload of message type `type` (serialized `payload`) to
  // `record` as pseudonyms. A log that keeps no data subjects adds nothing.
  virtual void AddDataSubjects(const google::protobuf::Descriptor* type,
                               absl::string_view payload, v1::DecisionRecord* record) const {}
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

// Records to a primary log (its status decides) and copies to a secondary one (best effort).
class TeeDecisionLog final : public DecisionLog {
 public:
  TeeDecisionLog(std::unique_ptr<DecisionLog> primary, std::unique_ptr<DecisionLog> secondary)
      : primary_(std::move(primary)), secondary_(std::move(secondary)) {}
  absl::Status Record(const v1::DecisionRecord& record) override {
    absl::Status s = primary_->Record(record);
    if (s.ok()) secondary_->Record(record).IgnoreError();
    return s;
  }
  void RecordAsync(const v1::DecisionRecord& record,
                   std::function<void(absl::Status)> done) override {
    if (!done) {  // best effort: keep it lazy in the primary; the copy need not wait for it
      primary_->RecordAsync(record, nullptr);
      secondary_->Record(record).IgnoreError();
      return;
    }
    primary_->RecordAsync(record, [secondary = secondary_.get(), copy = record,
                                   done = std::move(done)](absl::Status s) {
      if (s.ok()) secondary->Record(copy).IgnoreError();
      done(std::move(s));
    });
  }
  void AddDataSubjects(const google::protobuf::Descriptor* type, absl::string_view payload,
                       v1::DecisionRecord* record) const override {
    primary_->AddDataSubjects(type, payload, record);
  }

 private:
  std::unique_ptr<DecisionLog> primary_;
  std::unique_ptr<DecisionLog> secondary_;
};

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_DECISION_LOG_H_
