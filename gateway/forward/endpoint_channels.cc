#include "gateway/forward/endpoint_channels.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gateway/tls/credentials.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/support/channel_arguments.h"

namespace knooppunt::forward {
absl::StatusOr<std::unique_ptr<EndpointChannels>> EndpointChannels::Create(
    const UpstreamIdentity& id) {
  absl::StatusOr<std::string> root = tls::ReadPemFile(id.ca_file, "upstream_tls.ca_file");
  if (!root.ok()) return root.status();
  absl::StatusOr<std::string> cert = tls::ReadPemFile(id.cert_file, "upstream_tls.cert_file");
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = tls::ReadPemFile(id.key_file, "upstream_tls.key_file");
  if (!key.ok()) return key.status();
  return std::unique_ptr<EndpointChannels>(new EndpointChannels(
      tls::WatchCertificateFiles(id.key_file, id.cert_file, id.ca_file, id.refresh_interval),
      id.certificates));
}

std::shared_ptr<exchange::v1::Endpoint::Stub> EndpointChannels::StubFor(
    const EndpointTarget& target) {
  const std::string key = absl::StrCat(target.address, "|", target.oin, "|", target.tls_server_name);
  absl::MutexLock lock(&mu_);
  auto it = stubs_.find(key);
  if (it != stubs_.end()) return it->second;
  grpc::ChannelArguments args;
  if (!target.tls_server_name.empty()) {
    args.SetSslTargetNameOverride(target.tls_server_name);
  }
  // Fail fast when the endpoint is down rather than queueing until the deadline.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  auto channel = grpc::CreateCustomChannel(
      target.address, tls::MutualTlsChannelCredentials(identity_, target.oin, certificates_), args);
  auto stub = std::shared_ptr<exchange::v1::Endpoint::Stub>(
      exchange::v1::Endpoint::NewStub(channel).release());
  stubs_.emplace(key, stub);
  return stub;
}

}  // namespace knooppunt::forward
