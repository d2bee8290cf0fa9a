// The registry compiled from registry.yaml: every organisation that may take part, how to
// reach it, and its groups.
//
// Guarantees: a Registry that Build() returned is internally consistent — OINs are 20 digits
// and unique, municipalities have a unique 4-digit gemeentecode (and only they have one),
// every group an organisation names is declared, endpoint addresses are "host:port".
// Immutable after Build(); safe to read from any thread.
#ifndef KNOOPPUNT_GATEWAY_POLICY_REGISTRY_H_
#define KNOOPPUNT_GATEWAY_POLICY_REGISTRY_H_

#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/config/yaml_proto.h"
#include "knooppunt/config/v1/registry.pb.h"

namespace knooppunt::policy {

struct Organisation {
  std::string oin;
  std::string name;
  config::v1::OrganisationKind kind = config::v1::ORGANISATION_KIND_UNSPECIFIED;
  std::string gemeentecode;          // municipalities only
  std::string endpoint_address;      // empty: answers no bevragingen
  std::string tls_server_name;       // empty: the host of endpoint_address
  std::vector<std::string> groups;
};

class Registry {
 public:
  // Validates the parsed registry; errors carry the file:line of the offending element.
  static absl::StatusOr<Registry> Build(const config::v1::Registry& proto,
                                        const config::SourceMap& source);

  const Organisation* FindByOin(absl::string_view oin) const;

  // An envelope's recipient ("<OIN>" or "gemeente:<code>") → the organisation.
  // INVALID_ARGUMENT when malformed, NOT_FOUND when well-formed but not registered.
  absl::StatusOr<const Organisation*> ResolveRecipient(absl::string_view recipient) const;

  // An agreement's party reference ("<OIN>", "group:<name>", "gemeente:<code>") → the OINs
  // it covers. An error message (no location) when the reference is malformed or unknown.
  absl::StatusOr<std::vector<std::string>> ExpandPartyRef(absl::string_view ref) const;

  const std::vector<Organisation>& organisations() const { return organisations_; }

 private:
  std::vector<Organisation> organisations_;
  absl::flat_hash_map<std::string, size_t> by_oin_;
  absl::flat_hash_map<std::string, size_t> by_gemeentecode_;
  absl::flat_hash_map<std::string, std::vector<std::string>> group_members_;
};

}  // namespace knooppunt::policy

#endif  // KNOOPPUNT_GATEWAY_POLICY_REGISTRY_H_
