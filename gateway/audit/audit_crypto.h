// The cryptography of the audit log: the hash chain, checkpoint signatures, and the keyed
// pseudonyms of data subjects. Everything goes through OpenSSL 3.
//
// Guarantees:
//  - ChainHash(prev, seq, record) = SHA-256(prev ‖ seq as 8 bytes big-endian ‖ record): each
//    record's hash commits to its position and to every record before it; the chain starts
//    from 32 zero bytes (GenesisHash()).
//  - A checkpoint signature covers CheckpointMessage(): seq (= number of records), chain
//    head, time and instance. Signatures are Ed25519 or ECDSA P-256/SHA-256; a verifier
//    accepts only the public key it was given (never one stored next to the log).
//  - Pseudonym(key, bsn) = lowercase hex HMAC-SHA256(key, bsn): stable for one key, not
//    invertible without it. Keys shorter than kMinHmacKeyBytes are refused.
// Thread-safe: Signer and SignatureVerifier are immutable after construction.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_AUDIT_CRYPTO_H_
#define KNOOPPUNT_GATEWAY_AUDIT_AUDIT_CRYPTO_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

typedef struct evp_pkey_st EVP_PKEY;

namespace knooppunt::audit {

inline constexpr size_t kHashBytes = 32;
inline constexpr size_t kMinHmacKeyBytes = 32;

std::string GenesisHash();
// Raw 32-byte hash.
std::string ChainHash(absl::string_view prev, int64_t seq, absl::string_view record);

struct Checkpoint {
  int64_t seq = 0;          // the chain holds records 1..seq; head is the hash of record seq
  std::string head;         // raw 32 bytes
  int64_t time_ns = 0;
  std::string instance_id;
  std::string key_id;       // KeyId() of the signing key
  std::string signature;    // raw
};
std::string CheckpointMessage(const Checkpoint& c);

// Reads a key file: raw bytes, at least kMinHmacKeyBytes (a hex or base64 text file works
// too, its text is the key).
absl::StatusOr<std::string> ReadHmacKeyFile(const std::string& path);
std::string Pseudonym(absl::string_view key, absl::string_view bsn);
// The index key of a pseudonym: its first 64 bits (0 when it is not hex). Compact, so the
// data-subject index stays small; a lookup by key is confirmed against the record itself.
int64_t PseudonymKey(absl::string_view pseudonym);

class Signer {
 public:
  static absl::StatusOr<std::unique_ptr<Signer>> FromPemFile(const std::string& path);
  ~Signer();
  absl::StatusOr<std::string> Sign(absl::string_view message) const;
  const std::string& key_id() const { return key_id_; }
  // PEM of the public key.
  std::string PublicKeyPem() const;

 private:
  explicit Signer(EVP_PKEY* key);
  EVP_PKEY* key_;
  std::string key_id_;
};

class SignatureVerifier {
 public:
  // A PEM public key ("PUBLIC KEY"), or a PEM private key whose public half is used.
  static absl::StatusOr<std::unique_ptr<SignatureVerifier>> FromPemFile(const std::string& path);
  static absl::StatusOr<std::unique_ptr<SignatureVerifier>> FromPem(absl::string_view pem);
  ~SignatureVerifier();
  bool Verify(absl::string_view message, absl::string_view signature) const;
  const std::string& key_id() const { return key_id_; }

 private:
  explicit SignatureVerifier(EVP_PKEY* key);
  EVP_PKEY* key_;
  std::string key_id_;
};

// Writes a new random HMAC key (hex text, 64 bytes of entropy) and a new Ed25519 key pair
// (PEM private key, PEM public key) with mode 0600 for the secrets. Refuses to overwrite.
absl::Status GenerateKeys(const std::string& hmac_key_path, const std::string& signing_key_path,
                          const std::string& public_key_path);

std::string ToHex(absl::string_view raw);
// Empty on malformed input.
std::string FromHex(absl::string_view hex);

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_AUDIT_CRYPTO_H_
