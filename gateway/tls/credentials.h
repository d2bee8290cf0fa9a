// Mutual-TLS credentials, the one place where the project configures gRPC's TLS stack. Used
// by the gateway (both sides), the demo parties and the tests, so every party proves and
// checks identity the same way.
//
// Guarantees: server credentials require and verify a client certificate (no certificate, no
// connection) and re-read their files every refresh interval (rotation without restart);
// channel credentials present a client certificate, verify the server's chain against the
// given roots, and accept the server only when its certificate carries the expected OIN.
// With a PeerCertificateSink, each accepted server certificate is reported to it (role
// "endpoint", once per handshake) for its expiry (gateway/observability/peer_certificates).
#ifndef KNOOPPUNT_GATEWAY_TLS_CREDENTIALS_H_
#define KNOOPPUNT_GATEWAY_TLS_CREDENTIALS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gateway/observability/metrics_sink.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace knooppunt::identity {
class CrlWatcher;
}  // namespace knooppunt::identity

namespace grpc::experimental {
class CertificateProviderInterface;
}  // namespace grpc::experimental

namespace knooppunt::tls {

struct ServerTlsFiles {
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
  std::string crl_directory;  // empty: no revocation check
  absl::Duration refresh_interval = absl::Seconds(5);
  // When set, consulted at every handshake: a revoked client certificate is refused even
  // when its CRL arrived after the start (gRPC's crl_directory does not see replaced files).
  // Not owned; must outlive the credentials.
  const identity::CrlWatcher* revocation = nullptr;
};

// Fails when a file is unreadable, naming it.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MutualTlsServerCredentials(
    const ServerTlsFiles& files);

// From PEM contents already read.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(
    const std::string& root_pem, const std::string& cert_pem, const std::string& key_pem,
    const std::string& expected_server_oin);

// The same, from a certificate provider (e.g. WatchCertificateFiles, shared by many channels).
// `certificates` (optional, not owned, must outlive the credentials) is told every server
// certificate accepted.
std::shared_ptr<grpc::ChannelCredentials> MutualTlsChannelCredentials(
    std::shared_ptr<grpc::experimental::CertificateProviderInterface> provider,
    const std::string& expected_server_oin,
    observability::PeerCertificateSink* certificates = nullptr);

// Key, certificate chain and trust roots re-read from their files every `refresh_interval`
// (rotation without restart: handshakes after a change use the new files). The files are not
// checked here; read them once with ReadPemFile first to fail early.
std::shared_ptr<grpc::experimental::CertificateProviderInterface> WatchCertificateFiles(
    const std::string& key_file, const std::string& cert_file, const std::string& ca_file,
    absl::Duration refresh_interval);

// Reads a PEM file; an unreadable or empty file is an error naming it and `what`.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, absl::string_view what);

}  // namespace knooppunt::tls

#endif  // KNOOPPUNT_GATEWAY_TLS_CREDENTIALS_H_
