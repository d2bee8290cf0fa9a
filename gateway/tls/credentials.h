// Mutual-TLS credentials, the one place where the project configures gRPC's TLS stack. Used
// by the gateway (both sides), the demo parties and the tests, so every party proves and
// checks identity the same way.
//
// Guarantees: server credentials require and verify a client certificate (no certificate, no
// connection) and re-read their files every refresh interval (rotation without restart);
// channel credentials present a client certificate, verify the server's chain against the
// given roots, and accept the server only when its certificate carries the expected OIN.
#ifndef KNOOPPUNT_GATEWAY_TLS_CREDENTIALS_H_
#define KNOOPPUNT_GATEWAY_TLS_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace knooppunt::tls {

struct ServerTlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
  std::string crl_directory;  // empty: no revocation check
  absl::Duration refresh_interval = absl::Seconds(5);
};

// Fails when a file is unreadable, naming it.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MutualTlsServerCredentials(
    const ServerTlsFiles& files);

// From PEM contents already read.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(
    const std::string& root_pem, const std::string& cert_pem, const std::string& key_pem,
    const std::string& expected_server_oin);

// Reads a PEM file; an unreadable or empty file is an error naming it and `what`.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what);

}  // namespace knooppunt::tls

#endif  // KNOOPPUNT_GATEWAY_TLS_CREDENTIALS_H_
