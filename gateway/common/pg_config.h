// The connection a PostgresConfig (gateway.yaml: melding.postgres, audit.postgres,
// audit.postgres_reader) describes, as pg::Connection opens it: conninfo as written, the
// password read from password_file (never from the YAML), connect_timeout (default 5s), and
// the name the connection shows in pg_stat_activity ("<instance_id>/<use>").
#ifndef KNOOPPUNT_GATEWAY_COMMON_PG_CONFIG_H_
#define KNOOPPUNT_GATEWAY_COMMON_PG_CONFIG_H_

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gateway/common/pg_util.h"
#include "knooppunt/config/v1/gateway_config.pb.h"

namespace knooppunt::pg {

// FAILED_PRECONDITION, naming the file, when password_file cannot be read or is empty.
absl::StatusOr<ConnectOptions> ConnectOptionsFromConfig(const config::v1::PostgresConfig& config,
                                                        absl::string_view application_name);

}  // namespace knooppunt::pg

#endif  // KNOOPPUNT_GATEWAY_COMMON_PG_CONFIG_H_
