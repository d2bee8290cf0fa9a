#include "gateway/common/ids.h"

#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <cstdint>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace knooppunt {
namespace {

bool AllDigits(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return absl::ascii_isdigit(c); });
}

bool AllZero(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

bool IsLowerHex(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(c) || (c >= 'a' && c <= 'f');
  });
}

}  // namespace

bool IsValidOin(absl::string_view oin) { return oin.size() == 20 && AllDigits(oin); }

bool IsValidGemeentecode(absl::string_view code) { return code.size() == 4 && AllDigits(code); }

bool IsValidBsn(absl::string_view bsn) {
  if (bsn.size() != 9 || !AllDigits(bsn)) return false;
  int sum = 0;
  for (int i = 0; i < 8; ++i) sum += (9 - i) * (bsn[i] - '0');
  sum -= bsn[8] - '0';
  return sum != 0 && sum % 11 == 0;
}

bool IsValidUuid(absl::string_view id) {
  if (id.size() != 36) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const bool dash_position = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash_position ? id[i] != '-' : !absl::ascii_isxdigit(id[i])) return false;
  }
  return true;
}

std::string RandomHex(int bytes) {
  if (bytes <= 0) return "";
  // Trace and span ids must be unique, not secret (W3C Trace Context): a per-thread absl
  // generator (seeded from the OS) costs a fraction of OpenSSL's locked DRBG, and a span id
  // is drawn for every exchange and every delivery.
  thread_local absl::BitGen gen;
  std::string raw(bytes, '\0');
  do {
    for (char& c : raw) c = static_cast<char>(absl::Uniform<uint8_t>(absl::IntervalClosed, gen, 0, 255));
  } while (AllZero(absl::BytesToHexString(raw)));
  return absl::BytesToHexString(raw);
}

std::string NewUuid() {
  std::array<unsigned char, 16> b;
  if (RAND_bytes(b.data(), static_cast<int>(b.size())) != 1) abort();
  b[6] = (b[6] & 0x0f) | 0x40;  // version 4
  b[8] = (b[8] & 0x3f) | 0x80;  // RFC 4122 variant
  const std::string hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
  return absl::StrCat(hex.substr(0, 8), "-", hex.substr(8, 4), "-", hex.substr(12, 4), "-",
                      hex.substr(16, 4), "-", hex.substr(20, 12));
}

TraceIds ContinueTrace(absl::string_view traceparent) {
  TraceIds ids;
  ids.span_id = RandomHex(8);
  // version(2) - trace-id(32) - parent-id(16) - flags(2). A later version may append
  // "-<more>"; the spec says to parse its first 55 characters as version 00.
  const bool future_version = traceparent.size() > 55 && traceparent[55] == '-' &&
                              traceparent.substr(0, 2) != "00";
  if (future_version) traceparent = traceparent.substr(0, 55);
  const bool well_formed = traceparent.size() == 55 && traceparent[2] == '-' &&
                           traceparent[35] == '-' && traceparent[52] == '-' &&
                           IsLowerHex(traceparent.substr(0, 2)) &&
                           traceparent.substr(0, 2) != "ff" &&
                           IsLowerHex(traceparent.substr(3, 32)) &&
                           IsLowerHex(traceparent.substr(36, 16)) &&
                           IsLowerHex(traceparent.substr(53, 2)) &&
                           !AllZero(traceparent.substr(3, 32)) &&
                           !AllZero(traceparent.substr(36, 16));
  if (well_formed) {
    ids.trace_id = std::string(traceparent.substr(3, 32));
    ids.parent_span_id = std::string(traceparent.substr(36, 16));
    ids.flags = std::string(traceparent.substr(53, 2));
  } else {
    ids.trace_id = RandomHex(16);
  }
  return ids;
}

std::string FormatTraceparent(const TraceIds& ids) {
  return absl::StrCat("00-", ids.trace_id, "-", ids.span_id, "-", ids.flags);
}

}  // namespace knooppunt
