// Files of the operator PKI: atomic writes with an exact mode, reads, and a per-directory
// lock that serialises knooppunt-pki runs on one CA directory.
//
// Guarantees: WriteFileAtomically never leaves a partially written file at `path` — readers
// (the gateway re-reading its CRL directory, a concurrent `list`) see the old contents or the
// new, never a mix; the file is created with exactly `mode` (the umask does not widen or
// narrow it), so a private key is never readable by others, not even briefly.
#ifndef KNOOPPUNT_GATEWAY_PKI_PKI_FILES_H_
#define KNOOPPUNT_GATEWAY_PKI_PKI_FILES_H_

#include <sys/types.h>

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace knooppunt::pki {

enum class Overwrite { kNo, kYes };

// Writes `contents` to a temporary file next to `path`, fsyncs it, and renames it over `path`.
// With Overwrite::kNo an existing `path` is AlreadyExists and nothing is written.
absl::Status WriteFileAtomically(const std::string& path, absl::string_view contents,
                                 mode_t mode, Overwrite overwrite = Overwrite::kYes);

// The whole file; NotFound when it does not exist, naming `path`.
absl::StatusOr<std::string> ReadWholeFile(const std::string& path);

// An exclusive advisory lock (flock) on <dir>/.lock, held until destruction.
class DirectoryLock {
 public:
  static absl::StatusOr<DirectoryLock> Acquire(const std::string& dir);
  DirectoryLock(DirectoryLock&& other) noexcept;
  DirectoryLock& operator=(DirectoryLock&& other) noexcept;
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;
  ~DirectoryLock();

 private:
  explicit DirectoryLock(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace knooppunt::pki

#endif  // KNOOPPUNT_GATEWAY_PKI_PKI_FILES_H_
