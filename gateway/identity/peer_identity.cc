#include "gateway/identity/peer_identity.h"

#include <openssl/bio.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <array>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gateway/common/ids.h"
#include "gateway/identity/crl_watcher.h"

namespace knooppunt::identity {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};

absl::Status NoOin(absl::string_view why) {
  return absl::UnauthenticatedError(
      absl::StrCat("client certificate has no usable OIN: ", why));
}

}  // namespace

absl::StatusOr<std::string> OinFromCertificatePem(absl::string_view pem) {
  if (pem.empty()) return absl::UnauthenticatedError("no client certificate presented");
  std::unique_ptr<BIO, BioFree> bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) return absl::InternalError("out of memory reading certificate");
  std::unique_ptr<X509, X509Free> cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return NoOin("certificate is not valid PEM");
  const X509_NAME* subject = X509_get_subject_name(cert.get());
  if (subject == nullptr) return NoOin("certificate has no subject");

  int count = 0;
  std::string oin;
  for (int i = X509_NAME_get_index_by_NID(subject, NID_serialNumber, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(subject, NID_serialNumber, i)) {
    ++count;
    const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i));
    oin.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
               static_cast<size_t>(ASN1_STRING_length(value)));
  }
  if (count == 0) return NoOin("subject has no serialNumber attribute");
  if (count > 1) return NoOin("subject has more than one serialNumber attribute");
  if (!IsValidOin(oin)) return NoOin("subject serialNumber is not 20 digits");
  return oin;
}

// Maps certificate PEM → authentication result. Sharded so that concurrent calls from
// different connections rarely contend; bounded so a flood of distinct certificates cannot
// grow it without limit (a full shard is simply cleared: entries are cheap to recompute).
class PeerAuthenticator::Cache {
 public:
  static constexpr int kShards = 16;
  static constexpr size_t kMaxPerShard = 1024;

  struct Entry {
    absl::StatusOr<std::string> oin;
    std::string revocation_key;  // issuer + serial, for the CRL check
  };
  // `*first` tells whether the certificate was parsed now (not found in the cache).
  Entry Get(absl::string_view pem, bool* first) {
    const size_t hash = absl::HashOf(pem);
    Shard& shard = shards_[hash % kShards];
    {
      absl::ReaderMutexLock lock(&shard.mu);
      auto it = shard.entries.find(pem);
      if (it != shard.entries.end()) {
        *first = false;
        return it->second;
      }
    }
    *first = true;
    Entry result{OinFromCertificatePem(pem), RevocationKeyOfPem(pem)};
    absl::MutexLock lock(&shard.mu);
    if (shard.entries.size() >= kMaxPerShard) shard.entries.clear();
    shard.entries.emplace(std::string(pem), result);
    return result;
  }

 private:
  struct Shard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, Entry> entries ABSL_GUARDED_BY(mu);
  };
  std::array<Shard, kShards> shards_;
};

PeerAuthenticator::PeerAuthenticator() : cache_(std::make_unique<Cache>()) {}
PeerAuthenticator::~PeerAuthenticator() = default;

absl::StatusOr<std::string> PeerAuthenticator::Authenticate(const grpc::AuthContext& auth) const {
  const std::vector<grpc::string_ref> certs = auth.FindPropertyValues("x509_pem_cert");
  if (certs.empty()) return absl::UnauthenticatedError("no client certificate presented");
  const absl::string_view pem(certs.front().data(), certs.front().size());
  bool first = false;
  Cache::Entry entry = cache_->Get(pem, &first);
  if (first && entry.oin.ok() && sink_ != nullptr) {
    sink_->OnPeerCertificate("organisation", *entry.oin, pem);
  }
  if (entry.oin.ok() && crls_ != nullptr && crls_->IsRevoked(entry.revocation_key)) {
    return absl::UnauthenticatedError("client certificate is revoked");
  }
  return std::move(entry.oin);
}

}  // namespace knooppunt::identity
