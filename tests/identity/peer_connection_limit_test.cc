// limits.max_connections_per_peer at the socket (gateway/identity/peer_connection_limit): the
// newest accepted sockets of a peer address above the limit are shut down, the older ones
// stay, sockets already shut down are not counted again, other ports are never touched. (The
// real gateway with raw TCP floods and an mTLS client: tests/integration/
// peer_connection_limit_test.cc.)
#include "gateway/identity/peer_connection_limit.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace knooppunt::identity {
namespace {

struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

int LocalPort(int fd) {
  sockaddr_in in{};
  socklen_t len = sizeof(in);
  getsockname(fd, reinterpret_cast<sockaddr*>(&in), &len);
  return ntohs(in.sin_port);
}

int Listen() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&in), sizeof(in)) != 0 || listen(fd, 64) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int Connect(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(static_cast<uint16_t>(port));
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&in), sizeof(in)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SeesEndOfStream(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, timeout_ms) != 1) return false;
  char c;
  return recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

uint64_t Inode(int fd) {
  struct stat st {};
  fstat(fd, &st);
  return st.st_ino;
}

// A client socket and the server side accepted for it.
struct Connection {
  std::unique_ptr<Fd> client, accepted;
};

Connection Open(int listener, int port) {
  Connection c;
  c.client = std::make_unique<Fd>(Connect(port));
  c.accepted = std::make_unique<Fd>(accept(listener, nullptr, nullptr));
  return c;
}

TEST(PeerConnectionLimit, ShutsDownTheNewestAboveTheLimitAndKeepsTheOlderOnes) {
  Fd listener(Listen());
  ASSERT_GE(listener.fd, 0);
  const int port = LocalPort(listener.fd);
  int reported = 0;
  PeerConnectionLimit limit(3, absl::ZeroDuration(), [&](int n) { reported += n; });
  EXPECT_EQ(limit.ScanOnce(), 0) << "no port yet: nothing scanned";
  limit.SetListeningPort(port);

  std::vector<Connection> old;
  for (int i = 0; i < 2; ++i) old.push_back(Open(listener.fd, port));
  for (const auto& c : old) ASSERT_GE(c.accepted->fd, 0);
  EXPECT_EQ(limit.ScanOnce(), 0) << "2 of at most 3";

  std::vector<Connection> flood;
  for (int i = 0; i < 5; ++i) flood.push_back(Open(listener.fd, port));
  for (const auto& c : flood) ASSERT_GE(c.accepted->fd, 0);
  EXPECT_EQ(limit.ScanOnce(), 4) << "7 open, 3 allowed";
  EXPECT_EQ(reported, 4);

  // The connections seen by an earlier scan stay; of the flood (all first seen by the same
  // scan) the one with the lowest inode stays.
  for (const auto& c : old) EXPECT_FALSE(SeesEndOfStream(c.client->fd, 0));
  const auto oldest_of_flood = std::min_element(
      flood.begin(), flood.end(),
      [](const Connection& a, const Connection& b) { return Inode(a.accepted->fd) < Inode(b.accepted->fd); });
  for (auto it = flood.begin(); it != flood.end(); ++it) {
    if (it == oldest_of_flood) {
      EXPECT_FALSE(SeesEndOfStream(it->client->fd, 0));
    } else {
      EXPECT_TRUE(SeesEndOfStream(it->client->fd, 5000));
      // Shut down, never closed: the descriptor is its owner's to close.
      EXPECT_EQ(fcntl(it->accepted->fd, F_GETFD), 0);
    }
  }

  // Shut-down sockets their owner has not closed yet are not counted again.
  EXPECT_EQ(limit.ScanOnce(), 0);
  EXPECT_EQ(reported, 4);

  // One more: over the limit again, and it is the newest.
  Connection late = Open(listener.fd, port);
  EXPECT_EQ(limit.ScanOnce(), 1);
  EXPECT_TRUE(SeesEndOfStream(late.client->fd, 5000));
  for (const auto& c : old) EXPECT_FALSE(SeesEndOfStream(c.client->fd, 0));
  EXPECT_FALSE(SeesEndOfStream(oldest_of_flood->client->fd, 0));

  // When one of the kept connections ends, a new one fits.
  old.pop_back();
  Connection replacement = Open(listener.fd, port);
  EXPECT_EQ(limit.ScanOnce(), 0);
  EXPECT_FALSE(SeesEndOfStream(replacement.client->fd, 0));
}

TEST(PeerConnectionLimit, OtherPortsAreNeverTouched) {
  Fd gateway(Listen()), other(Listen());
  ASSERT_GE(gateway.fd, 0);
  ASSERT_GE(other.fd, 0);
  PeerConnectionLimit limit(1, absl::ZeroDuration());
  limit.SetListeningPort(LocalPort(gateway.fd));
  std::vector<Connection> elsewhere;
  for (int i = 0; i < 4; ++i) elsewhere.push_back(Open(other.fd, LocalPort(other.fd)));
  Connection one = Open(gateway.fd, LocalPort(gateway.fd));
  EXPECT_EQ(limit.ScanOnce(), 0);
  for (const auto& c : elsewhere) EXPECT_FALSE(SeesEndOfStream(c.client->fd, 0));
  EXPECT_FALSE(SeesEndOfStream(one.client->fd, 0));
}

TEST(PeerConnectionLimit, ZeroIsOff) {
  Fd listener(Listen());
  ASSERT_GE(listener.fd, 0);
  const int port = LocalPort(listener.fd);
  PeerConnectionLimit limit(0, absl::Milliseconds(10));  // no thread is started for 0
  limit.SetListeningPort(port);
  std::vector<Connection> many;
  for (int i = 0; i < 8; ++i) many.push_back(Open(listener.fd, port));
  EXPECT_EQ(limit.ScanOnce(), 0);
  for (const auto& c : many) EXPECT_FALSE(SeesEndOfStream(c.client->fd, 0));
}

TEST(PeerConnectionLimit, ItsThreadEnforcesTheLimit) {
  Fd listener(Listen());
  ASSERT_GE(listener.fd, 0);
  const int port = LocalPort(listener.fd);
  PeerConnectionLimit limit(2, absl::Milliseconds(20));
  limit.SetListeningPort(port);
  std::vector<Connection> many;
  for (int i = 0; i < 6; ++i) many.push_back(Open(listener.fd, port));
  // Bounded wait (generous for a loaded machine) until 4 have ended; 2 are left open.
  std::vector<bool> ended(many.size(), false);
  const absl::Time until = absl::Now() + absl::Seconds(20);
  int count = 0;
  while (count < 4 && absl::Now() < until) {
    for (size_t i = 0; i < many.size(); ++i) {
      if (!ended[i] && SeesEndOfStream(many[i].client->fd, 10)) {
        ended[i] = true;
        ++count;
      }
    }
  }
  EXPECT_EQ(count, 4);
}

}  // namespace
}  // namespace knooppunt::identity
