// A limit on the connections one peer address holds open on the gateway
// (limits.max_connections_per_peer). gRPC C++ 1.51 has no accept hook, so the limit is
// enforced after the fact at the socket, like closing revoked clients' connections
// (gateway/identity/connection_registry.h): every `interval` a thread lists this process's
// sockets accepted on the gateway's port (AcceptedSockets), groups them by the peer's IP
// address (the port ignored; IPv4-mapped IPv6 counts as IPv4) and, where a group holds more
// than the limit, shuts down (shutdown(SHUT_RDWR), never close: gRPC owns the descriptor and
// closes it itself once it sees end-of-stream) the newest sockets above the limit.
//
// Guarantees:
//  - Every accepted socket counts, whether its TLS handshake completed or not: a client that
//    opens connections and never speaks (or speaks half a ClientHello) is bounded by this
//    limit as well as by limits.handshake_timeout.
//  - The established connections keep serving: "newest" is the order in which the scan first
//    saw a socket, and among sockets first seen by the same scan, the higher socket inode. A
//    connection older than one scan interval is therefore never shut down in favour of a
//    newer one; within one interval the inode order is creation order only roughly (the
//    kernel hands out inode numbers in per-CPU batches). A socket shut down is not counted
//    again while gRPC tears it down, so a flood does not push out the connections that were
//    there before it.
//  - Only sockets accepted on the gateway's listening port (SetListeningPort) are touched;
//    before a socket is shut down its descriptor is checked to still be the socket (same
//    inode) that the scan listed.
//  - Each shutdown is logged ("peer_connection_limit_closed", with the peer address and how
//    many it had) and reported to the `on_closed` callback (the gateway counts it in
//    knooppunt_peer_connections_limited_total).
//  - With a limit of 0 nothing is started (no thread, no scans).
// Limits:
//  - It is not admission control: a connection over the limit exists for up to one
//    `interval` (plus scheduling delay) before it is shut down, and in that time it can
//    complete a handshake and make calls. It bounds how many connections a peer holds, not
//    how many it can open per second (use a firewall/conntrack rate limit in front for that).
//  - Peers are told apart by IP address only: parties behind one NAT or load balancer share a
//    limit, and an IPv6 peer with many addresses (a /64) is many peers.
//  - A scan costs one readdir of /proc/self/fd and a few system calls per open descriptor.
//  - Between the inode check and shutdown() gRPC could close that descriptor and a new
//    connection reuse its number (a window of a few instructions); that connection would be
//    shut down and its client reconnect.
#ifndef KNOOPPUNT_GATEWAY_IDENTITY_PEER_CONNECTION_LIMIT_H_
#define KNOOPPUNT_GATEWAY_IDENTITY_PEER_CONNECTION_LIMIT_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace knooppunt::identity {

class PeerConnectionLimit {
 public:
  static constexpr absl::Duration kDefaultInterval = absl::Milliseconds(250);

  // `max_per_peer` 0: off. `interval` zero: no thread (tests call ScanOnce()).
  // `on_closed(n)`: n sockets were shut down by one scan (called on the scanning thread).
  PeerConnectionLimit(uint32_t max_per_peer, absl::Duration interval,
                      std::function<void(int)> on_closed = nullptr);
  ~PeerConnectionLimit();
  PeerConnectionLimit(const PeerConnectionLimit&) = delete;
  PeerConnectionLimit& operator=(const PeerConnectionLimit&) = delete;

  // The gateway's listening port, once known; until then nothing is scanned.
  void SetListeningPort(int port) { port_.store(port); }

  // One scan now; returns how many sockets it shut down. Not to be called concurrently with
  // itself (the thread, when there is one, is the only caller).
  int ScanOnce();

 private:
  void Run(absl::Duration interval);

  const uint32_t max_per_peer_;
  const std::function<void(int)> on_closed_;
  std::atomic<int> port_{0};
  uint64_t scans_ = 0;
  // Socket inode → the scan that first saw it (only the scanning thread touches these).
  absl::flat_hash_map<uint64_t, uint64_t> first_seen_;
  absl::flat_hash_set<uint64_t> shut_down_;  // inodes shut down, until they are gone
  absl::Notification stop_;
  std::thread thread_;
};

}  // namespace knooppunt::identity

#endif  // KNOOPPUNT_GATEWAY_IDENTITY_PEER_CONNECTION_LIMIT_H_
