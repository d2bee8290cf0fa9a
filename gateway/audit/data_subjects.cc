#include "gateway/audit/data_subjects.h"

#include <algorithm>
#include <memory>

#include "gateway/audit/audit_crypto.h"
#include "knooppunt/options/v1/options.pb.h"

namespace knooppunt::audit {
namespace {
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
}  // namespace

bool IsBsnField(const FieldDescriptor* field) {
  return field->type() == FieldDescriptor::TYPE_STRING &&
         field->options().HasExtension(knooppunt::options::v1::personal) &&
         field->options().GetExtension(knooppunt::options::v1::personal).bsn();
}

bool DataSubjects::ComputeLocked(const Descriptor* type) const {
  auto it = reaches_.find(type);
  if (it != reaches_.end()) return it->second;
  reaches_[type] = false;  // breaks cycles; a recursive type reaches a BSN through its fields
  bool reaches = false;
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (IsBsnField(f)) reaches = true;
    if (f->type() == FieldDescriptor::TYPE_MESSAGE && ComputeLocked(f->message_type())) {
      reaches = true;
    }
  }
  reaches_[type] = reaches;
  return reaches;
}

bool DataSubjects::HasBsnFields(const Descriptor* type) const {
  absl::MutexLock lock(&mu_);
  return ComputeLocked(type);
}

std::string DataSubjects::PseudonymOf(absl::string_view bsn) const { return Pseudonym(key_, bsn); }

void DataSubjects::Collect(const Message& m, std::vector<std::string>* bsns) const {
  const Descriptor* d = m.GetDescriptor();
  const Reflection* r = m.GetReflection();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (IsBsnField(f)) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(m, f); ++j) bsns->push_back(r->GetRepeatedString(m, f, j));
      } else {
        bsns->push_back(r->GetString(m, f));
      }
    } else if (f->type() == FieldDescriptor::TYPE_MESSAGE && HasBsnFields(f->message_type())) {
      if (f->is_repeated()) {
        for (int j = 0; j < r->FieldSize(m, f); ++j) Collect(r->GetRepeatedMessage(m, f, j), bsns);
      } else if (r->HasField(m, f)) {
        Collect(r->GetMessage(m, f), bsns);
      }
    }
  }
}

std::vector<std::string> DataSubjects::OfMessage(const Message& message) const {
  std::vector<std::string> bsns;
  if (!HasBsnFields(message.GetDescriptor())) return bsns;
  Collect(message, &bsns);
  std::vector<std::string> out;
  for (const std::string& b : bsns) {
    if (!b.empty()) out.push_back(Pseudonym(key_, b));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<std::string> DataSubjects::Of(const Descriptor* type, absl::string_view bytes) const {
  if (type == nullptr || !HasBsnFields(type)) return {};
  const Message* prototype = nullptr;
  if (type->file()->pool() == google::protobuf::DescriptorPool::generated_pool()) {
    prototype = google::protobuf::MessageFactory::generated_factory()->GetPrototype(type);
  } else {
    absl::MutexLock lock(&mu_);
    prototype = dynamic_factory_.GetPrototype(type);
  }
  if (prototype == nullptr) return {};
  std::unique_ptr<Message> m(prototype->New());
  m->ParsePartialFromArray(bytes.data(), static_cast<int>(bytes.size()));
  return OfMessage(*m);
}

}  // namespace knooppunt::audit
