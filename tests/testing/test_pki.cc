#include "tests/testing/test_pki.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace knooppunt::testing {

std::string PkiDir() {
  const char* dir = std::getenv("KNOOPPUNT_TEST_PKI_DIR");
  if (dir == nullptr || *dir == '\0') {
    std::fprintf(stderr, "KNOOPPUNT_TEST_PKI_DIR is not set (run the tests through ctest)\n");
    std::abort();
  }
  return dir;
}

std::string PkiPath(absl::string_view name) { return absl::StrCat(PkiDir(), "/", name); }

std::string ReadFileOrDie(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", path.c_str());
    std::abort();
  }
  std::ostringstream content;
  content << in.rdbuf();
  return content.str();
}

std::string ReadPkiFile(absl::string_view name) { return ReadFileOrDie(PkiPath(name)); }

}  // namespace knooppunt::testing
