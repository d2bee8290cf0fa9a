#include "gateway/pki/ca_state.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace knooppunt::pki {
namespace {

constexpr std::pair<RevocationReason, absl::string_view> kReasons[] = {
    {RevocationReason::kUnspecified, "unspecified"},
    {RevocationReason::kKeyCompromise, "keyCompromise"},
    {RevocationReason::kCaCompromise, "cACompromise"},
    {RevocationReason::kAffiliationChanged, "affiliationChanged"},
    {RevocationReason::kSuperseded, "superseded"},
    {RevocationReason::kCessationOfOperation, "cessationOfOperation"},
};

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

bool ParseTimeField(absl::string_view text, absl::Time* out) {
  std::string err;
  return absl::ParseTime("%Y-%m-%dT%H:%M:%SZ", text, absl::UTCTimeZone(), out, &err);
}

bool ParseHex(absl::string_view text, uint64_t* out) {
  if (absl::StartsWithIgnoreCase(text, "0x")) text.remove_prefix(2);
  if (text.empty() || text.size() > 16) return false;
  uint64_t v = 0;
  for (char c : text) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else {
      return false;
    }
    v = v * 16 + static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

}  // namespace

absl::string_view RevocationReasonName(RevocationReason reason) {
  for (const auto& [r, name] : kReasons) {
    if (r == reason) return name;
  }
  return "unspecified";
}

absl::StatusOr<RevocationReason> ParseRevocationReason(absl::string_view name) {
  for (const auto& [r, n] : kReasons) {
    if (absl::EqualsIgnoreCase(n, name)) return r;
  }
  std::vector<absl::string_view> names;
  for (const auto& entry : kReasons) names.push_back(entry.second);
  return absl::InvalidArgumentError(absl::StrCat("--reason '", name, "' is not one of: ",
                                                 absl::StrJoin(names, ", ")));
}

absl::string_view CertificateKindName(CertificateKind kind) {
  return kind == CertificateKind::kGateway ? "gateway" : "organisation";
}

bool CertificateRecord::operator==(const CertificateRecord& o) const {
  return serial == o.serial && kind == o.kind && oin == o.oin && organisation == o.organisation &&
         common_name == o.common_name && not_before == o.not_before && not_after == o.not_after &&
         revoked_at == o.revoked_at && reason == o.reason && renewed_from == o.renewed_from;
}

bool CaState::operator==(const CaState& o) const {
  return next_serial == o.next_serial && crl_number == o.crl_number &&
         crl_next_update == o.crl_next_update && certificates == o.certificates;
}

const CertificateRecord* CaState::Find(uint64_t serial) const {
  for (const CertificateRecord& c : certificates) {
    if (c.serial == serial) return &c;
  }
  return nullptr;
}

CertificateRecord* CaState::Find(uint64_t serial) {
  for (CertificateRecord& c : certificates) {
    if (c.serial == serial) return &c;
  }
  return nullptr;
}

std::string SerialHex(uint64_t serial) { return absl::StrFormat("%X", serial); }

absl::StatusOr<uint64_t> ParseSerial(absl::string_view text) {
  uint64_t serial;
  if (!ParseHex(absl::StripAsciiWhitespace(text), &serial)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--serial '", text, "' is not a serial number (hex, as `knooppunt-pki list` shows it)"));
  }
  return serial;
}

std::string SerializeCaState(const CaState& state) {
  std::string out =
      "# knooppunt-pki CA state; written by knooppunt-pki, do not edit by hand.\n"
      "version\t1\n";
  absl::StrAppend(&out, "next_serial\t", SerialHex(state.next_serial), "\n");
  absl::StrAppend(&out, "crl_number\t", state.crl_number, "\n");
  absl::StrAppend(&out, "crl_next_update\t", FormatUtc(state.crl_next_update), "\n");
  for (const CertificateRecord& c : state.certificates) {
    absl::StrAppend(&out, "cert\t", SerialHex(c.serial), "\t", CertificateKindName(c.kind), "\t",
                    c.oin, "\t", FormatUtc(c.not_before), "\t", FormatUtc(c.not_after), "\t",
                    c.revoked_at ? FormatUtc(*c.revoked_at) : "-", "\t",
                    c.revoked_at ? RevocationReasonName(c.reason) : "-", "\t",
                    c.renewed_from ? SerialHex(*c.renewed_from) : "-", "\t", c.organisation,
                    "\t", c.common_name, "\n");
  }
  return out;
}

absl::StatusOr<CaState> ParseCaState(absl::string_view text, absl::string_view file_name) {
  CaState state;
  bool have_version = false, have_serial = false, have_crl = false, have_next = false;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    auto bad = [&](absl::string_view why) {
      return absl::DataLossError(absl::StrCat(file_name, ":", line_no, ": ", why));
    };
    if (line.empty() || line[0] == '#') continue;
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
    if (f[0] == "version") {
      if (f.size() != 2 || f[1] != "1") return bad("unsupported state version");
      have_version = true;
    } else if (f[0] == "next_serial") {
      if (f.size() != 2 || !ParseHex(f[1], &state.next_serial)) return bad("bad next_serial");
      have_serial = true;
    } else if (f[0] == "crl_number") {
      if (f.size() != 2 || !absl::SimpleAtoi(f[1], &state.crl_number)) return bad("bad crl_number");
      have_crl = true;
    } else if (f[0] == "crl_next_update") {
      if (f.size() != 2 || !ParseTimeField(f[1], &state.crl_next_update)) {
        return bad("bad crl_next_update");
      }
      have_next = true;
    } else if (f[0] == "cert") {
      if (f.size() != 11) return bad(absl::StrCat("cert line has ", f.size(), " fields, want 11"));
      CertificateRecord c;
      if (!ParseHex(f[1], &c.serial)) return bad("bad serial");
      if (f[2] == "organisation") {
        c.kind = CertificateKind::kOrganisation;
      } else if (f[2] == "gateway") {
        c.kind = CertificateKind::kGateway;
      } else {
        return bad("bad certificate kind");
      }
      c.oin = std::string(f[3]);
      if (!ParseTimeField(f[4], &c.not_before) || !ParseTimeField(f[5], &c.not_after)) {
        return bad("bad validity time");
      }
      if (f[6] != "-") {
        absl::Time revoked;
        if (!ParseTimeField(f[6], &revoked)) return bad("bad revocation time");
        c.revoked_at = revoked;
        absl::StatusOr<RevocationReason> reason = ParseRevocationReason(f[7]);
        if (!reason.ok()) return bad("bad revocation reason");
        c.reason = *reason;
      } else if (f[7] != "-") {
        return bad("revocation reason without revocation time");
      }
      if (f[8] != "-") {
        uint64_t from;
        if (!ParseHex(f[8], &from)) return bad("bad renewed_from serial");
        c.renewed_from = from;
      }
      c.organisation = std::string(f[9]);
      c.common_name = std::string(f[10]);
      if (state.Find(c.serial) != nullptr) return bad("duplicate serial");
      state.certificates.push_back(std::move(c));
    } else {
      return bad(absl::StrCat("unknown item '", f[0], "'"));
    }
  }
  if (!have_version || !have_serial || !have_crl || !have_next) {
    return absl::DataLossError(absl::StrCat(
        file_name, ": incomplete (needs version, next_serial, crl_number, crl_next_update)"));
  }
  for (const CertificateRecord& c : state.certificates) {
    if (c.serial >= state.next_serial) {
      return absl::DataLossError(absl::StrCat(file_name, ": certificate serial ",
                                              SerialHex(c.serial), " is not below next_serial"));
    }
  }
  return state;
}

}  // namespace knooppunt::pki
