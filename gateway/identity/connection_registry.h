// Closing the connections of revoked clients. gRPC C++ (1.51) has no API to close one server
// connection, so the gateway does it at the socket: it remembers, per connection (the peer
// address gRPC reports, e.g. "ipv4:127.0.0.1:54321"), which client certificate the
// connection's calls carried; when a CRL revokes that certificate it finds the socket of this
// process that was accepted on the gateway's port from that peer and shuts it down
// (shutdown(SHUT_RDWR), not close: gRPC still owns the descriptor, so it cannot be reused
// under gRPC's feet). gRPC sees end-of-stream, tears the connection down and closes the
// descriptor itself; the client sees its connection end.
//
// Guarantees:
//  - Every call that reaches the server (any service: Exchange, Admin, Auditor, health,
//    reflection) registers its connection, through the interceptor of InterceptorFactory()
//    (the gateway installs it when tls.crl_directory is set). Per call this costs one hash
//    of the certificate and one lookup under a shared lock; the certificate is parsed only
//    when a connection is first seen or its certificate differs.
//  - When the CrlWatcher loads a new set (CloseRevoked(), wired to CrlWatcher::SetOnChange),
//    every registered connection whose certificate is now revoked is shut down within about a
//    second, without waiting for another call on it. A connection first seen (or seen with a
//    new certificate) after its certificate was revoked is shut down as soon as that call
//    arrives (the call itself is refused by PeerAuthenticator).
//  - Only sockets accepted on the gateway's listening port (SetListeningPort) are touched:
//    never the listening socket, the endpoint channels' or the metrics port's sockets.
//  - Memory is bounded: entries whose socket is gone are dropped every kPruneInterval (and
//    when kMaxEntries is reached); at kMaxEntries new connections are not registered (their
//    calls are still refused per call when revoked).
// Limit: a connection is identified by its peer address. When a client's connection ends and
// another client connects from the same source address and port, the registry holds the old
// certificate for that peer until the new connection's first call (or the next prune); a
// revocation of the old certificate in that window shuts the new connection down (its client
// reconnects). Shutdowns are logged ("revoked_connection_closed").
#ifndef KNOOPPUNT_GATEWAY_IDENTITY_CONNECTION_REGISTRY_H_
#define KNOOPPUNT_GATEWAY_IDENTITY_CONNECTION_REGISTRY_H_

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/server_interceptor.h"

namespace knooppunt::identity {

class CrlWatcher;

// The sockets of this process accepted on local TCP `port` (connected ones, not listening),
// each with its peer address as gRPC spells it ("ipv4:A.B.C.D:P" or "ipv6:[addr]:P";
// IPv4-mapped IPv6 peers as ipv4).
std::vector<std::pair<int, std::string>> AcceptedSockets(int port);

// shutdown(SHUT_RDWR) of every socket AcceptedSockets(port) lists for `peer` (as
// ServerContext::peer() spells it; percent-encoded brackets are accepted). Returns how many.
int ShutdownAcceptedSockets(int port, absl::string_view peer);

class ConnectionRegistry {
 public:
  static constexpr size_t kMaxEntries = 100000;
  static constexpr absl::Duration kPruneInterval = absl::Seconds(30);

  // `crls` must outlive this object.
  explicit ConnectionRegistry(const CrlWatcher* crls);
  ~ConnectionRegistry();
  ConnectionRegistry(const ConnectionRegistry&) = delete;
  ConnectionRegistry& operator=(const ConnectionRegistry&) = delete;

  // The gateway's listening port, once known; until then nothing is shut down.
  void SetListeningPort(int port) { port_.store(port); }

  // A call arrived on the connection from `peer` with the (verified) client certificate.
  void OnCall(absl::string_view peer, absl::string_view certificate_pem);

  // The revoked set changed: shut down every registered connection now revoked (done on the
  // registry's own thread; returns at once).
  void CloseRevoked();

  // For grpc::ServerBuilder::experimental().SetInterceptorCreators(); the registry must
  // outlive the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  size_t size() const;

 private:
  struct Entry {
    size_t certificate_hash = 0;
    std::string revocation_key;
  };
  void Run();

  const CrlWatcher* const crls_;
  std::atomic<int> port_{0};
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Entry> entries_ ABSL_GUARDED_BY(mu_);  // by peer
  absl::flat_hash_set<std::string> to_close_ ABSL_GUARDED_BY(mu_);
  bool rescan_ ABSL_GUARDED_BY(mu_) = false;
  bool prune_now_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace knooppunt::identity

#endif  // KNOOPPUNT_GATEWAY_IDENTITY_CONNECTION_REGISTRY_H_
