// The socket side of closing revoked clients' connections (gateway/identity/connection_registry):
// finding this process's sockets accepted on a port by their peer address, and shutting down
// exactly those. (The whole path — CRL change → connection closed — is shown end to end in
// tests/admin/rotation_revocation_test.cc.)
#include "gateway/identity/connection_registry.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace knooppunt::identity {
namespace {

// A socket descriptor closed at scope end.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

int LocalPort(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  return ss.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port)
                                  : ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
}

// A listening socket on the loopback address of `family`; -1 when not available.
int Listen(int family) {
  const int fd = socket(family, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    len = sizeof(sockaddr_in6);
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 || listen(fd, 8) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int Connect(int family, int port) {
  const int fd = socket(family, SOCK_STREAM, 0);
  sockaddr_storage ss{};
  socklen_t len = 0;
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(&ss);
    in->sin_family = AF_INET;
    in->sin_port = htons(static_cast<uint16_t>(port));
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(sockaddr_in);
  } else {
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&ss);
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(static_cast<uint16_t>(port));
    in6->sin6_addr = in6addr_loopback;
    len = sizeof(sockaddr_in6);
  }
  if (connect(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Whether the peer of `fd` ended the connection (end of stream) within `timeout_ms`.
bool SeesEndOfStream(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return false;
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

TEST(AcceptedSockets, ListsPeersAndShutsDownOnlyTheNamedOne) {
  Fd listener{Listen(AF_INET)};
  ASSERT_GE(listener.fd, 0);
  const int port = LocalPort(listener.fd);
  Fd client1{Connect(AF_INET, port)}, client2{Connect(AF_INET, port)};
  ASSERT_GE(client1.fd, 0);
  ASSERT_GE(client2.fd, 0);
  Fd accepted1{accept(listener.fd, nullptr, nullptr)},
      accepted2{accept(listener.fd, nullptr, nullptr)};
  ASSERT_GE(accepted1.fd, 0);
  ASSERT_GE(accepted2.fd, 0);

  const std::string peer1 = absl::StrCat("ipv4:127.0.0.1:", LocalPort(client1.fd));
  const std::string peer2 = absl::StrCat("ipv4:127.0.0.1:", LocalPort(client2.fd));
  std::vector<std::string> peers;
  for (const auto& socket : AcceptedSockets(port)) peers.push_back(socket.second);
  // Only the two accepted sockets: not the listener, not the clients (their local port differs).
  EXPECT_EQ(peers.size(), 2u);
  EXPECT_NE(std::find(peers.begin(), peers.end(), peer1), peers.end());
  EXPECT_NE(std::find(peers.begin(), peers.end(), peer2), peers.end());

  // Another port's sockets are never touched.
  EXPECT_EQ(ShutdownAcceptedSockets(port + 1 == 65536 ? 1 : port + 1, peer1), 0);
  EXPECT_EQ(ShutdownAcceptedSockets(port, "ipv4:127.0.0.1:1"), 0);
  EXPECT_EQ(ShutdownAcceptedSockets(port, "unix:/tmp/x"), 0);

  EXPECT_EQ(ShutdownAcceptedSockets(port, peer1), 1);
  EXPECT_TRUE(SeesEndOfStream(client1.fd, 5000));
  EXPECT_FALSE(SeesEndOfStream(client2.fd, 0));
  // The descriptor stays open (its owner closes it): no reuse under the owner's feet.
  EXPECT_EQ(fcntl(accepted1.fd, F_GETFD), 0);
}

TEST(AcceptedSockets, MatchesIpv6PeersAsGrpcSpellsThem) {
  Fd listener{Listen(AF_INET6)};
  if (listener.fd < 0) GTEST_SKIP() << "no IPv6 loopback here";
  const int port = LocalPort(listener.fd);
  Fd client{Connect(AF_INET6, port)};
  ASSERT_GE(client.fd, 0);
  Fd accepted{accept(listener.fd, nullptr, nullptr)};
  ASSERT_GE(accepted.fd, 0);
  std::vector<std::pair<int, std::string>> sockets = AcceptedSockets(port);
  ASSERT_EQ(sockets.size(), 1u);
  EXPECT_EQ(sockets[0].second, absl::StrCat("ipv6:[::1]:", LocalPort(client.fd)));
  // gRPC percent-encodes the brackets of an IPv6 peer URI.
  EXPECT_EQ(ShutdownAcceptedSockets(port, absl::StrCat("ipv6:%5B::1%5D:", LocalPort(client.fd))),
            1);
  EXPECT_TRUE(SeesEndOfStream(client.fd, 5000));
}

}  // namespace
}  // namespace knooppunt::identity
