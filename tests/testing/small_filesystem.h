// A real, small file system for disk-full and read-only tests: an ext4 image of a few MiB,
// loop-mounted under a directory — when this machine allows mounting (root, a loop device);
// tests skip otherwise. The destructor unmounts it.
#ifndef KNOOPPUNT_TESTS_TESTING_SMALL_FILESYSTEM_H_
#define KNOOPPUNT_TESTS_TESTING_SMALL_FILESYSTEM_H_

#include <memory>
#include <string>

namespace knooppunt::testing {

class SmallFileSystem {
 public:
  // Makes `dir`/fs.img of `megabytes` and mounts it on `dir`/mnt; null when that fails.
  static std::unique_ptr<SmallFileSystem> Mount(const std::string& dir, int megabytes);
  ~SmallFileSystem();
  SmallFileSystem(const SmallFileSystem&) = delete;
  SmallFileSystem& operator=(const SmallFileSystem&) = delete;

  const std::string& path() const { return mnt_; }  // the mount point
  // Remounts it read-only (as ext4 does with errors=remount-ro); whether that worked.
  bool RemountReadOnly();

 private:
  explicit SmallFileSystem(std::string mnt) : mnt_(std::move(mnt)) {}
  std::string mnt_;
};

}  // namespace knooppunt::testing

#endif  // KNOOPPUNT_TESTS_TESTING_SMALL_FILESYSTEM_H_
