// Scratch files for fuzz targets whose code under test reads from disk (configuration,
// policies, audit exports): one private directory per fuzzing process, removed at exit.
// Deterministic: the same input writes the same bytes to the same names.
#ifndef KNOOPPUNT_TESTS_FUZZ_FUZZ_FILES_H_
#define KNOOPPUNT_TESTS_FUZZ_FUZZ_FILES_H_

#include <stdlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/string_view.h"

namespace knooppunt::fuzz {

// The process's scratch directory (made on first use under $TMPDIR or /tmp).
inline const std::filesystem::path& ScratchDir() {
  static const std::filesystem::path dir = [] {
    const char* tmp = getenv("TMPDIR");
    std::string templ = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                        "/knooppunt-fuzz-XXXXXX";
    if (mkdtemp(templ.data()) == nullptr) {
      perror("mkdtemp");
      abort();
    }
    std::filesystem::path made(templ);
    static const std::filesystem::path to_remove = made;
    atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(to_remove, ec);
    });
    return made;
  }();
  return dir;
}

// Replaces `path` with exactly `bytes`; aborts when it cannot (a broken harness, not a finding).
inline void WriteScratchFile(const std::filesystem::path& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) {
    perror(path.c_str());
    abort();
  }
}

}  // namespace knooppunt::fuzz

#endif  // KNOOPPUNT_TESTS_FUZZ_FUZZ_FILES_H_
