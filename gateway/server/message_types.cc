#include "gateway/server/message_types.h"

#include "gemeente/brp/v1/brp.pb.h"
#include "gemeente/overlijden/v1/overlijden.pb.h"
#include "gemeente/verhuizen/v1/verhuizen.pb.h"
#include "gemeente/zaken/v1/zaken.pb.h"

namespace knooppunt::server {

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

}  // namespace knooppunt::server
