#include "gateway/identity/peer_connection_limit.h"

#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gateway/common/log.h"
#include "gateway/identity/connection_registry.h"

namespace knooppunt::identity {
namespace {

struct Socket {
  int fd = -1;
  uint64_t inode = 0;
  uint64_t first_seen = 0;
};

// "ipv4:10.0.0.1:443" → "ipv4:10.0.0.1"; "ipv6:[::1]:443" → "ipv6:[::1]".
std::string PeerAddress(const std::string& peer) {
  const size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

std::optional<uint64_t> InodeOf(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) return std::nullopt;
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace

PeerConnectionLimit::PeerConnectionLimit(uint32_t max_per_peer, absl::Duration interval,
                                         std::function<void(int)> on_closed)
    : max_per_peer_(max_per_peer), on_closed_(std::move(on_closed)) {
  if (max_per_peer_ > 0 && interval > absl::ZeroDuration()) {
    thread_ = std::thread([this, interval] { Run(interval); });
  }
}

PeerConnectionLimit::~PeerConnectionLimit() {
  stop_.Notify();
  if (thread_.joinable()) thread_.join();
}

void PeerConnectionLimit::Run(absl::Duration interval) {
  while (!stop_.WaitForNotificationWithTimeout(interval)) ScanOnce();
}

int PeerConnectionLimit::ScanOnce() {
  const int port = port_.load();
  if (max_per_peer_ == 0 || port <= 0) return 0;
  const uint64_t scan = ++scans_;
  absl::flat_hash_map<std::string, std::vector<Socket>> by_address;
  absl::flat_hash_set<uint64_t> live;
  for (const auto& [fd, peer] : AcceptedSockets(port)) {
    const std::optional<uint64_t> inode = InodeOf(fd);
    if (!inode) continue;
    live.insert(*inode);
    const uint64_t first_seen = first_seen_.try_emplace(*inode, scan).first->second;
    // A socket already shut down is on its way out: it no longer counts.
    if (shut_down_.contains(*inode)) continue;
    by_address[PeerAddress(peer)].push_back({fd, *inode, first_seen});
  }
  // Forget sockets that are gone (their inode may come back for a new socket).
  absl::erase_if(first_seen_, [&](const auto& entry) { return !live.contains(entry.first); });
  absl::erase_if(shut_down_, [&](uint64_t inode) { return !live.contains(inode); });

  int closed_total = 0;
  for (auto& [address, sockets] : by_address) {
    if (sockets.size() <= max_per_peer_) continue;
    std::sort(sockets.begin(), sockets.end(), [](const Socket& a, const Socket& b) {
      return a.first_seen != b.first_seen ? a.first_seen < b.first_seen : a.inode < b.inode;
    });
    int closed = 0;
    for (size_t i = max_per_peer_; i < sockets.size(); ++i) {
      const Socket& s = sockets[i];
      // Still the socket listed (gRPC may have closed it and reused the number since).
      if (InodeOf(s.fd) != s.inode) continue;
      if (shutdown(s.fd, SHUT_RDWR) == 0) {
        shut_down_.insert(s.inode);
        ++closed;
      }
    }
    if (closed > 0) {
      Log(LogLevel::kWarning, "peer_connection_limit_closed",
          {{"peer", address},
           {"open", absl::StrCat(sockets.size())},
           {"limit", absl::StrCat(max_per_peer_)},
           {"closed", absl::StrCat(closed)}});
      closed_total += closed;
    }
  }
  if (closed_total > 0 && on_closed_) on_closed_(closed_total);
  return closed_total;
}

}  // namespace knooppunt::identity
