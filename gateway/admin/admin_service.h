// The operator's Admin gRPC service (proto/knooppunt/admin/v1/admin.proto), served on the
// gateway's mTLS port next to Exchange and Auditor.
//
// Guarantees:
//  - Only callers whose certificate OIN is registered (in the policy in force at the call)
//    with kind `operator` are served. Any other registered organisation — auditors included
//    (separation of duties) — gets PERMISSION_DENIED; an unregistered OIN PERMISSION_DENIED; a
//    certificate without a usable OIN UNAUTHENTICATED. The check runs before anything else.
//  - Reload has the effect of SIGHUP (GatewayServer::ReloadPolicy); a rejected policy leaves
//    the old one in force and is answered FAILED_PRECONDITION with its file:line.
//  - Drain is one-way: new exchanges are refused (UNAVAILABLE "draining"), calls in flight
//    finish; `draining` shows in GetStatus.
//  - Every served call is logged (event admin_call, caller OIN, method).
// The service holds no state of its own besides what it is given; hooks are called on gRPC
// callback threads and must not block for long.
#ifndef KNOOPPUNT_GATEWAY_ADMIN_ADMIN_SERVICE_H_
#define KNOOPPUNT_GATEWAY_ADMIN_ADMIN_SERVICE_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/policy/policy_store.h"
#include "knooppunt/admin/v1/admin.grpc.pb.h"

namespace knooppunt::admin {

// Whether the caller of `context` is a registered operator: its OIN, or the refusal.
absl::StatusOr<std::string> AuthoriseOperator(const grpc::AuthContext& auth,
                                              const policy::PolicyStore& policy,
                                              const identity::PeerAuthenticator& authenticator);

struct AdminInfo {
  std::string version;      // build version
  std::string config_hash;  // hex SHA-256 of the configuration
  std::string instance_id;
  absl::Time started_at;
};

// What the service does to the gateway; each may be empty (the method then answers
// UNIMPLEMENTED, or zeros for the queue when meldingen are not configured).
struct AdminHooks {
  std::function<absl::Status()> reload;
  std::function<bool()> draining;
  std::function<bool()> drain;  // returns whether it was already draining
  std::function<void(v1::QueueFigures* figures)> queue;
};

class AdminService final : public v1::Admin::CallbackService {
 public:
  // Not owned: policy and authenticator must outlive the service.
  AdminService(const policy::PolicyStore* policy, const identity::PeerAuthenticator* authenticator,
               AdminInfo info, AdminHooks hooks)
      : policy_(policy), authenticator_(authenticator), info_(std::move(info)),
        hooks_(std::move(hooks)) {}

  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const v1::GetStatusRequest* request,
                                      v1::GatewayStatus* reply) override;
  grpc::ServerUnaryReactor* Reload(grpc::CallbackServerContext* context,
                                   const v1::ReloadRequest* request,
                                   v1::ReloadReply* reply) override;
  grpc::ServerUnaryReactor* ListOrganisations(grpc::CallbackServerContext* context,
                                              const v1::ListOrganisationsRequest* request,
                                              v1::ListOrganisationsReply* reply) override;
  grpc::ServerUnaryReactor* ListAgreements(grpc::CallbackServerContext* context,
                                           const v1::ListAgreementsRequest* request,
                                           v1::ListAgreementsReply* reply) override;
  grpc::ServerUnaryReactor* GetQueue(grpc::CallbackServerContext* context,
                                     const v1::GetQueueRequest* request,
                                     v1::QueueFigures* reply) override;
  grpc::ServerUnaryReactor* Drain(grpc::CallbackServerContext* context,
                                  const v1::DrainRequest* request,
                                  v1::DrainReply* reply) override;

 private:
  // The operator's OIN (and the call logged), or the status the call was finished with.
  absl::StatusOr<std::string> Admit(grpc::CallbackServerContext* context,
                                    absl::string_view method) const;

  const policy::PolicyStore* const policy_;
  const identity::PeerAuthenticator* const authenticator_;
  const AdminInfo info_;
  const AdminHooks hooks_;
};

}  // namespace knooppunt::admin

#endif  // KNOOPPUNT_GATEWAY_ADMIN_ADMIN_SERVICE_H_
