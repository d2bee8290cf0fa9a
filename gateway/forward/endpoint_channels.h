// Step 6 of a message's path: forward. Channels from the gateway to organisations' endpoints.
//
// Guarantees: every channel is mutual TLS — the gateway presents its own client certificate,
// the endpoint's certificate must chain to the configured CAs AND carry, as its subject
// serialNumber, the OIN the registry names for that endpoint; otherwise the handshake fails
// and nothing is sent. One channel per (address, OIN), created on first use and then shared
// by all calls (HTTP/2 multiplexes them). Thread-safe.
// Rotation: the key, certificate and CA files are re-read every `refresh_interval` (one
// FileWatcherCertificateProvider shared by all channels); new handshakes use the new files.
#ifndef KNOOPPUNT_GATEWAY_FORWARD_ENDPOINT_CHANNELS_H_
#define KNOOPPUNT_GATEWAY_FORWARD_ENDPOINT_CHANNELS_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "gateway/observability/metrics_sink.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "knooppunt/exchange/v1/exchange.grpc.pb.h"

namespace knooppunt::forward {

struct UpstreamIdentity {
  std::string cert_file;  // PEM chain the gateway presents
  std::string key_file;   // its key
  std::string ca_file;    // CAs endpoint certificates must chain to
  absl::Duration refresh_interval = absl::Seconds(5);  // how often the files are re-read
  // Optional, not owned (must outlive the channels): told each endpoint certificate accepted
  // at a handshake, for its expiry (gateway/observability/peer_certificates).
  observability::PeerCertificateSink* certificates = nullptr;
};

struct EndpointTarget {
  std::string oin;              // the OIN the endpoint's certificate must carry
  std::string address;          // host:port
  std::string tls_server_name;  // empty: host of address
};

class EndpointChannels {
 public:
  // Checks the PEM files once (an unreadable file is an error naming it), then watches them.
  static absl::StatusOr<std::unique_ptr<EndpointChannels>> Create(const UpstreamIdentity& id);

  // The stub for an endpoint; its channel is created on first use.
  std::shared_ptr<exchange::v1::Endpoint::Stub> StubFor(const EndpointTarget& target);

 private:
  EndpointChannels(std::shared_ptr<grpc::experimental::CertificateProviderInterface> identity,
                   observability::PeerCertificateSink* certificates)
      : identity_(std::move(identity)), certificates_(certificates) {}

  const std::shared_ptr<grpc::experimental::CertificateProviderInterface> identity_;
  observability::PeerCertificateSink* const certificates_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<exchange::v1::Endpoint::Stub>> stubs_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace knooppunt::forward

#endif  // KNOOPPUNT_GATEWAY_FORWARD_ENDPOINT_CHANNELS_H_
