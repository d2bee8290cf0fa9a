#include "gateway/pki/certificate_authority.h"

#include <openssl/bio.h>
#include <openssl/rand.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gateway/pki/pki_files.h"
#include "gateway/pki/x509_profile.h"

namespace knooppunt::pki {
namespace fs = std::filesystem;

namespace {

constexpr char kStateFile[] = "state.txt";
constexpr absl::Duration kBackdate = absl::Hours(1);  // tolerance for peers' clock skew

std::string FormatDay(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d %H:%M:%SZ", t, absl::UTCTimeZone());
}

absl::Status Annotate(const absl::Status& status, absl::string_view context) {
  return absl::Status(status.code(), absl::StrCat(context, ": ", status.message()));
}

absl::Status CheckDays(int days, int max) {
  if (days < 1 || days > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("--days must be between 1 and ", max, "; got ", days));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RandomSerial() {
  uint64_t v = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&v), sizeof v) != 1) {
    return absl::InternalError(absl::StrCat("no randomness: ", OpenSslErrors()));
  }
  return (v & 0x7FFFFFFFFFFFFFFFull) | 0x4000000000000000ull;  // positive, 63 bits
}

std::vector<RevokedEntry> RevokedEntries(const CaState& state) {
  std::vector<RevokedEntry> out;
  for (const CertificateRecord& c : state.certificates) {
    if (c.revoked_at) out.push_back({c.serial, *c.revoked_at, static_cast<int>(c.reason)});
  }
  return out;
}

}  // namespace

absl::string_view CertificateStatusName(CertificateStatus status) {
  switch (status) {
    case CertificateStatus::kValid:
      return "VALID";
    case CertificateStatus::kExpiring:
      return "EXPIRING";
    case CertificateStatus::kExpired:
      return "EXPIRED";
    case CertificateStatus::kRevoked:
      return "REVOKED";
  }
  return "VALID";
}

CertificateStatus StatusAt(const CertificateRecord& record, absl::Time now, absl::Duration warn) {
  if (record.revoked_at) return CertificateStatus::kRevoked;
  if (record.not_after <= now) return CertificateStatus::kExpired;
  if (record.not_after - now <= warn) return CertificateStatus::kExpiring;
  return CertificateStatus::kValid;
}

int64_t DaysLeft(absl::Time not_after, absl::Time now) {
  const int64_t seconds = absl::ToInt64Seconds(not_after - now);
  constexpr int64_t kDay = 86400;
  return seconds >= 0 ? seconds / kDay : -((-seconds + kDay - 1) / kDay);
}

struct CertificateAuthority::Impl {
  std::string dir;
  CaOptions options;
  X509Ptr ca_cert;
  EvpPkeyPtr ca_key;
  std::string ca_pem;

  std::string Path(absl::string_view name) const { return absl::StrCat(dir, "/", name); }
  std::string CrlHashPath() const {
    return absl::StrCat(dir, "/crl/", SubjectHashHex(ca_cert.get()), ".r0");
  }
  std::string IssuedPath(uint64_t serial) const {
    return absl::StrCat(dir, "/issued/", SerialHex(serial), ".crt");
  }

  absl::StatusOr<CaState> LoadState() const {
    const std::string path = Path(kStateFile);
    absl::StatusOr<std::string> text = ReadWholeFile(path);
    if (!text.ok()) return text.status();
    return ParseCaState(*text, path);
  }

  absl::Status SaveState(const CaState& state) const {
    return WriteFileAtomically(Path(kStateFile), SerializeCaState(state), 0644);
  }

  // Signs the next CRL for `state` (bumping its number and next update) and installs it.
  absl::Status WriteCrl(CaState& state) const {
    const absl::Time now = options.clock();
    absl::StatusOr<X509CrlPtr> crl =
        SignCrl(ca_cert.get(), ca_key.get(), RevokedEntries(state), state.crl_number + 1,
                now - kBackdate, now + options.crl_validity);
    if (!crl.ok()) return crl.status();
    absl::StatusOr<std::string> pem = CrlToPem(crl->get());
    if (!pem.ok()) return pem.status();
    std::error_code ec;
    fs::create_directories(Path("crl"), ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", Path("crl"), ": ", ec.message()));
    if (absl::Status s = WriteFileAtomically(Path("crl.pem"), *pem, 0644); !s.ok()) return s;
    if (absl::Status s = WriteFileAtomically(CrlHashPath(), *pem, 0644); !s.ok()) return s;
    state.crl_number += 1;
    state.crl_next_update = now + options.crl_validity;
    return absl::OkStatus();
  }

  absl::Status CheckWithinCa(absl::Time not_after) const {
    absl::StatusOr<absl::Time> ca_end = NotAfterOf(ca_cert.get());
    if (!ca_end.ok()) return ca_end.status();
    if (not_after > *ca_end) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the certificate would outlive the CA (CA valid until ", FormatDay(*ca_end),
          "); use fewer --days"));
    }
    return absl::OkStatus();
  }

  // Signs, stores issued/<serial>.crt and records it in `state` (not yet saved).
  absl::StatusOr<IssuedCertificate> SignAndStore(CaState& state, CertificateRecord record,
                                                 const X509_NAME* subject,
                                                 const GENERAL_NAMES* san, EVP_PKEY* key,
                                                 absl::Duration validity, bool new_key) {
    const absl::Time now = options.clock();
    record.serial = state.next_serial;
    record.not_before = absl::FromUnixSeconds(absl::ToUnixSeconds(now - kBackdate));
    record.not_after = absl::FromUnixSeconds(absl::ToUnixSeconds(now + validity));
    if (absl::Status s = CheckWithinCa(record.not_after); !s.ok()) return s;
    absl::StatusOr<X509Ptr> cert =
        SignLeafCertificate(subject, san, key, record.serial, record.not_before,
                            record.not_after, ca_cert.get(), ca_key.get());
    if (!cert.ok()) return cert.status();
    IssuedCertificate out;
    absl::StatusOr<std::string> cert_pem = CertificateToPem(cert->get());
    if (!cert_pem.ok()) return cert_pem.status();
    out.certificate_pem = *std::move(cert_pem);
    if (new_key) {
      absl::StatusOr<std::string> key_pem = PrivateKeyToPem(key);
      if (!key_pem.ok()) return key_pem.status();
      out.private_key_pem = *std::move(key_pem);
    }
    std::error_code ec;
    fs::create_directories(Path("issued"), ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot create ", Path("issued"), ": ", ec.message()));
    if (absl::Status s = WriteFileAtomically(IssuedPath(record.serial), out.certificate_pem, 0644);
        !s.ok()) {
      return s;
    }
    state.next_serial += 1;
    state.certificates.push_back(record);
    if (absl::Status s = SaveState(state); !s.ok()) return s;
    out.record = std::move(record);
    return out;
  }
};

CertificateAuthority::CertificateAuthority(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CertificateAuthority::~CertificateAuthority() = default;

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::Init(
    const InitRequest& request, CaOptions options) {
  if (request.ca_dir.empty()) return absl::InvalidArgumentError("--ca_dir is required");
  if (absl::Status s = CheckNameValue(request.name, "--name"); !s.ok()) return s;
  const std::string organisation =
      request.organisation.empty() ? request.name : request.organisation;
  if (absl::Status s = CheckNameValue(organisation, "--org"); !s.ok()) return s;
  if (absl::Status s = CheckDays(request.days, 36500); !s.ok()) return s;

  std::error_code ec;
  const fs::path dir(request.ca_dir);
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) {
      return absl::FailedPreconditionError(
          absl::StrCat("--ca_dir ", request.ca_dir, " exists and is not a directory"));
    }
    if (fs::exists(dir / kStateFile, ec) || fs::exists(dir / "ca.key", ec)) {
      return absl::AlreadyExistsError(absl::StrCat(
          "--ca_dir ", request.ca_dir, " already holds a CA; not overwriting it"));
    }
    if (!fs::is_empty(dir, ec)) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--ca_dir ", request.ca_dir, " is not empty; a new CA needs an empty or new directory"));
    }
  } else {
    fs::create_directories(dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create --ca_dir ", request.ca_dir, ": ", ec.message()));
    }
  }
  if (::chmod(request.ca_dir.c_str(), 0700) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot chmod ", request.ca_dir, ": ", std::strerror(errno)));
  }
  absl::StatusOr<DirectoryLock> lock = DirectoryLock::Acquire(request.ca_dir);
  if (!lock.ok()) return lock.status();

  auto impl = std::make_unique<Impl>();
  impl->dir = request.ca_dir;
  impl->options = std::move(options);
  absl::StatusOr<X509NamePtr> subject = MakeSubject(organisation, request.name, "");
  if (!subject.ok()) return subject.status();
  absl::StatusOr<EvpPkeyPtr> key = NewP256Key();
  if (!key.ok()) return key.status();
  absl::StatusOr<uint64_t> serial = RandomSerial();
  if (!serial.ok()) return serial.status();
  const absl::Time now = impl->options.clock();
  absl::StatusOr<X509Ptr> cert =
      SignCaCertificate(subject->get(), key->get(), *serial,
                        absl::FromUnixSeconds(absl::ToUnixSeconds(now - kBackdate)),
                        absl::FromUnixSeconds(absl::ToUnixSeconds(now + absl::Hours(24) * request.days)));
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key_pem = PrivateKeyToPem(key->get());
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<std::string> cert_pem = CertificateToPem(cert->get());
  if (!cert_pem.ok()) return cert_pem.status();
  impl->ca_cert = *std::move(cert);
  impl->ca_key = *std::move(key);
  impl->ca_pem = *cert_pem;

  // state.txt is written last: a directory without it is not (yet) a CA.
  if (absl::Status s = WriteFileAtomically(impl->Path("ca.key"), *key_pem, 0600, Overwrite::kNo);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = WriteFileAtomically(impl->Path("ca.crt"), *cert_pem, 0644); !s.ok()) return s;
  fs::create_directories(impl->Path("issued"), ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create issued/: ", ec.message()));
  CaState state;
  if (absl::Status s = impl->WriteCrl(state); !s.ok()) return s;
  if (absl::Status s = impl->SaveState(state); !s.ok()) return s;
  return std::unique_ptr<CertificateAuthority>(new CertificateAuthority(std::move(impl)));
}

absl::StatusOr<std::unique_ptr<CertificateAuthority>> CertificateAuthority::Open(
    const std::string& ca_dir, CaOptions options) {
  if (ca_dir.empty()) return absl::InvalidArgumentError("--ca_dir is required");
  std::error_code ec;
  if (!fs::is_directory(ca_dir, ec)) {
    return absl::NotFoundError(absl::StrCat("CA directory ", ca_dir,
                                            " does not exist (make one with `knooppunt-pki init`)"));
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = ca_dir;
  impl->options = std::move(options);
  for (const char* name : {kStateFile, "ca.crt", "ca.key"}) {
    if (!fs::exists(impl->Path(name), ec)) {
      return absl::FailedPreconditionError(
          absl::StrCat(ca_dir, " is not a knooppunt-pki CA directory: ", name, " is missing"));
    }
  }
  struct stat st;
  if (::stat(impl->Path("ca.key").c_str(), &st) != 0) {
    return absl::InternalError(absl::StrCat("cannot stat ", impl->Path("ca.key")));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s is readable by others (mode %04o); run chmod 600 on it", impl->Path("ca.key"),
        st.st_mode & 07777));
  }
  absl::StatusOr<std::string> cert_pem = ReadWholeFile(impl->Path("ca.crt"));
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<X509Ptr> cert = CertificateFromPem(*cert_pem, impl->Path("ca.crt"));
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key_pem = ReadWholeFile(impl->Path("ca.key"));
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(*key_pem, impl->Path("ca.key"));
  if (!key.ok()) return key.status();
  if (X509_check_private_key(cert->get(), key->get()) != 1) {
    OpenSslErrors();
    return absl::FailedPreconditionError(
        absl::StrCat(impl->Path("ca.key"), " does not belong to ", impl->Path("ca.crt")));
  }
  impl->ca_cert = *std::move(cert);
  impl->ca_key = *std::move(key);
  impl->ca_pem = *std::move(cert_pem);
  if (absl::StatusOr<CaState> state = impl->LoadState(); !state.ok()) return state.status();
  return std::unique_ptr<CertificateAuthority>(new CertificateAuthority(std::move(impl)));
}

absl::StatusOr<IssuedCertificate> CertificateAuthority::Issue(const IssueRequest& request) {
  if (request.oin.empty()) return absl::InvalidArgumentError("--oin is required");
  absl::StatusOr<X509NamePtr> subject =
      MakeSubject(request.organisation, request.common_name, request.oin);
  if (!subject.ok()) return subject.status();
  absl::StatusOr<GeneralNamesPtr> san =
      MakeSubjectAltNames(request.dns_names, request.ip_addresses);
  if (!san.ok()) return san.status();
  if (request.kind == CertificateKind::kGateway && *san == nullptr) {
    return absl::InvalidArgumentError(
        "--dns or --ip is required for the gateway's certificate (parties verify the gateway's "
        "host name against its subjectAltName)");
  }
  if (absl::Status s = CheckDays(request.days, 3650); !s.ok()) return s;

  absl::StatusOr<DirectoryLock> lock = DirectoryLock::Acquire(impl_->dir);
  if (!lock.ok()) return lock.status();
  absl::StatusOr<CaState> state = impl_->LoadState();
  if (!state.ok()) return state.status();
  absl::StatusOr<EvpPkeyPtr> key = NewP256Key();
  if (!key.ok()) return key.status();
  CertificateRecord record;
  record.kind = request.kind;
  record.oin = request.oin;
  record.organisation = request.organisation;
  record.common_name = request.common_name;
  return impl_->SignAndStore(*state, std::move(record), subject->get(), san->get(), key->get(),
                             absl::Hours(24) * request.days, /*new_key=*/true);
}

absl::StatusOr<IssuedCertificate> CertificateAuthority::Renew(const RenewRequest& request) {
  if (request.days != 0) {
    if (absl::Status s = CheckDays(request.days, 3650); !s.ok()) return s;
  }
  absl::StatusOr<DirectoryLock> lock = DirectoryLock::Acquire(impl_->dir);
  if (!lock.ok()) return lock.status();
  absl::StatusOr<CaState> state = impl_->LoadState();
  if (!state.ok()) return state.status();

  std::string pem = request.certificate_pem;
  std::string what = "--cert";
  if (request.serial) {
    if (state->Find(*request.serial) == nullptr) {
      return absl::NotFoundError(absl::StrCat("--serial ", SerialHex(*request.serial),
                                              ": this CA issued no certificate with that serial"));
    }
    what = impl_->IssuedPath(*request.serial);
    absl::StatusOr<std::string> stored = ReadWholeFile(what);
    if (!stored.ok()) return stored.status();
    pem = *std::move(stored);
  } else if (pem.empty()) {
    return absl::InvalidArgumentError("--cert or --serial is required");
  }
  absl::StatusOr<X509Ptr> old = CertificateFromPem(pem, what);
  if (!old.ok()) return old.status();
  if (!IssuedBy(old->get(), impl_->ca_cert.get())) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, " was not issued by this CA (", ca_subject(), ")"));
  }
  absl::StatusOr<uint64_t> old_serial = SerialOf(old->get());
  if (!old_serial.ok()) return old_serial.status();
  const CertificateRecord* old_record = state->Find(*old_serial);
  if (old_record == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        what, " (serial ", SerialHex(*old_serial), ") is not in this CA's state.txt"));
  }
  if (old_record->revoked_at) {
    return absl::FailedPreconditionError(absl::StrCat(
        "certificate ", SerialHex(*old_serial), " is revoked (",
        RevocationReasonName(old_record->reason), "); issue a new one with `issue` instead"));
  }
  absl::Duration validity = absl::Hours(24) * request.days;
  if (request.days == 0) {
    absl::StatusOr<absl::Time> nb = NotBeforeOf(old->get());
    absl::StatusOr<absl::Time> na = NotAfterOf(old->get());
    if (!nb.ok()) return nb.status();
    if (!na.ok()) return na.status();
    const int64_t days = absl::ToInt64Hours(*na - *nb) / 24;
    validity = absl::Hours(24) * (days < 1 ? 1 : days);
  }

  EvpPkeyPtr key;
  if (request.keep_key) {
    key.reset(X509_get_pubkey(old->get()));
    if (!key) return absl::InternalError(absl::StrCat("cannot read the public key: ", OpenSslErrors()));
  } else {
    absl::StatusOr<EvpPkeyPtr> fresh = NewP256Key();
    if (!fresh.ok()) return fresh.status();
    key = *std::move(fresh);
  }
  GeneralNamesPtr san(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(old->get(), NID_subject_alt_name, nullptr, nullptr)));
  CertificateRecord record = *old_record;
  record.revoked_at.reset();
  record.reason = RevocationReason::kUnspecified;
  record.renewed_from = old_record->serial;
  return impl_->SignAndStore(*state, std::move(record), X509_get_subject_name(old->get()),
                             san.get(), key.get(), validity, /*new_key=*/!request.keep_key);
}

absl::StatusOr<CertificateRecord> CertificateAuthority::Revoke(uint64_t serial,
                                                               RevocationReason reason) {
  absl::StatusOr<DirectoryLock> lock = DirectoryLock::Acquire(impl_->dir);
  if (!lock.ok()) return lock.status();
  absl::StatusOr<CaState> state = impl_->LoadState();
  if (!state.ok()) return state.status();
  CertificateRecord* record = state->Find(serial);
  if (record == nullptr) {
    return absl::NotFoundError(absl::StrCat(
        "--serial ", SerialHex(serial),
        ": this CA issued no certificate with that serial (see `knooppunt-pki list`)"));
  }
  if (record->revoked_at) {
    return absl::FailedPreconditionError(absl::StrCat(
        "certificate ", SerialHex(serial), " was already revoked on ", FormatDay(*record->revoked_at),
        " (", RevocationReasonName(record->reason), ")"));
  }
  record->revoked_at = absl::FromUnixSeconds(absl::ToUnixSeconds(impl_->options.clock()));
  record->reason = reason;
  const CertificateRecord revoked = *record;
  if (absl::Status s = impl_->WriteCrl(*state); !s.ok()) {
    return Annotate(s, absl::StrCat("certificate ", SerialHex(serial),
                                    " NOT revoked: the CRL could not be written"));
  }
  if (absl::Status s = impl_->SaveState(*state); !s.ok()) {
    return Annotate(s, absl::StrCat("the CRL revokes ", SerialHex(serial),
                                    " but state.txt could not be updated; run revoke again"));
  }
  return revoked;
}

absl::Status CertificateAuthority::RegenerateCrl() {
  absl::StatusOr<DirectoryLock> lock = DirectoryLock::Acquire(impl_->dir);
  if (!lock.ok()) return lock.status();
  absl::StatusOr<CaState> state = impl_->LoadState();
  if (!state.ok()) return state.status();
  if (absl::Status s = impl_->WriteCrl(*state); !s.ok()) return s;
  return impl_->SaveState(*state);
}

absl::StatusOr<CaState> CertificateAuthority::State() const { return impl_->LoadState(); }

const std::string& CertificateAuthority::ca_dir() const { return impl_->dir; }
const std::string& CertificateAuthority::ca_certificate_pem() const { return impl_->ca_pem; }

std::string CertificateAuthority::ca_subject() const {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio) return "";
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(impl_->ca_cert.get()), 0,
                     XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

absl::Time CertificateAuthority::ca_not_after() const {
  absl::StatusOr<absl::Time> t = NotAfterOf(impl_->ca_cert.get());
  return t.ok() ? *t : absl::InfinitePast();
}

std::string CertificateAuthority::crl_path() const { return impl_->Path("crl.pem"); }
std::string CertificateAuthority::crl_directory() const { return impl_->Path("crl"); }
std::string CertificateAuthority::crl_hash_path() const { return impl_->CrlHashPath(); }
std::string CertificateAuthority::IssuedPath(uint64_t serial) const {
  return impl_->IssuedPath(serial);
}

}  // namespace knooppunt::pki
