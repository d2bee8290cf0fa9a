#include "tests/testing/small_filesystem.h"

#include <cstdlib>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace knooppunt::testing {

std::unique_ptr<SmallFileSystem> SmallFileSystem::Mount(const std::string& dir, int megabytes) {
  const std::string image = dir + "/fs.img";
  const std::string mnt = dir + "/mnt";
  std::error_code ec;
  std::filesystem::create_directories(mnt, ec);
  const std::string mk = absl::StrCat("truncate -s ", megabytes, "M ", image,
                                      " && mkfs.ext4 -q -F ", image, " >/dev/null 2>&1",
                                      " && mount -o loop ", image, " ", mnt, " >/dev/null 2>&1");
  if (std::system(mk.c_str()) != 0) return nullptr;
  return std::unique_ptr<SmallFileSystem>(new SmallFileSystem(mnt));
}

SmallFileSystem::~SmallFileSystem() {
  (void)std::system(absl::StrCat("umount ", mnt_, " >/dev/null 2>&1").c_str());
}

bool SmallFileSystem::RemountReadOnly() {
  return std::system(absl::StrCat("mount -o remount,ro ", mnt_, " >/dev/null 2>&1").c_str()) == 0;
}

}  // namespace knooppunt::testing
