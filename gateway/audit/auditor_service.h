// The Auditor gRPC service (proto/knooppunt/audit/v1/auditor.proto): read-only access to the
// audit log over the gateway's mTLS port.
//
// Guarantees (roles come from the registry's organisation kind of the caller's certificate
// OIN, looked up in the policy in force at the call):
//  - kind `auditor`: Query reads every record; Verify checks the whole log.
//  - kind `operator`: PERMISSION_DENIED for both (separation of duties: those who run the
//    gateway do not read what it logged).
//  - any other registered organisation: Query returns only records that name its OIN (as
//    authenticated caller, sender or recipient); Verify is PERMISSION_DENIED.
//  - unregistered or certificate without OIN: PERMISSION_DENIED / UNAUTHENTICATED.
//  - The service has no method that writes anything; it opens the database read-only (SQLite)
//    or reads with the configured read-only role (PostgreSQL, audit.postgres_reader), and
//    then covers every replica's chain (Query in time order, Verify of all chains).
//  - A data_subject filter that is a BSN in clear is refused (INVALID_ARGUMENT).
// Callback API; Query streams in pages of 256 records read as the client consumes them.
#ifndef KNOOPPUNT_GATEWAY_AUDIT_AUDITOR_SERVICE_H_
#define KNOOPPUNT_GATEWAY_AUDIT_AUDITOR_SERVICE_H_

#include <functional>
#include <memory>
#include <string>

#include "gateway/audit/audit_crypto.h"
#include "gateway/audit/audit_reader.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/policy/policy_store.h"
#include "knooppunt/audit/v1/auditor.grpc.pb.h"

namespace knooppunt::audit {

class AuditorService final : public v1::Auditor::CallbackService {
 public:
  // `key` verifies checkpoints (the public half of the signing key). Not owned: policy,
  // authenticator must outlive the service.
  AuditorService(std::string db_path, std::unique_ptr<SignatureVerifier> key,
                 const policy::PolicyStore* policy,
                 const identity::PeerAuthenticator* authenticator)
      : AuditorService([db_path = std::move(db_path)] { return AuditReader::Open(db_path); },
                       std::move(key), policy, authenticator) {}
  // Any storage: `open_reader` opens a reader per call (called on gRPC threads; must be
  // thread-safe).
  using ReaderFactory = std::function<absl::StatusOr<std::unique_ptr<AuditReader>>()>;
  AuditorService(ReaderFactory open_reader, std::unique_ptr<SignatureVerifier> key,
                 const policy::PolicyStore* policy,
                 const identity::PeerAuthenticator* authenticator)
      : open_reader_(std::move(open_reader)), key_(std::move(key)), policy_(policy),
        authenticator_(authenticator) {}

  grpc::ServerWriteReactor<v1::AuditEntry>* Query(grpc::CallbackServerContext* context,
                                                   const v1::QueryRequest* request) override;
  grpc::ServerUnaryReactor* Verify(grpc::CallbackServerContext* context,
                                   const v1::VerifyRequest* request,
                                   v1::VerifyReply* reply) override;

  enum class Role { kNone, kAuditor, kOperator, kParty };
  struct Caller {
    Role role = Role::kNone;
    std::string oin;
  };
  // The caller's role, or the status to refuse the call with.
  absl::StatusOr<Caller> Authorise(const grpc::CallbackServerContext& context) const;

 private:
  const ReaderFactory open_reader_;
  const std::unique_ptr<SignatureVerifier> key_;
  const policy::PolicyStore* const policy_;
  const identity::PeerAuthenticator* const authenticator_;
};

}  // namespace knooppunt::audit

#endif  // KNOOPPUNT_GATEWAY_AUDIT_AUDITOR_SERVICE_H_
