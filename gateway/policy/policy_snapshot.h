// A complete, validated policy: the registry and the agreements that reference it, loaded
// together so they are always consistent with each other.
//
// Guarantees: LoadPolicy() returns a snapshot only when every file parsed and validated;
// otherwise the first error with file:line:column. Snapshots are immutable and shared by
// pointer, so a request keeps the snapshot it started with while a newer one is installed.
#ifndef KNOOPPUNT_GATEWAY_POLICY_POLICY_SNAPSHOT_H_
#define KNOOPPUNT_GATEWAY_POLICY_POLICY_SNAPSHOT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gateway/policy/agreement_book.h"
#include "gateway/policy/registry.h"
#include "google/protobuf/descriptor.h"

namespace knooppunt::policy {

struct PolicySources {
  std::string registry_file;
  std::vector<std::string> agreement_files;
  std::vector<std::string> agreement_dirs;  // every *.yaml / *.yml file in them, sorted
};

struct PolicySnapshot {
  PolicySnapshot(Registry r, AgreementBook a, std::string v)
      : registry(std::move(r)), agreements(std::move(a)), version(std::move(v)) {}
  const Registry registry;
  const AgreementBook agreements;
  // Hex SHA-256 over the names and contents of all files, in load order.
  const std::string version;
};

absl::StatusOr<std::shared_ptr<const PolicySnapshot>> LoadPolicy(
    const PolicySources& sources, const google::protobuf::DescriptorPool& types);

// The version LoadPolicy() would give the files as they are now, without parsing them: how a
// watcher notices that the policy changed on disk.
absl::StatusOr<std::string> PolicyVersion(const PolicySources& sources);

}  // namespace knooppunt::policy

#endif  // KNOOPPUNT_GATEWAY_POLICY_POLICY_SNAPSHOT_H_
