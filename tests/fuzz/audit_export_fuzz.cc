// Fuzz target: the audit verifier's input from outside the gateway, an export file
// (audit/audit_reader VerifyExport: "C" checkpoint lines with hex, base64 and signatures,
// "R" record lines, one hash chain). An auditor verifies files that anyone with access to
// the export directory may have altered, so every byte of them is untrusted.
//
// The verifier trusts one public key: the Ed25519 key of RFC 8032 section 7.1 TEST 1 (a
// published test vector, not a secret), so the seeds made by tests/fuzz/make_seeds.py can
// carry checkpoints that verify and the fuzzer reaches the chain rules behind them.
//
// Properties: a result is intact exactly when it names no problem; an intact chain holds
// every record from first_seq to last_seq.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_reader.h"
#include "tests/fuzz/fuzz_files.h"

namespace {

constexpr absl::string_view kRfc8032Test1PublicKey =
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n"
    "-----END PUBLIC KEY-----\n";

const knooppunt::audit::SignatureVerifier& TrustedKey() {
  static const knooppunt::audit::SignatureVerifier* key = [] {
    auto verifier = knooppunt::audit::SignatureVerifier::FromPem(kRfc8032Test1PublicKey);
    if (!verifier.ok()) abort();
    return verifier->release();
  }();
  return *key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::filesystem::path d = knooppunt::fuzz::ScratchDir() / "export";
    std::filesystem::create_directories(d);
    return d.string();
  }();
  knooppunt::fuzz::WriteScratchFile(std::filesystem::path(dir) / "audit-000000000001.log",
                                    absl::string_view(reinterpret_cast<const char*>(data), size));
  absl::StatusOr<knooppunt::audit::VerifyResult> result =
      knooppunt::audit::VerifyExport(dir, TrustedKey());
  if (!result.ok()) return 0;  // a malformed checkpoint line: refused as a whole
  if (result->intact != result->problem.empty()) abort();
  if (result->intact && result->records > 0 &&
      result->last_seq - result->first_seq + 1 != result->records) {
    abort();
  }
  return 0;
}
