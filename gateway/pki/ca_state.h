// The record a CA directory keeps of what it issued: next serial, CRL number, and one line
// per issued certificate (serial, kind, OIN, validity, revocation, renewal, O and CN).
//
// Format (state.txt): text, one item per line, fields separated by tabs, '#' comments:
//   version<TAB>1
//   next_serial<TAB><hex>
//   crl_number<TAB><decimal>
//   crl_next_update<TAB><RFC 3339>
//   cert<TAB><serial hex><TAB><kind><TAB><oin><TAB><not_before><TAB><not_after><TAB>
//       <revoked_at|-><TAB><reason|-><TAB><renewed_from hex|-><TAB><O><TAB><CN>
// O and CN never contain tabs or newlines (the profile rejects control characters).
//
// Guarantees: Parse(Serialize(s)) == s; Parse rejects anything else with DataLoss naming the
// file and line, so a damaged state is never silently used to issue or revoke.
#ifndef KNOOPPUNT_GATEWAY_PKI_CA_STATE_H_
#define KNOOPPUNT_GATEWAY_PKI_CA_STATE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace knooppunt::pki {

// CRLReason codes (RFC 5280 5.3.1) an operator may give; certificateHold is left out on
// purpose: a revocation is final.
enum class RevocationReason {
  kUnspecified = 0,
  kKeyCompromise = 1,
  kCaCompromise = 2,
  kAffiliationChanged = 3,
  kSuperseded = 4,
  kCessationOfOperation = 5,
};

// "unspecified", "keyCompromise", "cACompromise", "affiliationChanged", "superseded",
// "cessationOfOperation" (the RFC 5280 / openssl names).
absl::string_view RevocationReasonName(RevocationReason reason);
// Accepts the names above, case-insensitively; InvalidArgument naming --reason otherwise.
absl::StatusOr<RevocationReason> ParseRevocationReason(absl::string_view name);

enum class CertificateKind { kOrganisation, kGateway };
absl::string_view CertificateKindName(CertificateKind kind);  // "organisation", "gateway"

struct CertificateRecord {
  uint64_t serial = 0;
  CertificateKind kind = CertificateKind::kOrganisation;
  std::string oin;
  std::string organisation;
  std::string common_name;
  absl::Time not_before;
  absl::Time not_after;
  std::optional<absl::Time> revoked_at;
  RevocationReason reason = RevocationReason::kUnspecified;  // meaningful when revoked
  std::optional<uint64_t> renewed_from;                      // serial this one renewed

  bool operator==(const CertificateRecord& o) const;
};

struct CaState {
  uint64_t next_serial = 0x1000;
  uint64_t crl_number = 0;
  absl::Time crl_next_update;
  std::vector<CertificateRecord> certificates;  // in issue order

  bool operator==(const CaState& o) const;
  const CertificateRecord* Find(uint64_t serial) const;
  CertificateRecord* Find(uint64_t serial);
};

std::string SerializeCaState(const CaState& state);
absl::StatusOr<CaState> ParseCaState(absl::string_view text, absl::string_view file_name);

// Serials are written in upper-case hex, as `openssl x509 -serial` prints them.
std::string SerialHex(uint64_t serial);
// Hex, with or without "0x"; InvalidArgument naming --serial otherwise.
absl::StatusOr<uint64_t> ParseSerial(absl::string_view text);

}  // namespace knooppunt::pki

#endif  // KNOOPPUNT_GATEWAY_PKI_CA_STATE_H_
