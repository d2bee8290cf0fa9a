// Who is calling, as an organisation of the registry in force: the one lookup that role
// checks (Auditor, Admin) share, so each decides only what its role allows.
#ifndef KNOOPPUNT_GATEWAY_POLICY_REGISTERED_CALLER_H_
#define KNOOPPUNT_GATEWAY_POLICY_REGISTERED_CALLER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gateway/identity/peer_identity.h"
#include "gateway/policy/policy_store.h"
#include "grpcpp/security/auth_context.h"

namespace knooppunt::policy {

struct RegisteredCaller {
  std::string oin;
  std::shared_ptr<const PolicySnapshot> policy;  // keeps `organisation` alive
  const Organisation* organisation = nullptr;
};

// UNAUTHENTICATED without a usable OIN; PERMISSION_DENIED when the OIN is not registered.
inline absl::StatusOr<RegisteredCaller> IdentifyCaller(
    const grpc::AuthContext& auth, const PolicyStore& policy,
    const identity::PeerAuthenticator& authenticator) {
  absl::StatusOr<std::string> oin = authenticator.Authenticate(auth);
  if (!oin.ok()) return oin.status();
  RegisteredCaller caller{*oin, policy.Current(), nullptr};
  caller.organisation = caller.policy->registry.FindByOin(caller.oin);
  if (caller.organisation == nullptr) {
    return absl::PermissionDeniedError(absl::StrCat("OIN ", caller.oin, " is not in the registry"));
  }
  return caller;
}

}  // namespace knooppunt::policy

#endif  // KNOOPPUNT_GATEWAY_POLICY_REGISTERED_CALLER_H_
