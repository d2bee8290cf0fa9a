// Loads gateway.yaml: the gateway's own settings. Relative paths in it are resolved against
// the file's directory; defaults are filled in; missing required settings are errors with
// file:line.
#ifndef KNOOPPUNT_GATEWAY_SERVER_GATEWAY_CONFIG_H_
#define KNOOPPUNT_GATEWAY_SERVER_GATEWAY_CONFIG_H_

#include <string>

#include "absl/status/statusor.h"
#include "gateway/policy/policy_snapshot.h"
#include "knooppunt/config/v1/gateway_config.pb.h"

namespace knooppunt::server {

absl::StatusOr<config::v1::GatewayConfig> LoadGatewayConfig(const std::string& path);

// The policy files the (already loaded) config names.
policy::PolicySources PolicySourcesOf(const config::v1::GatewayConfig& config);

}  // namespace knooppunt::server

#endif  // KNOOPPUNT_GATEWAY_SERVER_GATEWAY_CONFIG_H_
