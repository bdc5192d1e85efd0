#include "guest/echo.h"

#include <linux/vm_sockets.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace airlock::guest {

int run_echo_server(const char* port_text) {
  int s = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_vm addr {};
  addr.svm_family = AF_VSOCK;
  addr.svm_cid = VMADDR_CID_ANY;
  addr.svm_port = static_cast<unsigned>(atoi(port_text));
  if (s < 0 || bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(s, 4) != 0) {
    std::fprintf(stderr, "echo-server: %s\n", strerror(errno));
    return 1;
  }
  std::printf("listening\n");
  std::fflush(stdout);
  for (;;) {
    int c = accept(s, nullptr, nullptr);
    if (c < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    char buf[64 * 1024];
    for (;;) {
      ssize_t n = read(c, buf, sizeof buf);
      if (n <= 0) break;
      ssize_t off = 0;
      while (off < n) {
        ssize_t w = write(c, buf + off, static_cast<size_t>(n - off));
        if (w <= 0) break;
        off += w;
      }
    }
    close(c);
  }
}

}  // namespace airlock::guest
