#include "gateway/pki/x509_profile.h"

#include <arpa/inet.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pem.h>

#include <cstdio>
#include <ctime>
#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gateway/common/ids.h"

namespace knooppunt::pki {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

absl::Status SslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", OpenSslErrors()));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

// Number of code points when `s` is valid UTF-8 without control characters, -1 otherwise.
int Utf8PrintableLength(absl::string_view s) {
  int count = 0;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t len;
    uint32_t cp;
    if (c < 0x80) {
      len = 1;
      cp = c;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return -1;
    }
    if (i + len > s.size()) return -1;
    for (size_t k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return -1;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong encodings, surrogates and out-of-range code points are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
      return -1;
    }
    if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) return -1;
    i += len;
    ++count;
  }
  return count;
}

bool IsValidDnsName(absl::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  if (absl::StartsWith(name, "*.")) name.remove_prefix(2);
  for (absl::string_view label : absl::StrSplit(name, '.')) {
    if (label.empty() || label.size() > 63) return false;
    if (label.front() == '-' || label.back() == '-') return false;
    for (char c : label) {
      if (!absl::ascii_isalnum(c) && c != '-') return false;
    }
  }
  return true;
}

bool SetTime(ASN1_TIME* field, absl::Time t) {
  return field != nullptr && ASN1_TIME_set(field, absl::ToTimeT(t)) != nullptr;
}

absl::StatusOr<absl::Time> FromAsn1Time(const ASN1_TIME* t) {
  struct tm tm = {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return absl::InvalidArgumentError("certificate has an unreadable validity time");
  }
  return absl::FromTimeT(timegm(&tm));
}

absl::Status AddExtension(X509* cert, X509V3_CTX* ctx, int nid, const char* value) {
  X509_EXTENSION* ext = X509V3_EXT_nconf_nid(nullptr, ctx, nid, value);
  if (ext == nullptr) return SslError(absl::StrCat("cannot make extension ", OBJ_nid2sn(nid)));
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return SslError(absl::StrCat("cannot add extension ", OBJ_nid2sn(nid)));
  return absl::OkStatus();
}

// Everything a certificate of either kind has in common; the caller adds extensions.
absl::StatusOr<X509Ptr> NewCertificate(const X509_NAME* subject, const X509_NAME* issuer,
                                       EVP_PKEY* subject_key, uint64_t serial,
                                       absl::Time not_before, absl::Time not_after) {
  if (not_after <= not_before) {
    return absl::InvalidArgumentError("validity must end after it starts (--days must be > 0)");
  }
  X509Ptr cert(X509_new());
  if (!cert) return SslError("out of memory");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1 ||
      ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert.get()), serial) != 1 ||
      X509_set_subject_name(cert.get(), subject) != 1 ||
      X509_set_issuer_name(cert.get(), issuer) != 1 ||
      !SetTime(X509_getm_notBefore(cert.get()), not_before) ||
      !SetTime(X509_getm_notAfter(cert.get()), not_after) ||
      X509_set_pubkey(cert.get(), subject_key) != 1) {
    return SslError("cannot fill in certificate");
  }
  return cert;
}

}  // namespace

std::string OpenSslErrors() {
  std::string out;
  unsigned long err;
  while ((err = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

absl::StatusOr<EvpPkeyPtr> NewP256Key() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return SslError("cannot generate an EC P-256 key");
  return key;
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return SslError("cannot encode private key");
  }
  return BioContents(bio.get());
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem, absl::string_view what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return SslError("out of memory");
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a PEM private key"));
  }
  return key;
}

absl::StatusOr<std::string> CertificateToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return SslError("cannot encode certificate");
  return BioContents(bio.get());
}

absl::StatusOr<X509Ptr> CertificateFromPem(absl::string_view pem, absl::string_view what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return SslError("out of memory");
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(what, " is not a PEM certificate"));
  }
  return cert;
}

absl::StatusOr<std::string> CrlToPem(X509_CRL* crl) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl) != 1) return SslError("cannot encode CRL");
  return BioContents(bio.get());
}

absl::Status CheckNameValue(absl::string_view value, absl::string_view flag) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " is required"));
  const int length = Utf8PrintableLength(value);
  if (length < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " must be UTF-8 text without control characters"));
  }
  if (length > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " is ", length, " characters; at most 64 fit in a certificate"));
  }
  return absl::OkStatus();
}

absl::StatusOr<X509NamePtr> MakeSubject(absl::string_view organisation,
                                        absl::string_view common_name, absl::string_view oin) {
  if (absl::Status s = CheckNameValue(organisation, "--org"); !s.ok()) return s;
  if (absl::Status s = CheckNameValue(common_name, "--cn"); !s.ok()) return s;
  if (!oin.empty() && !IsValidOin(oin)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--oin must be exactly 20 digits (an OIN such as 00000001002220647000); got ",
        oin.size(), " characters", oin.size() == 20 ? " that are not all digits" : ""));
  }
  X509NamePtr name(X509_NAME_new());
  if (!name) return SslError("out of memory");
  auto add = [&](int nid, int type, absl::string_view value) {
    return X509_NAME_add_entry_by_NID(name.get(), nid, type,
                                      reinterpret_cast<const unsigned char*>(value.data()),
                                      static_cast<int>(value.size()), -1, 0) == 1;
  };
  // The string types follow OpenSSL's table: C and serialNumber PrintableString, O and CN
  // UTF8String (the default mask is utf8only), as `openssl req` makes them.
  if (!add(NID_countryName, MBSTRING_ASC, "NL") ||
      !add(NID_organizationName, MBSTRING_UTF8, organisation) ||
      !add(NID_commonName, MBSTRING_UTF8, common_name) ||
      (!oin.empty() && !add(NID_serialNumber, MBSTRING_ASC, oin))) {
    return SslError("cannot build subject");
  }
  return name;
}

absl::StatusOr<GeneralNamesPtr> MakeSubjectAltNames(const std::vector<std::string>& dns_names,
                                                    const std::vector<std::string>& ips) {
  if (dns_names.empty() && ips.empty()) return GeneralNamesPtr();
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (!names) return SslError("out of memory");
  for (const std::string& dns : dns_names) {
    if (!IsValidDnsName(dns)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--dns: '", dns, "' is not a DNS name (letters, digits, '-' and dots; '*.' prefix allowed)"));
    }
    ASN1_IA5STRING* value = ASN1_IA5STRING_new();
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (value == nullptr || gn == nullptr ||
        ASN1_STRING_set(value, dns.data(), static_cast<int>(dns.size())) != 1) {
      ASN1_IA5STRING_free(value);
      GENERAL_NAME_free(gn);
      return SslError("out of memory");
    }
    GENERAL_NAME_set0_value(gn, GEN_DNS, value);
    sk_GENERAL_NAME_push(names.get(), gn);
  }
  for (const std::string& ip : ips) {
    unsigned char buf[16];
    const bool valid = inet_pton(AF_INET, ip.c_str(), buf) == 1 ||
                       inet_pton(AF_INET6, ip.c_str(), buf) == 1;
    ASN1_OCTET_STRING* value = valid ? a2i_IPADDRESS(ip.c_str()) : nullptr;
    if (value == nullptr) {
      ERR_clear_error();
      return absl::InvalidArgumentError(
          absl::StrCat("--ip: '", ip, "' is not an IPv4 or IPv6 address"));
    }
    GENERAL_NAME* gn = GENERAL_NAME_new();
    if (gn == nullptr) {
      ASN1_OCTET_STRING_free(value);
      return SslError("out of memory");
    }
    GENERAL_NAME_set0_value(gn, GEN_IPADD, value);
    sk_GENERAL_NAME_push(names.get(), gn);
  }
  return names;
}

absl::StatusOr<X509Ptr> SignCaCertificate(const X509_NAME* subject, EVP_PKEY* key,
                                          uint64_t serial, absl::Time not_before,
                                          absl::Time not_after) {
  absl::StatusOr<X509Ptr> cert =
      NewCertificate(subject, subject, key, serial, not_before, not_after);
  if (!cert.ok()) return cert.status();
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, cert->get(), cert->get(), nullptr, nullptr, 0);
  X509V3_set_issuer_pkey(&ctx, key);
  for (auto [nid, value] : {std::pair<int, const char*>{NID_basic_constraints, "critical,CA:TRUE"},
                            {NID_key_usage, "critical,keyCertSign,cRLSign"},
                            {NID_subject_key_identifier, "hash"},
                            {NID_authority_key_identifier, "keyid:always"}}) {
    if (absl::Status s = AddExtension(cert->get(), &ctx, nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert->get(), key, EVP_sha256()) <= 0) return SslError("cannot sign CA certificate");
  return cert;
}

absl::StatusOr<X509Ptr> SignLeafCertificate(const X509_NAME* subject, const GENERAL_NAMES* san,
                                            EVP_PKEY* subject_key, uint64_t serial,
                                            absl::Time not_before, absl::Time not_after,
                                            X509* ca_cert, EVP_PKEY* ca_key) {
  absl::StatusOr<X509Ptr> cert = NewCertificate(subject, X509_get_subject_name(ca_cert),
                                                subject_key, serial, not_before, not_after);
  if (!cert.ok()) return cert.status();
  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca_cert, cert->get(), nullptr, nullptr, 0);
  for (auto [nid, value] : {std::pair<int, const char*>{NID_basic_constraints, "critical,CA:FALSE"},
                            {NID_key_usage, "critical,digitalSignature"},
                            {NID_ext_key_usage, "serverAuth,clientAuth"}}) {
    if (absl::Status s = AddExtension(cert->get(), &ctx, nid, value); !s.ok()) return s;
  }
  if (san != nullptr && sk_GENERAL_NAME_num(san) > 0 &&
      X509_add1_ext_i2d(cert->get(), NID_subject_alt_name, const_cast<GENERAL_NAMES*>(san), 0,
                    X509V3_ADD_DEFAULT) != 1) {
    return SslError("cannot add subjectAltName");
  }
  for (auto [nid, value] : {std::pair<int, const char*>{NID_subject_key_identifier, "hash"},
                            {NID_authority_key_identifier, "keyid:always"}}) {
    if (absl::Status s = AddExtension(cert->get(), &ctx, nid, value); !s.ok()) return s;
  }
  if (X509_sign(cert->get(), ca_key, EVP_sha256()) <= 0) return SslError("cannot sign certificate");
  return cert;
}

absl::StatusOr<X509CrlPtr> SignCrl(X509* ca_cert, EVP_PKEY* ca_key,
                                   const std::vector<RevokedEntry>& revoked, uint64_t crl_number,
                                   absl::Time this_update, absl::Time next_update) {
  X509CrlPtr crl(X509_CRL_new());
  if (!crl) return SslError("out of memory");
  ASN1_TIME* last = ASN1_TIME_set(nullptr, absl::ToTimeT(this_update));
  ASN1_TIME* next = ASN1_TIME_set(nullptr, absl::ToTimeT(next_update));
  const bool ok = last != nullptr && next != nullptr &&
                  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2) == 1 &&
                  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ca_cert)) == 1 &&
                  X509_CRL_set1_lastUpdate(crl.get(), last) == 1 &&
                  X509_CRL_set1_nextUpdate(crl.get(), next) == 1;
  ASN1_TIME_free(last);
  ASN1_TIME_free(next);
  if (!ok) return SslError("cannot fill in CRL");

  for (const RevokedEntry& entry : revoked) {
    X509_REVOKED* r = X509_REVOKED_new();
    ASN1_INTEGER* serial = ASN1_INTEGER_new();
    ASN1_TIME* when = ASN1_TIME_set(nullptr, absl::ToTimeT(entry.revoked_at));
    bool entry_ok = r != nullptr && serial != nullptr && when != nullptr &&
                    ASN1_INTEGER_set_uint64(serial, entry.serial) == 1 &&
                    X509_REVOKED_set_serialNumber(r, serial) == 1 &&
                    X509_REVOKED_set_revocationDate(r, when) == 1;
    ASN1_INTEGER_free(serial);
    ASN1_TIME_free(when);
    if (entry_ok && entry.reason_code != 0) {
      ASN1_ENUMERATED* reason = ASN1_ENUMERATED_new();
      entry_ok = reason != nullptr && ASN1_ENUMERATED_set(reason, entry.reason_code) == 1 &&
                 X509_REVOKED_add1_ext_i2d(r, NID_crl_reason, reason, 0, 0) == 1;
      ASN1_ENUMERATED_free(reason);
    }
    if (!entry_ok || X509_CRL_add0_revoked(crl.get(), r) != 1) {
      X509_REVOKED_free(r);
      return SslError("cannot add CRL entry");
    }
  }
  X509_CRL_sort(crl.get());

  ASN1_INTEGER* number = ASN1_INTEGER_new();
  const bool number_ok = number != nullptr && ASN1_INTEGER_set_uint64(number, crl_number) == 1 &&
                         X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number, 0, 0) == 1;
  ASN1_INTEGER_free(number);
  if (!number_ok) return SslError("cannot add crlNumber");

  X509V3_CTX ctx;
  X509V3_set_ctx(&ctx, ca_cert, nullptr, nullptr, crl.get(), 0);
  X509_EXTENSION* aki =
      X509V3_EXT_nconf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always");
  if (aki == nullptr) return SslError("cannot make CRL authorityKeyIdentifier");
  const int added = X509_CRL_add_ext(crl.get(), aki, -1);
  X509_EXTENSION_free(aki);
  if (added != 1) return SslError("cannot add CRL authorityKeyIdentifier");

  if (X509_CRL_sign(crl.get(), ca_key, EVP_sha256()) <= 0) return SslError("cannot sign CRL");
  return crl;
}

std::string SubjectHashHex(X509* cert) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08lx", X509_subject_name_hash(cert));
  return buf;
}

absl::StatusOr<uint64_t> SerialOf(X509* cert) {
  uint64_t serial = 0;
  if (ASN1_INTEGER_get_uint64(&serial, X509_get0_serialNumber(cert)) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError("certificate serial number is not a 64-bit number");
  }
  return serial;
}

absl::StatusOr<absl::Time> NotBeforeOf(X509* cert) { return FromAsn1Time(X509_get0_notBefore(cert)); }
absl::StatusOr<absl::Time> NotAfterOf(X509* cert) { return FromAsn1Time(X509_get0_notAfter(cert)); }

std::string SubjectEntry(X509* cert, int nid) {
  const X509_NAME* name = X509_get_subject_name(cert);
  const int i = X509_NAME_get_index_by_NID(name, nid, -1);
  if (i < 0) return "";
  const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, value);
  if (n < 0) {
    ERR_clear_error();
    return "";
  }
  std::string out(reinterpret_cast<const char*>(utf8), static_cast<size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

bool IssuedBy(X509* cert, X509* ca) {
  const bool ok = X509_check_issued(ca, cert) == X509_V_OK &&
                  X509_verify(cert, X509_get0_pubkey(ca)) == 1;
  ERR_clear_error();
  return ok;
}

}  // namespace knooppunt::pki
