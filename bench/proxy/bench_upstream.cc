// A minimal HTTPS/1.1 upstream for the proxy benchmark: one epoll thread, keep-alive, GET only.
//   /      -> 13-byte body          /1m -> 1 MiB body
// Usage: airlock-bench-upstream IP PORT CERT.pem KEY.pem
// Not part of airlock; it exists so every proxy in the comparison talks to the same, cheap
// upstream (the Python test server would dominate the CPU).
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>
#include <unordered_map>

namespace {

struct Conn {
  int fd = -1;
  SSL* ssl = nullptr;
  bool handshaken = false;
  std::string in;
  std::string out;
  size_t off = 0;
};

std::string small_response() {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nhello, proxy\n";
}

std::string big_response() {
  std::string body(1 << 20, 'x');
  return "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

void close_conn(int ep, std::unordered_map<int, Conn>& conns, int fd) {
  auto it = conns.find(fd);
  if (it == conns.end()) return;
  epoll_ctl(ep, EPOLL_CTL_DEL, fd, nullptr);
  SSL_free(it->second.ssl);
  close(fd);
  conns.erase(it);
}

// Returns false when the connection must close.
bool serve(Conn& c, const std::string& small, const std::string& big) {
  if (!c.handshaken) {
    int r = SSL_do_handshake(c.ssl);
    if (r != 1) {
      int e = SSL_get_error(c.ssl, r);
      return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    }
    c.handshaken = true;
  }
  for (;;) {
    while (c.off < c.out.size()) {
      int n = SSL_write(c.ssl, c.out.data() + c.off, static_cast<int>(c.out.size() - c.off));
      if (n <= 0) {
        int e = SSL_get_error(c.ssl, n);
        return e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ;
      }
      c.off += static_cast<size_t>(n);
    }
    c.out.clear();
    c.off = 0;
    size_t end = c.in.find("\r\n\r\n");
    if (end != std::string::npos) {
      bool is_big = c.in.compare(0, 8, "GET /1m ") == 0;
      c.in.erase(0, end + 4);
      c.out = is_big ? big : small;
      continue;
    }
    char buf[16384];
    int n = SSL_read(c.ssl, buf, sizeof buf);
    if (n <= 0) {
      int e = SSL_get_error(c.ssl, n);
      ERR_clear_error();
      return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
    }
    c.in.append(buf, static_cast<size_t>(n));
    if (c.in.size() > 65536) return false;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: %s IP PORT CERT KEY\n", argv[0]);
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  SSL_CTX* ctx = SSL_CTX_new(TLS_method());
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
    fprintf(stderr, "cannot load certificate/key\n");
    return 1;
  }
  int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(static_cast<uint16_t>(atoi(argv[2])));
  inet_pton(AF_INET, argv[1], &sin.sin_addr);
  if (bind(lfd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) < 0 || listen(lfd, 4096) < 0) {
    perror("bind/listen");
    return 1;
  }
  printf("listening %s:%s\n", argv[1], argv[2]);
  fflush(stdout);
  const std::string small = small_response(), big = big_response();
  int ep = epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = lfd;
  epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
  std::unordered_map<int, Conn> conns;
  epoll_event events[256];
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == lfd) {
        for (;;) {
          int c = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK);
          if (c < 0) break;
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          Conn& conn = conns[c];
          conn.fd = c;
          conn.ssl = SSL_new(ctx);
          SSL_set_fd(conn.ssl, c);
          SSL_set_accept_state(conn.ssl);
          epoll_event cev{};
          cev.events = EPOLLIN | EPOLLOUT | EPOLLET;
          cev.data.fd = c;
          epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      if (!serve(it->second, small, big)) close_conn(ep, conns, fd);
    }
  }
}
