#include "gateway/transform/field_filter.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gateway/common/ids.h"
#include "google/protobuf/arena.h"
#include "google/protobuf/dynamic_message.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/unknown_field_set.h"
#include "knooppunt/options/v1/options.pb.h"

namespace knooppunt::transform {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

bool IsBsnField(const FieldDescriptor* f) {
  return f->cpp_type() == FieldDescriptor::CPPTYPE_STRING &&
         f->options().GetExtension(options::v1::personal).bsn();
}

bool ComputeHasBsn(const Descriptor* type, absl::flat_hash_set<const Descriptor*>* visiting) {
  if (!visiting->insert(type).second) return false;  // recursion: counted where it started
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (IsBsnField(f)) return true;
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
        ComputeHasBsn(f->message_type(), visiting)) {
      return true;
    }
  }
  return false;
}

std::string JoinPath(absl::string_view prefix, absl::string_view name) {
  return prefix.empty() ? std::string(name) : absl::StrCat(prefix, ".", name);
}

// The field names from the root to the message being walked; joined only when a path is
// recorded, so walking allocates nothing.
using PathStack = std::vector<absl::string_view>;

void AddRemoved(const PathStack& stack, absl::string_view last,
                std::vector<std::string>* removed) {
  std::string path = absl::StrJoin(stack, ".");
  if (!path.empty()) path += '.';
  absl::StrAppend(&path, last);
  if (std::find(removed->begin(), removed->end(), path) == removed->end()) {
    removed->push_back(std::move(path));
  }
}

void StripUnknown(Message* m, const PathStack& stack, std::vector<std::string>* removed) {
  const Reflection* r = m->GetReflection();
  const google::protobuf::UnknownFieldSet& unknown = r->GetUnknownFields(*m);
  if (unknown.empty()) return;
  for (int i = 0; i < unknown.field_count(); ++i) {
    AddRemoved(stack, absl::StrCat("[unknown ", unknown.field(i).number(), "]"), removed);
  }
  r->MutableUnknownFields(m)->Clear();
}

// Removes unknown fields at any depth of a field that passes whole.
void StripUnknownDeep(Message* m, PathStack* stack, std::vector<std::string>* removed) {
  StripUnknown(m, *stack, removed);
  const Reflection* r = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const FieldDescriptor* f : fields) {
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;
    stack->push_back(f->name());
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(*m, f); ++i) {
        StripUnknownDeep(r->MutableRepeatedMessage(m, f, i), stack, removed);
      }
    } else {
      StripUnknownDeep(r->MutableMessage(m, f), stack, removed);
    }
    stack->pop_back();
  }
}

void Prune(Message* m, const FieldNode& node, PathStack* stack,
           std::vector<std::string>* removed) {
  StripUnknown(m, *stack, removed);
  const Reflection* r = m->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(*m, &fields);
  for (const FieldDescriptor* f : fields) {
    const FieldChild* child = node.Find(f->number());
    if (child == nullptr) {
      r->ClearField(m, f);
      AddRemoved(*stack, f->name(), removed);
      continue;
    }
    if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) continue;  // scalars pass whole
    stack->push_back(f->name());
    const int count = f->is_repeated() ? r->FieldSize(*m, f) : 1;
    for (int i = 0; i < count; ++i) {
      Message* sub = f->is_repeated() ? r->MutableRepeatedMessage(m, f, i) : r->MutableMessage(m, f);
      if (child->map_value) {
        StripUnknown(sub, *stack, removed);
        const FieldDescriptor* value = sub->GetDescriptor()->map_value();
        sub = sub->GetReflection()->MutableMessage(sub, value);
      }
      if (child->node.all) {
        StripUnknownDeep(sub, stack, removed);
      } else {
        Prune(sub, child->node, stack, removed);
      }
    }
    stack->pop_back();
  }
}

void CollectPaths(const FieldNode& node, const std::string& prefix, std::vector<std::string>* out) {
  for (const FieldChild& c : node.children) {
    const std::string path = JoinPath(prefix, c.name);
    if (c.node.all) {
      out->push_back(path);
    } else {
      CollectPaths(c.node, path, out);
    }
  }
}

}  // namespace

// What Apply() needs besides the tree: a prototype to parse into (generated classes for
// compiled-in types, dynamic messages for types from descriptor sets) and the types, reachable
// from the plan's, that hold BSN fields.
class FieldPlanData {
 public:
  explicit FieldPlanData(const Descriptor* type) {
    factory_.SetDelegateToGeneratedFactory(true);
    prototype_ = factory_.GetPrototype(type);
    std::vector<const Descriptor*> stack = {type};
    absl::flat_hash_set<const Descriptor*> seen = {type};
    while (!stack.empty()) {
      const Descriptor* t = stack.back();
      stack.pop_back();
      if (HasBsnFields(t)) bsn_types_.insert(t);
      for (int i = 0; i < t->field_count(); ++i) {
        const Descriptor* sub = t->field(i)->message_type();
        if (sub != nullptr && seen.insert(sub).second) stack.push_back(sub);
      }
    }
  }
  const Message* prototype() const { return prototype_; }
  bool HasBsn(const Descriptor* t) const { return bsn_types_.contains(t); }

 private:
  google::protobuf::DynamicMessageFactory factory_;  // GetPrototype() is thread-safe
  const Message* prototype_ = nullptr;
  absl::flat_hash_set<const Descriptor*> bsn_types_;
};

namespace {

absl::Status CheckBsn(const Message& m, const std::string& prefix, const FieldPlanData& data) {
  const Reflection* r = m.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  std::string scratch;
  for (const FieldDescriptor* f : fields) {
    const bool bsn = IsBsnField(f);
    if (!bsn && (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
                 !data.HasBsn(f->message_type()))) {
      continue;
    }
    const std::string path = JoinPath(prefix, f->name());
    if (bsn) {
      if (f->is_repeated()) {
        for (int i = 0; i < r->FieldSize(m, f); ++i) {
          const std::string& v = r->GetRepeatedStringReference(m, f, i, &scratch);
          if (!IsValidBsn(v)) {
            return absl::InvalidArgumentError(
                absl::StrCat("field ", path, "[", i, "] is not a valid BSN (11-proef)"));
          }
        }
      } else if (const std::string& v = r->GetStringReference(m, f, &scratch);
                 !v.empty() && !IsValidBsn(v)) {
        return absl::InvalidArgumentError(
            absl::StrCat("field ", path, " is not a valid BSN (11-proef)"));
      }
      continue;
    }
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) {
        absl::Status s =
            CheckBsn(r->GetRepeatedMessage(m, f, i), absl::StrCat(path, "[", i, "]"), data);
        if (!s.ok()) return s;
      }
    } else {
      absl::Status s = CheckBsn(r->GetMessage(m, f), path, data);
      if (!s.ok()) return s;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const FieldChild* FieldNode::Find(int number) const {
  for (const FieldChild& c : children) {
    if (c.number == number) return &c;
  }
  return nullptr;
}

bool HasBsnFields(const Descriptor* type) {
  absl::flat_hash_set<const Descriptor*> visiting;
  return ComputeHasBsn(type, &visiting);
}

FieldPlan FieldPlan::All(const Descriptor* type) {
  FieldPlan plan;
  plan.type_ = type;
  plan.data_ = std::make_shared<const FieldPlanData>(type);
  plan.has_bsn_ = plan.data_->HasBsn(type);
  return plan;
}

absl::StatusOr<FieldPlan> FieldPlan::Compile(const Descriptor* type,
                                             const config::v1::FieldPolicy& policy,
                                             ErrorFn error) {
  if (policy.all() && !policy.allow().empty()) {
    return error(-1, "give either all: true or an allow list, not both");
  }
  if (!policy.all() && policy.allow().empty()) {
    return error(-1, "name the fields that pass (allow: [...]) or say that all pass (all: true)");
  }
  FieldPlan plan = All(type);
  if (policy.all()) return plan;
  auto root = std::make_shared<FieldNode>();
  for (int i = 0; i < policy.allow_size(); ++i) {
    const std::string& path = policy.allow(i);
    const std::vector<absl::string_view> parts = absl::StrSplit(path, '.');
    const Descriptor* d = type;
    FieldNode* node = root.get();
    for (size_t j = 0; j < parts.size() && !node->all; ++j) {
      const FieldDescriptor* f = d->FindFieldByName(std::string(parts[j]));
      if (f == nullptr) {
        return error(i, absl::StrCat("field path '", path, "': ", d->full_name(),
                                     " has no field '", parts[j], "'"));
      }
      FieldChild* child = nullptr;
      for (FieldChild& c : node->children) {
        if (c.number == f->number()) child = &c;
      }
      if (child == nullptr) {
        node->children.push_back(FieldChild{f->number(), f->name(), false, FieldNode{}});
        child = &node->children.back();
      }
      if (j + 1 == parts.size()) {
        child->node.all = true;
        child->node.children.clear();
        break;
      }
      if (f->is_map()) {
        const FieldDescriptor* value = f->message_type()->map_value();
        if (value->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
          return error(i, absl::StrCat("field path '", path, "': the values of map '", f->name(),
                                       "' are not messages; name the map whole"));
        }
        child->map_value = true;
        d = value->message_type();
      } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
        d = f->message_type();
      } else {
        return error(i, absl::StrCat("field path '", path, "': '", f->name(),
                                     "' is not a message, so nothing lies below it"));
      }
      node = &child->node;
    }
  }
  plan.root_ = std::move(root);
  return plan;
}

std::vector<std::string> FieldPlan::AllowedPaths() const {
  if (all()) return {"*"};
  std::vector<std::string> out;
  CollectPaths(*root_, "", &out);
  std::sort(out.begin(), out.end());
  return out;
}

absl::StatusOr<bool> Filter(const FieldPlan& plan, bool check_bsn, absl::string_view payload,
                            std::string* filtered, std::vector<std::string>* removed) {
  if (!NeedsParse(plan, check_bsn)) return false;
  // A typical record fits the first block, so parsing allocates nothing on the heap.
  alignas(8) char block[8192];
  google::protobuf::ArenaOptions arena_options;
  arena_options.initial_block = block;
  arena_options.initial_block_size = sizeof(block);
  google::protobuf::Arena arena(arena_options);
  Message* message = plan.data_->prototype()->New(&arena);
  if (!message->ParseFromArray(payload.data(), static_cast<int>(payload.size()))) {
    return absl::InvalidArgumentError(
        absl::StrCat("payload does not parse as ", plan.type_->full_name()));
  }
  if (check_bsn && plan.has_bsn_) {
    absl::Status s = CheckBsn(*message, "", *plan.data_);
    if (!s.ok()) return s;
  }
  if (plan.all()) return false;  // checked only; the bytes pass as they came
  PathStack stack;
  Prune(message, *plan.root_, &stack, removed);
  filtered->clear();
  // Deterministic: map entries in key order. Plain serialisation writes them in hash order,
  // which differs between two parses of the same bytes — the same payload would then be
  // filtered into different bytes (found by tests/fuzz/envelope_fuzz: Filter vs Apply).
  {
    google::protobuf::io::StringOutputStream out(filtered);
    google::protobuf::io::CodedOutputStream coded(&out);
    coded.SetSerializationDeterministic(true);
    if (!message->SerializeToCodedStream(&coded)) {
      return absl::InternalError("filtered payload cannot be serialised");
    }
  }
  return true;
}

absl::Status Apply(const FieldPlan& plan, bool check_bsn, std::string* payload,
                   std::vector<std::string>* removed) {
  std::string filtered;
  absl::StatusOr<bool> rewritten = Filter(plan, check_bsn, *payload, &filtered, removed);
  if (!rewritten.ok()) return rewritten.status();
  if (*rewritten) *payload = std::move(filtered);
  return absl::OkStatus();
}

}  // namespace knooppunt::transform
