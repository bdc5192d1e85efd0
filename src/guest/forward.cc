#include "guest/forward.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>

#include "agent/forward.h"

namespace airlock::guest {

namespace fwd = airlock::agent::forward;

namespace {

constexpr size_t kBufferBytes = 64 * 1024;
constexpr int kHandshakeTimeoutSec = 10;

bool send_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

bool recv_all(int fd, uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t r = recv(fd, p, n, 0);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

// One direction of the copy: bytes read from `from` wait in `buf` until written to `to`.
struct Direction {
  Direction(int f, int t) : from(f), to(t) {}
  int from, to;
  char buf[kBufferBytes];
  size_t len = 0, off = 0;
  bool eof = false;        // `from` ended its sending side
  bool shut_down = false;  // ... and we passed that on to `to`
  bool empty() const { return off == len; }
};

// Copies both ways between two connected non-blocking sockets until both directions ended or
// either side failed.
void splice(int a, int b) {
  Direction d[2] = {Direction(a, b), Direction(b, a)};
  for (;;) {
    if (d[0].shut_down && d[1].shut_down) return;
    short events[2] = {0, 0};  // for a, b
    auto index = [&](int fd) { return fd == a ? 0 : 1; };
    for (auto& dir : d) {
      if (!dir.eof && dir.empty()) events[index(dir.from)] |= POLLIN;
      if (!dir.empty()) events[index(dir.to)] |= POLLOUT;
    }
    struct pollfd p[2] = {{events[0] ? a : -1, events[0], 0}, {events[1] ? b : -1, events[1], 0}};
    if (!events[0] && !events[1]) return;
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    for (auto& dir : d) {
      short in = p[index(dir.from)].revents, out = p[index(dir.to)].revents;
      if (!dir.eof && dir.empty() && (in & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t n = read(dir.from, dir.buf, sizeof dir.buf);
        if (n > 0) {
          dir.len = static_cast<size_t>(n);
          dir.off = 0;
        } else if (n == 0) {
          dir.eof = true;
        } else if (errno != EAGAIN && errno != EINTR) {
          return;
        }
      }
      if (!dir.empty() && (out & (POLLOUT | POLLHUP | POLLERR))) {
        ssize_t n = send(dir.to, dir.buf + dir.off, dir.len - dir.off, MSG_NOSIGNAL);
        if (n > 0) {
          dir.off += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return;
        }
        if (dir.empty()) dir.len = dir.off = 0;
      }
      if (dir.eof && dir.empty() && !dir.shut_down) {
        shutdown(dir.to, SHUT_WR);
        dir.shut_down = true;
      }
    }
  }
}

int serve_one(int conn) {
  struct timeval tv {
    kHandshakeTimeoutSec, 0
  };
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t req[fwd::kMessageSize];
  if (!recv_all(conn, req, sizeof req)) return 1;
  uint16_t port = fwd::decode_request(req);
  if (port == 0) {
    std::string reply = fwd::encode_reply(EINVAL);
    send_all(conn, reply.data(), reply.size());
    return 1;
  }
  int tcp = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int err = tcp < 0 ? errno : 0;
  if (tcp >= 0) {
    struct sockaddr_in addr {};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(tcp, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) err = errno;
  }
  std::string reply = fwd::encode_reply(err);
  if (!send_all(conn, reply.data(), reply.size()) || err != 0) return 1;
  tv = {0, 0};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  fcntl(conn, F_SETFL, fcntl(conn, F_GETFL) | O_NONBLOCK);
  fcntl(tcp, F_SETFL, fcntl(tcp, F_GETFL) | O_NONBLOCK);
  splice(conn, tcp);
  return 0;
}

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

int listen_vsock() {
  // The vsock transport appears once its module has probed the device: retry for a while.
  int64_t give_up = now_ms() + 30000;
  for (;;) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      struct sockaddr_vm addr {};
      addr.svm_family = AF_VSOCK;
      addr.svm_cid = VMADDR_CID_ANY;
      addr.svm_port = fwd::kGuestPort;
      if (bind(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0 &&
          listen(fd, 64) == 0)
        return fd;
      close(fd);
    }
    if (now_ms() > give_up) {
      dprintf(2, "airlock-forward: cannot listen on vsock port %u: %s\n", fwd::kGuestPort,
              strerror(errno));
      return -1;
    }
    usleep(20000);
  }
}

}  // namespace

int serve_forwarder(int listen_fd) {
  signal(SIGCHLD, SIG_IGN);  // children are reaped automatically
  signal(SIGPIPE, SIG_IGN);
  for (;;) {
    int conn = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN) continue;
      if (errno == EMFILE || errno == ENFILE || errno == ENOMEM || errno == ENOBUFS) {
        usleep(100000);
        continue;
      }
      dprintf(2, "airlock-forward: accept: %s\n", strerror(errno));
      return 1;
    }
    pid_t pid = fork();
    if (pid == 0) {
      close(listen_fd);
      _exit(serve_one(conn));
    }
    close(conn);  // also when fork failed: that connection is refused
  }
}

int start_forwarder() {
  pid_t pid = fork();
  if (pid != 0) return pid;
  int fd = listen_vsock();
  _exit(fd < 0 ? 1 : serve_forwarder(fd));
}

}  // namespace airlock::guest
