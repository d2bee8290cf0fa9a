#include "gateway/identity/crl_watcher.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/common/files.h"
#include "gateway/common/log.h"

namespace knooppunt::identity {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using CrlPtr = std::unique_ptr<X509_CRL, CrlFree>;

BioPtr MemBio(absl::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string NameDer(const X509_NAME* name) {
  unsigned char* der = nullptr;
  const int len = i2d_X509_NAME(name, &der);
  if (len <= 0) return "";
  std::string out(reinterpret_cast<const char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::string SerialHex(const ASN1_INTEGER* serial) {
  BIGNUM* bn = ASN1_INTEGER_to_BN(serial, nullptr);
  if (bn == nullptr) return "";
  char* hex = BN_bn2hex(bn);
  std::string out = hex != nullptr ? hex : "";
  OPENSSL_free(hex);
  BN_free(bn);
  return out;
}

std::vector<X509Ptr> ReadCertificates(absl::string_view pem) {
  std::vector<X509Ptr> out;
  BioPtr bio = MemBio(pem);
  while (bio) {
    X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (cert == nullptr) break;
    out.emplace_back(cert);
  }
  return out;
}

std::vector<CrlPtr> ReadCrls(absl::string_view data) {
  std::vector<CrlPtr> out;
  BioPtr bio = MemBio(data);
  while (bio) {
    X509_CRL* crl = PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr);
    if (crl == nullptr) break;
    out.emplace_back(crl);
  }
  if (out.empty()) {  // one DER CRL
    BioPtr der = MemBio(data);
    if (der) {
      X509_CRL* crl = d2i_X509_CRL_bio(der.get(), nullptr);
      if (crl != nullptr) out.emplace_back(crl);
    }
  }
  return out;
}

}  // namespace

std::string RevocationKeyOfPem(absl::string_view certificate_pem) {
  BioPtr bio = MemBio(certificate_pem);
  if (!bio) return "";
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return "";
  return absl::StrCat(NameDer(X509_get_issuer_name(cert.get())), ":",
                      SerialHex(X509_get0_serialNumber(cert.get())));
}

absl::StatusOr<std::unique_ptr<CrlWatcher>> CrlWatcher::Start(std::string directory,
                                                              std::string trust_roots_file,
                                                              absl::Duration interval) {
  std::error_code ec;
  if (!std::filesystem::is_directory(directory, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("CRL directory ", directory, " is not a directory"));
  }
  absl::StatusOr<std::string> roots = ReadWholeFile(trust_roots_file, "client CA file");
  if (!roots.ok()) return roots.status();
  std::unique_ptr<CrlWatcher> w(new CrlWatcher(std::move(directory), *std::move(roots)));
  {
    absl::MutexLock lock(&w->mu_);
    w->revoked_ = std::make_shared<const absl::flat_hash_set<std::string>>();
  }
  w->Refresh();
  CrlWatcher* self = w.get();
  w->thread_ = std::thread([self, interval] {
    while (!self->stop_.WaitForNotificationWithTimeout(interval)) self->Refresh();
  });
  return w;
}

CrlWatcher::~CrlWatcher() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

bool CrlWatcher::IsRevoked(absl::string_view revocation_key) const {
  if (revocation_key.empty()) return false;
  std::shared_ptr<const absl::flat_hash_set<std::string>> revoked;
  {
    absl::ReaderMutexLock lock(&mu_);
    revoked = revoked_;
  }
  return revoked->contains(revocation_key);
}

size_t CrlWatcher::revoked_count() const {
  absl::ReaderMutexLock lock(&mu_);
  return revoked_->size();
}

void CrlWatcher::Refresh() {
  // Names and contents of every file, in name order: compared whole with the last load, so
  // any change (a replaced file, a new one, one removed) reloads.
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(directory_, ec)) {
    if (entry.is_regular_file(ec)) names.push_back(entry.path().string());
  }
  if (ec) return;  // keep the last set
  std::sort(names.begin(), names.end());
  std::string all;
  std::vector<std::pair<std::string, std::string>> files;
  for (const std::string& name : names) {
    absl::StatusOr<std::string> data = ReadWholeFile(name, "CRL file");
    if (!data.ok()) continue;
    absl::StrAppend(&all, name, "\n", data->size(), "\n", *data);
    files.emplace_back(name, *std::move(data));
  }
  if (loaded_ && all == contents_) return;
  contents_ = std::move(all);
  loaded_ = true;

  std::vector<X509Ptr> roots = ReadCertificates(trust_roots_pem_);
  auto revoked = std::make_shared<absl::flat_hash_set<std::string>>();
  size_t crls = 0;
  for (const auto& [name, data] : files) {
    std::vector<CrlPtr> parsed = ReadCrls(data);
    if (parsed.empty()) {
      Log(LogLevel::kWarning, "crl_unreadable", {{"file", name}});
      continue;
    }
    for (const CrlPtr& crl : parsed) {
      const X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
      bool verified = false;
      for (const X509Ptr& root : roots) {
        if (X509_NAME_cmp(X509_get_subject_name(root.get()), issuer) != 0) continue;
        EVP_PKEY* key = X509_get0_pubkey(root.get());
        if (key != nullptr && X509_CRL_verify(crl.get(), key) == 1) {
          verified = true;
          break;
        }
      }
      if (!verified) {
        Log(LogLevel::kWarning, "crl_not_trusted", {{"file", name}});
        continue;
      }
      ++crls;
      const std::string issuer_der = NameDer(issuer);
      STACK_OF(X509_REVOKED)* entries = X509_CRL_get_REVOKED(crl.get());
      for (int i = 0; i < sk_X509_REVOKED_num(entries); ++i) {
        const X509_REVOKED* r = sk_X509_REVOKED_value(entries, i);
        revoked->insert(
            absl::StrCat(issuer_der, ":", SerialHex(X509_REVOKED_get0_serialNumber(r))));
      }
    }
  }
  const size_t count = revoked->size();
  {
    absl::MutexLock lock(&mu_);
    revoked_ = std::move(revoked);
  }
  Log(LogLevel::kInfo, "crl_loaded",
      {{"directory", directory_}, {"crls", absl::StrCat(crls)}, {"revoked", absl::StrCat(count)}});
  absl::MutexLock lock(&on_change_mu_);
  if (on_change_) on_change_();
}

void CrlWatcher::SetOnChange(std::function<void()> on_change) {
  absl::MutexLock lock(&on_change_mu_);
  on_change_ = std::move(on_change);
}

}  // namespace knooppunt::identity
