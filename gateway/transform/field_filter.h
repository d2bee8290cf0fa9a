// Step 4 of a message's path: transform. Data minimisation on payloads: an agreement's field
// list, compiled once per message type when the policy is loaded, applied to each payload.
//
// Guarantees:
//  - FieldPlan::Compile() accepts only paths that exist in the message type (through nested
//    and repeated messages and into map values); an error names the offending list entry.
//  - Apply() with a plan that lists fields parses the payload as the plan's type (a payload
//    that does not parse is INVALID_ARGUMENT), removes every field not listed and every
//    field unknown to the type, at any depth, and re-serialises it. `removed` receives the
//    path of each removed field once ("ouders", "naam.voorvoegsel", "[unknown 99]"), never a
//    value.
//  - With check_bsn, every field marked (knooppunt.options.v1.personal).bsn that holds a
//    value must pass the 11-proef, else INVALID_ARGUMENT naming the field's path (with list
//    indexes), never its value. BSNs are checked before anything is removed.
//  - A plan that lets all fields pass never touches the payload: Apply() parses only when
//    check_bsn is set and the type has BSN fields, and then leaves the bytes as they came.
//  - Thread-safe: plans are immutable; Apply() allocates on a per-call arena.
// Message types may come from any DescriptorPool (the compiled-in pool, or one built from
// descriptor sets) that outlives the plans compiled against it. Everything a plan needs at
// run time — the tree, which types hold BSN fields, the message prototype — is computed by
// Compile(), so Apply() does no lookups beyond the tree.
#ifndef KNOOPPUNT_GATEWAY_TRANSFORM_FIELD_FILTER_H_
#define KNOOPPUNT_GATEWAY_TRANSFORM_FIELD_FILTER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "knooppunt/config/v1/agreement.pb.h"

namespace knooppunt::transform {

// Which fields of one message (and of the messages inside it) pass.
struct FieldNode;
struct FieldChild;
struct FieldNode {
  bool all = false;  // every field passes, with everything inside it
  std::vector<FieldChild> children;
  const FieldChild* Find(int number) const;
};
struct FieldChild {
  int number = 0;
  std::string name;
  // The field is a map; `node` applies to each entry's value message (the key always passes).
  bool map_value = false;
  FieldNode node;
};

// Whether the type, or a message inside it, has a field marked as BSN.
bool HasBsnFields(const google::protobuf::Descriptor* type);

class FieldPlanData;

class FieldPlan {
 public:
  // Called for a compile error: allow_index is the index of the bad entry in policy.allow(),
  // or -1 when the policy as a whole is wrong; the returned status is passed on.
  using ErrorFn = absl::FunctionRef<absl::Status(int allow_index, absl::string_view message)>;

  static absl::StatusOr<FieldPlan> Compile(const google::protobuf::Descriptor* type,
                                           const config::v1::FieldPolicy& policy, ErrorFn error);
  // A plan that lets every field of `type` pass.
  static FieldPlan All(const google::protobuf::Descriptor* type);

  FieldPlan() = default;
  const google::protobuf::Descriptor* type() const { return type_; }
  bool all() const { return root_ == nullptr || root_->all; }
  bool has_bsn_fields() const { return has_bsn_; }
  // The allowed paths, sorted (for operators and tools); {"*"} when all pass.
  std::vector<std::string> AllowedPaths() const;

 private:
  const google::protobuf::Descriptor* type_ = nullptr;
  std::shared_ptr<const FieldNode> root_;  // null: all pass
  std::shared_ptr<const FieldPlanData> data_;
  bool has_bsn_ = false;
  friend absl::StatusOr<bool> Filter(const FieldPlan&, bool, absl::string_view, std::string*,
                                     std::vector<std::string>*);
};

// Validates and filters `payload` (serialised plan.type()); see the guarantees above. Writes
// the filtered bytes to *filtered and returns true when the plan lists fields; returns false
// (and writes nothing) when the payload passes as it is.
absl::StatusOr<bool> Filter(const FieldPlan& plan, bool check_bsn, absl::string_view payload,
                            std::string* filtered, std::vector<std::string>* removed);

// Filter() in place: `payload` is replaced by the filtered bytes, and unchanged unless the
// status is OK.
absl::Status Apply(const FieldPlan& plan, bool check_bsn, std::string* payload,
                   std::vector<std::string>* removed);

// Whether Apply() would parse the payload (the cost of the step).
inline bool NeedsParse(const FieldPlan& plan, bool check_bsn) {
  return !plan.all() || (check_bsn && plan.has_bsn_fields());
}

}  // namespace knooppunt::transform

#endif  // KNOOPPUNT_GATEWAY_TRANSFORM_FIELD_FILTER_H_
