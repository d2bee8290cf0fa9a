#include "gateway/common/pg_config.h"

#include <string>

namespace knooppunt::pg {

absl::StatusOr<ConnectOptions> ConnectOptionsFromConfig(const config::v1::PostgresConfig& config,
                                                        absl::string_view application_name) {
  ConnectOptions o;
  o.conninfo = config.conninfo();
  if (!config.password_file().empty()) {
    absl::StatusOr<std::string> password = ReadPasswordFile(config.password_file());
    if (!password.ok()) return password.status();
    o.password = *std::move(password);
  }
  if (config.has_connect_timeout()) {
    o.connect_timeout = absl::Seconds(config.connect_timeout().seconds()) +
                        absl::Nanoseconds(config.connect_timeout().nanos());
  }
  o.application_name = std::string(application_name);
  return o;
}

}  // namespace knooppunt::pg
