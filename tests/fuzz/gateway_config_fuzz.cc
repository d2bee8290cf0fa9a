// Fuzz target: the gateway's configuration file (server/gateway_config on top of
// config/yaml_proto). The input is the text of gateway.yaml; the loader reads it from disk as
// the gateway does. Errors are expected for almost every input; the target looks for crashes,
// hangs, leaks and undefined behaviour in the YAML parser and the YAML -> proto mapping.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "gateway/server/gateway_config.h"
#include "tests/fuzz/fuzz_files.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = (knooppunt::fuzz::ScratchDir() / "gateway.yaml").string();
  knooppunt::fuzz::WriteScratchFile(
      path, absl::string_view(reinterpret_cast<const char*>(data), size));
  absl::StatusOr<knooppunt::config::v1::GatewayConfig> config =
      knooppunt::server::LoadGatewayConfig(path);
  if (config.ok()) {
    (void)knooppunt::server::PolicySourcesOf(*config);
  } else if (!absl::StartsWith(config.status().message(), path)) {
    abort();  // every configuration error names the file (and line) it is about
  }
  return 0;
}
