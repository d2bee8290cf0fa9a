// Fuzz target: an envelope as it arrives from a party (serialised knooppunt.exchange.v1.Envelope)
// through the steps that read it before any policy decision: the envelope check
// (exchange/envelope_check), the payload's Any type resolved against the compiled-in message
// types, data minimisation with the BSN 11-proef (transform/field_filter) and the audit log's
// BSN pseudonyms (audit/data_subjects).
//
// Besides "no crash, no sanitizer report" it checks properties of the filter:
//  - a filtered payload parses as its type and filtering it again removes nothing;
//  - a plan that lets all fields pass never changes the bytes.
// Field plans are derived from each message type's descriptor (every other field, and one
// path into nested and map-value messages), so they follow the schema without a list here.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gateway/audit/data_subjects.h"
#include "gateway/exchange/envelope_check.h"
#include "gateway/server/message_types.h"
#include "gateway/transform/field_filter.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/stubs/logging.h"
#include "knooppunt/exchange/v1/envelope.pb.h"

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using knooppunt::transform::FieldPlan;

// Every other field of `type` by name; for the others that hold a message (or a map of
// messages), a path one level into it, down to a few levels.
void DerivePaths(const Descriptor* type, const std::string& prefix, int depth,
                 std::vector<std::string>* paths) {
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* field = type->field(i);
    const std::string path = prefix + field->name();
    const Descriptor* inner = field->message_type();
    if (field->is_map()) inner = inner->map_value()->message_type();
    if (i % 2 == 0) {
      paths->push_back(path);
    } else if (inner != nullptr && depth < 3) {
      DerivePaths(inner, path + ".", depth + 1, paths);
    }
  }
}

struct Plans {
  FieldPlan all;
  std::vector<FieldPlan> restricted;
};

// Compiled once per message type (plans are immutable and deterministic).
const Plans& PlansFor(const Descriptor* type) {
  static auto* cache = new std::map<const Descriptor*, Plans>();
  auto it = cache->find(type);
  if (it != cache->end()) return it->second;
  Plans plans;
  plans.all = FieldPlan::All(type);
  knooppunt::config::v1::FieldPolicy policy;
  std::vector<std::string> paths;
  DerivePaths(type, "", 0, &paths);
  for (const std::string& p : paths) policy.add_allow(p);
  auto ignore = [](int, absl::string_view message) {
    return absl::InvalidArgumentError(message);
  };
  if (absl::StatusOr<FieldPlan> plan = FieldPlan::Compile(type, policy, ignore); plan.ok()) {
    plans.restricted.push_back(*std::move(plan));
  }
  return cache->emplace(type, std::move(plans)).first->second;
}

void CheckFilter(const FieldPlan& plan, const std::string& payload) {
  for (bool check_bsn : {false, true}) {
    std::string filtered;
    std::vector<std::string> removed;
    absl::StatusOr<bool> changed =
        knooppunt::transform::Filter(plan, check_bsn, payload, &filtered, &removed);
    if (!changed.ok() || !*changed) {
      if (changed.ok() && !plan.all()) abort();  // a plan with fields always writes the result
      continue;
    }
    if (plan.all()) abort();  // an all-fields plan never rewrites the payload
    // Idempotent: the result is a valid payload that the same plan leaves as it is.
    std::string again;
    std::vector<std::string> removed_again;
    absl::StatusOr<bool> second =
        knooppunt::transform::Filter(plan, check_bsn, filtered, &again, &removed_again);
    if (!second.ok() || !removed_again.empty()) abort();
    // Apply() is Filter() in place.
    std::string in_place = payload;
    std::vector<std::string> removed_in_place;
    if (!knooppunt::transform::Apply(plan, check_bsn, &in_place, &removed_in_place).ok() ||
        in_place != filtered || removed_in_place != removed) {
      abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // Invalid UTF-8 in string fields is an expected parse failure; protobuf's log line for
  // each one would drown the fuzzer's output.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const google::protobuf::DescriptorPool& types = knooppunt::server::BuiltinMessageTypes();
  static const auto* subjects = new knooppunt::audit::DataSubjects(std::string(32, 'k'));

  knooppunt::exchange::v1::Envelope envelope;
  if (!envelope.ParseFromArray(data, static_cast<int>(size))) return 0;
  (void)knooppunt::exchange::CheckEnvelope(envelope, 64 << 10, types);

  // The payload's type as the Any names it; the steps after the check see only known types.
  const std::string type_name(knooppunt::exchange::MessageTypeOf(envelope.payload().type_url()));
  const Descriptor* type = types.FindMessageTypeByName(type_name);
  if (type == nullptr) return 0;
  const std::string& payload = envelope.payload().value();
  const Plans& plans = PlansFor(type);
  CheckFilter(plans.all, payload);
  for (const FieldPlan& plan : plans.restricted) CheckFilter(plan, payload);
  for (const std::string& pseudonym : subjects->Of(type, payload)) {
    if (pseudonym.size() != 64) abort();  // hex HMAC-SHA256, never the BSN itself
  }
  return 0;
}
