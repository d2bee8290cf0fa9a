// Access to the dev PKI that tools/dev-pki.sh made for the tests (ctest fixture "test_pki").
#ifndef KNOOPPUNT_TESTS_TESTING_TEST_PKI_H_
#define KNOOPPUNT_TESTS_TESTING_TEST_PKI_H_

#include <string>

#include "absl/strings/string_view.h"

namespace knooppunt::testing {

// OINs the dev PKI puts in its certificates (see certs/README.md).
inline constexpr absl::string_view kGatewayOin = "00000099000000000001";
inline constexpr absl::string_view kVerhuizenOin = "00000099100000000001";
inline constexpr absl::string_view kBrpOin = "00000099200000000001";
inline constexpr absl::string_view kGroningenOin = "00000099300000000014";
inline constexpr absl::string_view kZaanstadOin = "00000099300000000479";
inline constexpr absl::string_view kAmsterdamOin = "00000099300000000363";
inline constexpr absl::string_view kAuditorOin = "00000099400000000001";
inline constexpr absl::string_view kOperatorOin = "00000099500000000001";

// The directory (from $KNOOPPUNT_TEST_PKI_DIR); aborts with a message when unset.
std::string PkiDir();

// PkiDir()/name, e.g. PkiPath("groningen.crt").
std::string PkiPath(absl::string_view name);

// The contents of PkiDir()/name; aborts when unreadable.
std::string ReadPkiFile(absl::string_view name);

// Any file's contents; aborts when unreadable.
std::string ReadFileOrDie(const std::string& path);

}  // namespace knooppunt::testing

#endif  // KNOOPPUNT_TESTS_TESTING_TEST_PKI_H_
