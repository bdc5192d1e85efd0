// PortForwarder (src/sandbox/expose.h) with the real guest forwarder (airlock-guest-agent
// forward-fd, src/guest/forward.cc) on a Unix socket instead of vsock: the whole forwarding path
// except the vsock device, with no VM. Servers listen on 127.0.0.1 only.
#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "agent/forward.h"
#include "sandbox/expose.h"

using namespace airlock;
using namespace airlock::sandbox;
using namespace std::chrono_literals;

namespace {

std::string agent_binary() {
  char self[PATH_MAX] = {};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  REQUIRE(n > 0);
  std::string dir(self, static_cast<size_t>(n));
  dir = dir.substr(0, dir.rfind('/'));  // build/tests
  dir = dir.substr(0, dir.rfind('/'));  // build
  std::string path = dir + "/bin/airlock-guest-agent";
  REQUIRE_MESSAGE(access(path.c_str(), X_OK) == 0, "build the airlock-guest-agent target first");
  return path;
}

size_t open_fds() {
  size_t n = 0;
  for (int fd = 0; fd < 4096; ++fd)
    if (fcntl(fd, F_GETFD) >= 0) ++n;
  return n;
}

sockaddr_un abstract_address(const std::string& name, socklen_t& len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path + 1, name.data(), name.size());  // abstract: no file anywhere
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return a;
}

// The guest forwarder as a child process on an abstract Unix socket.
struct GuestForwarder {
  pid_t pid = -1;
  std::string name = "airlock-expose-test-" + std::to_string(getpid()) + "-" +
                     std::to_string(reinterpret_cast<uintptr_t>(this));
  GuestForwarder() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd >= 0);
    socklen_t len;
    sockaddr_un a = abstract_address(name, len);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0);
    REQUIRE(listen(fd, 64) == 0);
    std::string bin = agent_binary();
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (fd == 3)
        fcntl(fd, F_SETFD, 0);  // dup2 onto itself would keep close-on-exec
      else
        dup2(fd, 3);
      execl(bin.c_str(), bin.c_str(), "forward-fd", "3", nullptr);
      _exit(127);
    }
    close(fd);
  }
  ~GuestForwarder() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
  GuestDialer dialer() {
    std::string n = name;
    return [n](Millis) -> Result<std::unique_ptr<GuestStream>> {
      int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      socklen_t len;
      sockaddr_un a = abstract_address(n, len);
      if (connect(fd, reinterpret_cast<sockaddr*>(&a), len) != 0) {
        close(fd);
        return Status(Errc::unavailable, "forwarder not reachable");
      }
      return make_socket_guest_stream(fd);
    };
  }
};

int listen_loopback(uint16_t& port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(fd, 64) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

int connect_loopback(uint16_t port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  timeval tv{20, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

// A "guest service": echoes every byte back, prefixed by nothing, and closes after the client's
// end of stream (after echoing everything).
struct EchoServer {
  int fd;
  uint16_t port = 0;
  std::thread thread;
  std::atomic<bool> stop{false};
  EchoServer() {
    fd = listen_loopback(port);
    thread = std::thread([this] {
      std::vector<std::thread> conns;
      while (!stop) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 100) <= 0) continue;
        int c = accept(fd, nullptr, nullptr);
        if (c < 0) continue;
        conns.emplace_back([c] {
          char buf[32768];
          for (;;) {
            ssize_t n = recv(c, buf, sizeof buf, 0);
            if (n <= 0) break;
            if (send(c, buf, static_cast<size_t>(n), MSG_NOSIGNAL) != n) break;
          }
          close(c);
        });
      }
      for (auto& t : conns) t.join();
    });
  }
  ~EchoServer() {
    stop = true;
    thread.join();
    close(fd);
  }
};

std::string read_all(int fd) {
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

}  // namespace

TEST_CASE("expose: bytes flow both ways through the guest forwarder with half-close") {
  GuestForwarder guest;
  EchoServer server;
  auto f = PortForwarder::start(server.port, guest.dialer());
  REQUIRE(f.ok());
  CHECK((*f)->address() == "127.0.0.1:" + std::to_string((*f)->host_port()));

  // 8 MiB each way: far more than any buffer on the path, so it only completes if every hop
  // applies backpressure correctly (and nothing is lost or reordered).
  std::string data(8 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>((i * 7919) >> 3);
  int c = connect_loopback((*f)->host_port());
  std::thread writer([&] {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = send(c, data.data() + off, std::min<size_t>(data.size() - off, 100000), 0);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    shutdown(c, SHUT_WR);
  });
  std::string back = read_all(c);
  writer.join();
  close(c);
  CHECK(back.size() == data.size());
  CHECK(back == data);
  CHECK((*f)->bytes_to_guest() == data.size());
  CHECK((*f)->bytes_from_guest() == data.size());

  // Several connections at once.
  std::vector<int> conns;
  for (int i = 0; i < 5; ++i) conns.push_back(connect_loopback((*f)->host_port()));
  for (int i = 0; i < 5; ++i) {
    std::string msg = "hello " + std::to_string(i);
    REQUIRE(send(conns[i], msg.data(), msg.size(), 0) == static_cast<ssize_t>(msg.size()));
    shutdown(conns[i], SHUT_WR);
  }
  for (int i = 0; i < 5; ++i) {
    CHECK(read_all(conns[i]) == "hello " + std::to_string(i));
    close(conns[i]);
  }
}

TEST_CASE("expose: a guest port nobody listens on closes the host connection") {
  GuestForwarder guest;
  uint16_t dead_port;
  int l = listen_loopback(dead_port);
  close(l);  // now nothing listens there
  auto f = PortForwarder::start(dead_port, guest.dialer());
  REQUIRE(f.ok());
  int c = connect_loopback((*f)->host_port());
  auto t0 = std::chrono::steady_clock::now();
  CHECK(read_all(c).empty());
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  close(c);
}

TEST_CASE("expose: a hostile forwarder (garbage reply or silence) ends only its connection") {
  // A fake guest side: for the first connection replies garbage, for the second says nothing.
  std::atomic<int> mode{0};
  std::vector<int> held;
  GuestDialer hostile = [&](Millis) -> Result<std::unique_ptr<GuestStream>> {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    if (mode.load() == 0) {
      std::string junk(64, 'x');
      REQUIRE(write(sv[1], junk.data(), junk.size()) == 64);
    }
    held.push_back(sv[1]);  // silence: keep the other end open and mute
    return make_socket_guest_stream(sv[0]);
  };
  ForwarderOptions o;
  o.handshake_timeout = 300ms;
  size_t fds_before = open_fds();
  {
    auto f = PortForwarder::start(80, hostile, o);
    REQUIRE(f.ok());
    int c = connect_loopback((*f)->host_port());
    CHECK(read_all(c).empty());
    close(c);
    mode = 1;
    c = connect_loopback((*f)->host_port());
    auto t0 = std::chrono::steady_clock::now();
    CHECK(read_all(c).empty());
    auto waited = std::chrono::steady_clock::now() - t0;
    CHECK(waited >= 250ms);
    CHECK(waited < 5s);
    close(c);
  }
  for (int fd : held) close(fd);
  CHECK(open_fds() == fds_before);
}

TEST_CASE("expose: stop() closes open connections and joins everything and frees the fds") {
  GuestForwarder guest;
  EchoServer server;
  size_t fds_before = open_fds();
  auto f = PortForwarder::start(server.port, guest.dialer());
  REQUIRE(f.ok());
  std::vector<int> conns;
  for (int i = 0; i < 3; ++i) {
    int c = connect_loopback((*f)->host_port());
    REQUIRE(send(c, "ping", 4, 0) == 4);
    char buf[4];
    REQUIRE(recv(c, buf, 4, MSG_WAITALL) == 4);  // the connection is fully up
    conns.push_back(c);
  }
  CHECK((*f)->active_connections() == 3);
  (*f)->stop();
  CHECK((*f)->active_connections() == 0);
  for (int c : conns) {
    CHECK(read_all(c).empty());  // closed by stop(), not by us
    close(c);
  }
  f->reset();
  // The echo server closes its ends on its own threads, a moment after seeing ours close.
  for (int i = 0; i < 200 && open_fds() != fds_before; ++i) usleep(10000);
  CHECK(open_fds() == fds_before);
}

TEST_CASE("expose: connections beyond the limit are refused and the others keep working") {
  GuestForwarder guest;
  EchoServer server;
  ForwarderOptions o;
  o.max_connections = 2;
  auto f = PortForwarder::start(server.port, guest.dialer(), o);
  REQUIRE(f.ok());
  int a = connect_loopback((*f)->host_port());
  int b = connect_loopback((*f)->host_port());
  for (int c : {a, b}) {
    REQUIRE(send(c, "x", 1, 0) == 1);
    char ch;
    REQUIRE(recv(c, &ch, 1, 0) == 1);
  }
  int extra = connect_loopback((*f)->host_port());
  CHECK(read_all(extra).empty());
  close(extra);
  REQUIRE(send(a, "y", 1, 0) == 1);
  char ch = 0;
  CHECK(recv(a, &ch, 1, 0) == 1);
  CHECK(ch == 'y');
  close(a);
  close(b);
}

TEST_CASE("forward protocol: requests and replies round-trip and malformed ones are refused") {
  namespace fwd = airlock::agent::forward;
  std::string r = fwd::encode_request(8080);
  REQUIRE(r.size() == fwd::kMessageSize);
  CHECK(fwd::decode_request(reinterpret_cast<const uint8_t*>(r.data())) == 8080);
  r[0] ^= 1;
  CHECK(fwd::decode_request(reinterpret_cast<const uint8_t*>(r.data())) == 0);
  std::string rep = fwd::encode_reply(111);
  int32_t result = 0;
  CHECK(fwd::decode_reply(reinterpret_cast<const uint8_t*>(rep.data()), result));
  CHECK(result == 111);
  rep[3] ^= 1;
  CHECK_FALSE(fwd::decode_reply(reinterpret_cast<const uint8_t*>(rep.data()), result));
}
