#include "gateway/identity/connection_registry.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <array>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "absl/hash/hash.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "gateway/common/log.h"
#include "gateway/identity/crl_watcher.h"
#include "grpcpp/server_context.h"

namespace knooppunt::identity {
namespace {

// A TCP endpoint address, comparable whatever way it was spelt.
struct Address {
  bool v6 = false;
  std::array<unsigned char, 16> bytes{};
  uint16_t port = 0;
  bool operator==(const Address& o) const {
    return v6 == o.v6 && bytes == o.bytes && port == o.port;
  }
};

std::optional<Address> FromSockaddr(const sockaddr_storage& ss) {
  Address a;
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    std::memcpy(a.bytes.data(), &in->sin_addr, 4);
    a.port = ntohs(in->sin_port);
    return a;
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    a.port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      std::memcpy(a.bytes.data(), in6->sin6_addr.s6_addr + 12, 4);
    } else {
      a.v6 = true;
      std::memcpy(a.bytes.data(), in6->sin6_addr.s6_addr, 16);
    }
    return a;
  }
  return std::nullopt;
}

std::string ToPeerString(const Address& a) {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(a.v6 ? AF_INET6 : AF_INET, a.bytes.data(), text, sizeof(text));
  return a.v6 ? absl::StrCat("ipv6:[", text, "]:", a.port)
              : absl::StrCat("ipv4:", text, ":", a.port);
}

// "ipv4:127.0.0.1:54321", "ipv6:[::1]:54321", "ipv6:%5B::1%5D:54321" (gRPC percent-encodes
// the brackets in newer versions); IPv4-mapped IPv6 addresses count as IPv4.
std::optional<Address> ParsePeer(absl::string_view peer) {
  bool v6 = false;
  if (absl::ConsumePrefix(&peer, "ipv6:")) {
    v6 = true;
  } else if (!absl::ConsumePrefix(&peer, "ipv4:")) {
    return std::nullopt;
  }
  std::string text = absl::StrReplaceAll(peer, {{"%5B", "["}, {"%5D", "]"}, {"%25", "%"}});
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  uint32_t port = 0;
  if (!absl::SimpleAtoi(absl::string_view(text).substr(colon + 1), &port) || port > 65535) {
    return std::nullopt;
  }
  std::string host = text.substr(0, colon);
  if (v6) {
    if (host.size() < 2 || host.front() != '[' || host.back() != ']') return std::nullopt;
    host = host.substr(1, host.size() - 2);
    host = host.substr(0, host.find('%'));  // zone id
  }
  sockaddr_storage ss{};
  if (v6) {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) != 1) return std::nullopt;
  } else {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
    if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) != 1) return std::nullopt;
  }
  return FromSockaddr(ss);
}

// Calls `f(fd, peer)` for every connected TCP socket of this process whose local port is
// `port`.
template <typename F>
void ForEachAcceptedSocket(int port, F f) {
  if (port <= 0) return;
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) return;
  const int own = dirfd(dir);
  while (const dirent* entry = readdir(dir)) {
    int fd = -1;
    if (!absl::SimpleAtoi(entry->d_name, &fd) || fd == own) continue;
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) != 0) continue;
    std::optional<Address> local_address = FromSockaddr(local);
    if (!local_address || local_address->port != port) continue;
    sockaddr_storage remote{};
    len = sizeof(remote);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&remote), &len) != 0) continue;  // listening
    std::optional<Address> peer = FromSockaddr(remote);
    if (peer) f(fd, *peer);
  }
  closedir(dir);
}

class RegisteringInterceptor final : public grpc::experimental::Interceptor {
 public:
  RegisteringInterceptor(ConnectionRegistry* registry, grpc::experimental::ServerRpcInfo* info)
      : registry_(registry), info_(info) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      grpc::ServerContextBase* context = info_->server_context();
      std::shared_ptr<const grpc::AuthContext> auth =
          context != nullptr ? context->auth_context() : nullptr;
      if (auth != nullptr) {
        const std::vector<grpc::string_ref> certs = auth->FindPropertyValues("x509_pem_cert");
        if (!certs.empty()) {
          registry_->OnCall(context->peer(),
                            absl::string_view(certs.front().data(), certs.front().size()));
        }
      }
    }
    methods->Proceed();
  }

 private:
  ConnectionRegistry* const registry_;
  grpc::experimental::ServerRpcInfo* const info_;
};

class RegisteringInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RegisteringInterceptorFactory(ConnectionRegistry* registry) : registry_(registry) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RegisteringInterceptor(registry_, info);
  }

 private:
  ConnectionRegistry* const registry_;
};

}  // namespace

std::vector<std::pair<int, std::string>> AcceptedSockets(int port) {
  std::vector<std::pair<int, std::string>> out;
  ForEachAcceptedSocket(
      port, [&](int fd, const Address& peer) { out.emplace_back(fd, ToPeerString(peer)); });
  return out;
}

int ShutdownAcceptedSockets(int port, absl::string_view peer) {
  const std::optional<Address> wanted = ParsePeer(peer);
  if (!wanted) return 0;
  int count = 0;
  ForEachAcceptedSocket(port, [&](int fd, const Address& seen) {
    if (seen == *wanted && shutdown(fd, SHUT_RDWR) == 0) ++count;
  });
  return count;
}

ConnectionRegistry::ConnectionRegistry(const CrlWatcher* crls) : crls_(crls) {
  thread_ = std::thread([this] { Run(); });
}

ConnectionRegistry::~ConnectionRegistry() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void ConnectionRegistry::OnCall(absl::string_view peer, absl::string_view certificate_pem) {
  const size_t hash = absl::HashOf(certificate_pem);
  {
    absl::ReaderMutexLock lock(&mu_);
    auto it = entries_.find(peer);
    // Known connection, same certificate: its revocation is found by CloseRevoked().
    if (it != entries_.end() && it->second.certificate_hash == hash) return;
  }
  Entry entry{hash, RevocationKeyOfPem(certificate_pem)};
  const std::string revocation_key = entry.revocation_key;
  {
    absl::MutexLock lock(&mu_);
    if (entries_.size() >= kMaxEntries && !entries_.contains(peer)) {
      prune_now_ = true;
    } else {
      entries_[std::string(peer)] = std::move(entry);
    }
  }
  // Registered first, checked second: a CRL swapped in before this check is seen here, one
  // swapped in after it is seen by the rescan that follows every swap (CloseRevoked()).
  if (crls_->IsRevoked(revocation_key)) {
    absl::MutexLock lock(&mu_);
    entries_.erase(peer);
    to_close_.insert(std::string(peer));
  }
}

void ConnectionRegistry::CloseRevoked() {
  absl::MutexLock lock(&mu_);
  rescan_ = true;
}

size_t ConnectionRegistry::size() const {
  absl::ReaderMutexLock lock(&mu_);
  return entries_.size();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
ConnectionRegistry::InterceptorFactory() {
  return std::make_unique<RegisteringInterceptorFactory>(this);
}

void ConnectionRegistry::Run() {
  absl::Time next_prune = absl::Now() + kPruneInterval;
  while (true) {
    std::vector<std::string> close;
    bool prune = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](ConnectionRegistry* r) {
                                  return r->stop_ || r->rescan_ || r->prune_now_ ||
                                         !r->to_close_.empty();
                                },
                                this),
                            next_prune);
      if (stop_) return;
      if (rescan_) {
        rescan_ = false;
        for (const auto& [peer, entry] : entries_) {
          if (crls_->IsRevoked(entry.revocation_key)) to_close_.insert(peer);
        }
      }
      close.assign(to_close_.begin(), to_close_.end());
      to_close_.clear();
      for (const std::string& peer : close) entries_.erase(peer);
      prune = prune_now_ || absl::Now() >= next_prune;
      prune_now_ = false;
    }
    const int port = port_.load();
    for (const std::string& peer : close) {
      const int sockets = ShutdownAcceptedSockets(port, peer);
      Log(LogLevel::kWarning, "revoked_connection_closed",
          {{"peer", peer}, {"sockets", absl::StrCat(sockets)}});
    }
    if (prune && port > 0) {
      next_prune = absl::Now() + kPruneInterval;
      absl::flat_hash_set<std::string> live;
      for (auto& socket : AcceptedSockets(port)) live.insert(std::move(socket.second));
      absl::MutexLock lock(&mu_);
      // Peers are stored as gRPC spells them; compare in the same canonical form.
      for (auto it = entries_.begin(); it != entries_.end();) {
        const std::optional<Address> a = ParsePeer(it->first);
        if (!a || !live.contains(ToPeerString(*a))) {
          entries_.erase(it++);
        } else {
          ++it;
        }
      }
    } else if (prune) {
      next_prune = absl::Now() + kPruneInterval;
    }
  }
}

}  // namespace knooppunt::identity
