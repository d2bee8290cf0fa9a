// Data subjects of a payload, for the audit log: the BSNs in it, as keyed pseudonyms.
//
// Guarantees: Of() returns one pseudonym (audit_crypto.h Pseudonym) per distinct non-empty
// value of every field marked (knooppunt.options.v1.personal).bsn, at any depth (repeated and
// map values included), sorted. Which paths lead to BSN fields is computed once per message
// type; a payload whose type reaches no BSN field is never parsed. A payload that does not
// parse yields the subjects found before the error (the exchange itself is judged elsewhere).
// No BSN in clear leaves this module. Thread-safe.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_DATA_SUBJECTS_H_
#define KNOOPPUNT_GATEWAY_AUDIT_DATA_SUBJECTS_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/message.h"

namespace knooppunt::audit {

class DataSubjects {
 public:
  explicit DataSubjects(std::string hmac_key) : key_(std::move(hmac_key)) {}

  // `type` is the payload's message type; `bytes` its serialized value.
  std::vector<std::string> Of(const google::protobuf::Descriptor* type,
                              absl::string_view bytes) const;
  // Of an already parsed message.
  std::vector<std::string> OfMessage(const google::protobuf::Message& message) const;

  // Whether the type reaches a BSN field (cached).
  bool HasBsnFields(const google::protobuf::Descriptor* type) const;

  std::string PseudonymOf(absl::string_view bsn) const;

 private:
  bool ComputeLocked(const google::protobuf::Descriptor* type) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Collect(const google::protobuf::Message& m, std::vector<std::string>* bsns) const;

  const std::string key_;
  mutable absl::Mutex mu_;
  // type → reaches a BSN field. Entries are never removed; descriptors outlive this object.
  mutable absl::flat_hash_map<const google::protobuf::Descriptor*, bool> reaches_
      ABSL_GUARDED_BY(mu_);
  mutable google::protobuf::DynamicMessageFactory dynamic_factory_ ABSL_GUARDED_BY(mu_);
};

// Whether a field is marked as holding a BSN.
bool IsBsnField(const google::protobuf::FieldDescriptor* field);

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_DATA_SUBJECTS_H_
