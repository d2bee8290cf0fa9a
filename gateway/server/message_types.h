// The message types the gateway knows: the domain types compiled in (proto/gemeente/...) and
// those of the FileDescriptorSet files the configuration names, so a new collective service
// is added by configuration alone.
#ifndef KNOOPPUNT_GATEWAY_SERVER_MESSAGE_TYPES_H_
#define KNOOPPUNT_GATEWAY_SERVER_MESSAGE_TYPES_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/descriptor.h"

namespace knooppunt::server {

// The generated pool, with every compiled-in domain type guaranteed to be linked and
// registered.
const google::protobuf::DescriptorPool& BuiltinMessageTypes();

// A pool holding the types of the descriptor set files (binary FileDescriptorSet, as written
// by `protoc --include_imports --descriptor_set_out`) on top of the builtin types: a lookup
// that misses the files falls back to the compiled-in types, and files that are compiled in
// (e.g. google/protobuf/*.proto, knooppunt/options) are taken from there. An unreadable file,
// or one whose types conflict or miss a dependency, is an error naming the file. The pool must
// outlive everything that uses its descriptors (in the gateway: the process).
absl::StatusOr<std::unique_ptr<google::protobuf::DescriptorPool>> LoadMessageTypes(
    const std::vector<std::string>& descriptor_set_files);

}  // namespace knooppunt::server

#endif  // KNOOPPUNT_GATEWAY_SERVER_MESSAGE_TYPES_H_
