#include "gateway/audit/audit_crypto.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace knooppunt::audit {
namespace {

const EVP_MD* Sha256() {
  static const EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

struct MdCtx {
  MdCtx() : ctx(EVP_MD_CTX_new()) {}
  ~MdCtx() { EVP_MD_CTX_free(ctx); }
  EVP_MD_CTX* ctx;
};

std::string KeyIdOf(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  const int len = i2d_PUBKEY(key, &der);
  if (len <= 0) return "";
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  EVP_Digest(der, static_cast<size_t>(len), digest, &dlen, Sha256(), nullptr);
  OPENSSL_free(der);
  return ToHex(absl::string_view(reinterpret_cast<char*>(digest), 16));
}

bool IsEd25519(EVP_PKEY* key) { return EVP_PKEY_is_a(key, "ED25519") == 1; }

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

absl::Status WriteNewFile(const std::string& path, absl::string_view data, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
  if (fd < 0) return absl::AlreadyExistsError(absl::StrCat("cannot create ", path, ": ", std::strerror(errno)));
  const ssize_t n = ::write(fd, data.data(), data.size());
  const bool ok = n == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

}  // namespace

std::string ToHex(absl::string_view raw) { return absl::BytesToHexString(raw); }

std::string FromHex(absl::string_view hex) {
  if (hex.size() % 2 != 0) return "";
  for (char c : hex) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return "";
  }
  return absl::HexStringToBytes(hex);
}

std::string GenesisHash() { return std::string(kHashBytes, '\0'); }

std::string ChainHash(absl::string_view prev, int64_t seq, absl::string_view record) {
  thread_local MdCtx md;
  unsigned char be[8];
  for (int i = 0; i < 8; ++i) be[i] = static_cast<unsigned char>(static_cast<uint64_t>(seq) >> (56 - 8 * i));
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestInit_ex2(md.ctx, Sha256(), nullptr);
  EVP_DigestUpdate(md.ctx, prev.data(), prev.size());
  EVP_DigestUpdate(md.ctx, be, sizeof be);
  EVP_DigestUpdate(md.ctx, record.data(), record.size());
  EVP_DigestFinal_ex(md.ctx, out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

std::string CheckpointMessage(const Checkpoint& c) {
  return absl::StrCat("knooppunt-audit-checkpoint/v1\nseq=", c.seq, "\nhead=", ToHex(c.head),
                      "\ntime_ns=", c.time_ns, "\ninstance=", c.instance_id,
                      "\nkey_id=", c.key_id, "\n");
}

absl::StatusOr<std::string> ReadHmacKeyFile(const std::string& path) {
  absl::StatusOr<std::string> key = ReadFile(path);
  if (!key.ok()) return key.status();
  std::string k(absl::StripTrailingAsciiWhitespace(*key));
  if (k.size() < kMinHmacKeyBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("HMAC key in ", path, " is shorter than ", kMinHmacKeyBytes, " bytes"));
  }
  return k;
}

std::string Pseudonym(absl::string_view key, absl::string_view bsn) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(bsn.data()), bsn.size(), out, &len);
  return ToHex(absl::string_view(reinterpret_cast<char*>(out), len));
}

int64_t PseudonymKey(absl::string_view pseudonym) {
  if (pseudonym.size() < 16) return 0;
  uint64_t v = 0;
  for (int i = 0; i < 16; ++i) {
    const char c = pseudonym[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return 0;
    }
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  return static_cast<int64_t>(v);
}

Signer::Signer(EVP_PKEY* key) : key_(key), key_id_(KeyIdOf(key)) {}
Signer::~Signer() { EVP_PKEY_free(key_); }

absl::StatusOr<std::unique_ptr<Signer>> Signer::FromPemFile(const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFile(path);
  if (!pem.ok()) return pem.status();
  BIO* bio = BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size()));
  EVP_PKEY* key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  if (key == nullptr) return absl::InvalidArgumentError(absl::StrCat("no PEM private key in ", path));
  if (!IsEd25519(key) && !(EVP_PKEY_is_a(key, "EC") == 1 && EVP_PKEY_get_bits(key) == 256)) {
    EVP_PKEY_free(key);
    return absl::InvalidArgumentError(
        absl::StrCat("signing key in ", path, " is neither Ed25519 nor ECDSA P-256"));
  }
  return std::unique_ptr<Signer>(new Signer(key));
}

absl::StatusOr<std::string> Signer::Sign(absl::string_view message) const {
  MdCtx md;
  if (EVP_DigestSignInit(md.ctx, nullptr, IsEd25519(key_) ? nullptr : Sha256(), nullptr, key_) != 1) {
    return absl::InternalError("signing init failed");
  }
  size_t len = 0;
  const auto* msg = reinterpret_cast<const unsigned char*>(message.data());
  if (EVP_DigestSign(md.ctx, nullptr, &len, msg, message.size()) != 1) {
    return absl::InternalError("signing failed");
  }
  std::string sig(len, '\0');
  if (EVP_DigestSign(md.ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, msg,
                     message.size()) != 1) {
    return absl::InternalError("signing failed");
  }
  sig.resize(len);
  return sig;
}

std::string Signer::PublicKeyPem() const {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, key_);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  return pem;
}

SignatureVerifier::SignatureVerifier(EVP_PKEY* key) : key_(key), key_id_(KeyIdOf(key)) {}
SignatureVerifier::~SignatureVerifier() { EVP_PKEY_free(key_); }

absl::StatusOr<std::unique_ptr<SignatureVerifier>> SignatureVerifier::FromPem(absl::string_view pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EVP_PKEY* key = PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr);
  if (key == nullptr) {
    BIO_free(bio);
    bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    key = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  }
  BIO_free(bio);
  if (key == nullptr) return absl::InvalidArgumentError("no PEM public or private key");
  return std::unique_ptr<SignatureVerifier>(new SignatureVerifier(key));
}

absl::StatusOr<std::unique_ptr<SignatureVerifier>> SignatureVerifier::FromPemFile(
    const std::string& path) {
  absl::StatusOr<std::string> pem = ReadFile(path);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<std::unique_ptr<SignatureVerifier>> v = FromPem(*pem);
  if (!v.ok()) return absl::InvalidArgumentError(absl::StrCat(v.status().message(), " in ", path));
  return v;
}

bool SignatureVerifier::Verify(absl::string_view message, absl::string_view signature) const {
  MdCtx md;
  if (EVP_DigestVerifyInit(md.ctx, nullptr, IsEd25519(key_) ? nullptr : Sha256(), nullptr, key_) != 1) {
    return false;
  }
  return EVP_DigestVerify(md.ctx, reinterpret_cast<const unsigned char*>(signature.data()),
                          signature.size(),
                          reinterpret_cast<const unsigned char*>(message.data()),
                          message.size()) == 1;
}

absl::Status GenerateKeys(const std::string& hmac_key_path, const std::string& signing_key_path,
                          const std::string& public_key_path) {
  unsigned char secret[64];
  if (RAND_bytes(secret, sizeof secret) != 1) return absl::InternalError("no randomness");
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (key == nullptr) return absl::InternalError("Ed25519 key generation failed");
  BIO* priv = BIO_new(BIO_s_mem());
  BIO* pub = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(priv, key, nullptr, nullptr, 0, nullptr, nullptr);
  PEM_write_bio_PUBKEY(pub, key);
  char* p = nullptr;
  const long pn = BIO_get_mem_data(priv, &p);
  std::string priv_pem(p, static_cast<size_t>(pn));
  const long qn = BIO_get_mem_data(pub, &p);
  std::string pub_pem(p, static_cast<size_t>(qn));
  BIO_free(priv);
  BIO_free(pub);
  EVP_PKEY_free(key);
  absl::Status s = WriteNewFile(
      hmac_key_path,
      absl::StrCat(ToHex(absl::string_view(reinterpret_cast<char*>(secret), sizeof secret)), "\n"),
      0600);
  if (!s.ok()) return s;
  s = WriteNewFile(signing_key_path, priv_pem, 0600);
  if (!s.ok()) return s;
  return WriteNewFile(public_key_path, pub_pem, 0644);
}

}  // namespace knooppunt::audit
