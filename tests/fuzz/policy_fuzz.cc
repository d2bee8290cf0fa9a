// Fuzz target: the policy loader (policy/policy_snapshot: registry + agreements, validated
// against each other and against the compiled-in message types, field lists compiled).
// The input is the registry file followed by agreement files, each starting at a line
// "#%% agreements" (a YAML comment, so every part is a YAML document on its own); the loader
// reads them from disk as the gateway does.
//
// Properties: every load error names the file it is about; a loaded snapshot's version is the
// one PolicyVersion() computes for the same files.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gateway/policy/policy_snapshot.h"
#include "gateway/server/message_types.h"
#include "tests/fuzz/fuzz_files.h"

namespace {
constexpr int kMaxAgreementFiles = 8;
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const google::protobuf::DescriptorPool& types = knooppunt::server::BuiltinMessageTypes();
  const absl::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<absl::string_view> parts = absl::StrSplit(input, "\n#%% agreements\n");
  if (parts.size() < 2 || parts.size() > kMaxAgreementFiles + 1) return 0;

  knooppunt::policy::PolicySources sources;
  sources.registry_file = (knooppunt::fuzz::ScratchDir() / "registry.yaml").string();
  knooppunt::fuzz::WriteScratchFile(sources.registry_file, parts[0]);
  for (size_t i = 1; i < parts.size(); ++i) {
    sources.agreement_files.push_back(
        (knooppunt::fuzz::ScratchDir() / absl::StrCat("agreements-", i, ".yaml")).string());
    knooppunt::fuzz::WriteScratchFile(sources.agreement_files.back(), parts[i]);
  }

  auto snapshot = knooppunt::policy::LoadPolicy(sources, types);
  if (!snapshot.ok()) {
    const absl::string_view message = snapshot.status().message();
    bool names_file = absl::StartsWith(message, sources.registry_file);
    for (const std::string& f : sources.agreement_files) {
      names_file = names_file || absl::StartsWith(message, f);
    }
    if (!names_file) abort();
    return 0;
  }
  absl::StatusOr<std::string> version = knooppunt::policy::PolicyVersion(sources);
  if (!version.ok() || *version != (*snapshot)->version) abort();
  return 0;
}
