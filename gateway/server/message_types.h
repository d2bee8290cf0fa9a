// The message types the gateway knows: the domain types compiled in (proto/gemeente/...).
#ifndef KNOOPPUNT_GATEWAY_SERVER_MESSAGE_TYPES_H_
#define KNOOPPUNT_GATEWAY_SERVER_MESSAGE_TYPES_H_

#include "google/protobuf/descriptor.h"

namespace knooppunt::server {

// The generated pool, with every compiled-in domain type guaranteed to be linked and
// registered.
const google::protobuf::DescriptorPool& BuiltinMessageTypes();

}  // namespace knooppunt::server

#endif  // KNOOPPUNT_GATEWAY_SERVER_MESSAGE_TYPES_H_
