// Reading whole files with errors that say what was being read.
#ifndef KNOOPPUNT_GATEWAY_COMMON_FILES_H_
#define KNOOPPUNT_GATEWAY_COMMON_FILES_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace knooppunt {

// The contents of a regular file. NOT_FOUND when it does not exist, INVALID_ARGUMENT when it
// is not a regular file (a directory would otherwise read as empty), UNAVAILABLE when it
// cannot be read. Messages start with `what` and the path, e.g. "registry_file /etc/x: ...".
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, absl::string_view what);

}  // namespace knooppunt

#endif  // KNOOPPUNT_GATEWAY_COMMON_FILES_H_
