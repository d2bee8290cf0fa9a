#include "gateway/server/message_types.h"

#include <fstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/overlijden/v1/overlijden.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "gemeente/zaken/v1/zaken.pb.h"
#include "google/protobuf/descriptor.pb.h"

namespace knooppunt::server {
namespace {

class CollectErrors : public google::protobuf::DescriptorPool::ErrorCollector {
 public:
  void AddError(const std::string& filename, const std::string& element_name,
                const google::protobuf::Message*, ErrorLocation,
                const std::string& message) override {
    if (first_.empty()) first_ = absl::StrCat(filename, ": ", element_name, ": ", message);
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

}  // namespace

const google::protobuf::DescriptorPool& BuiltinMessageTypes() {
  // Touching one descriptor per file keeps the linker from dropping the generated code of a
  // static library, and registers the file in the generated pool.
  static const bool linked = [] {
    gemeente::brp::v1::Persoon::descriptor();
    gemeente::verhuizen::v1::Verhuismelding::descriptor();
    gemeente::overlijden::v1::AangifteOverlijden::descriptor();
    gemeente::zaken::v1::ZaakAanmaken::descriptor();
    return true;
  }();
  (void)linked;
  return *google::protobuf::DescriptorPool::generated_pool();
}

absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> LoadMessageTypes(
    const std::vector<std::string>& descriptor_set_files) {
  const google::protobuf::DescriptorPool& builtin = BuiltinMessageTypes();
  // The underlay makes compiled-in descriptors (and so their generated classes) visible as
  // they are; types from the files are dynamic messages.
  auto pool = std::make_unique<google::protobuf::DescriptorPool>(&builtin);
  for (const std::string& path : descriptor_set_files) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open descriptor set"));
    google::protobuf::FileDescriptorSet set;
    if (!set.ParseFromIstream(&in)) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": not a binary FileDescriptorSet (protoc --descriptor_set_out)"));
    }
    for (const google::protobuf::FileDescriptorProto& file : set.file()) {
      if (pool->FindFileByName(file.name()) != nullptr) continue;  // compiled in, or loaded
      CollectErrors errors;
      if (pool->BuildFileCollectingErrors(file, &errors) == nullptr) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": ", errors.first()));
      }
    }
  }
  return pool;
}

}  // namespace knooppunt::server
