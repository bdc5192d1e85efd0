#include "guest/hostile.h"

#include <dirent.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

#include "agent/protocol.h"

namespace airlock::guest {

namespace proto = airlock::agent::proto;

namespace {

// A duplicate of the agent's AF_VSOCK socket (or, when the agent runs on a host in tests, its
// AF_UNIX connection), or -1.
int steal_agent_socket(pid_t agent) {
  int pidfd = static_cast<int>(syscall(SYS_pidfd_open, agent, 0));
  if (pidfd < 0) return -1;
  std::string dir = "/proc/" + std::to_string(agent) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return -1;
  int found = -1, unix_found = -1;
  while (struct dirent* e = readdir(d)) {
    int target = atoi(e->d_name);
    if (e->d_name[0] == '.') continue;
    int fd = static_cast<int>(syscall(SYS_pidfd_getfd, pidfd, target, 0));
    if (fd < 0) continue;
    struct sockaddr_storage ss {};
    socklen_t len = sizeof ss;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 && ss.ss_family == AF_VSOCK) {
      found = fd;
      break;
    }
    if (unix_found < 0 && ss.ss_family == AF_UNIX) {
      unix_found = fd;
      continue;
    }
    close(fd);
  }
  closedir(d);
  close(pidfd);
  if (found >= 0) {
    if (unix_found >= 0) close(unix_found);
    return found;
  }
  return unix_found;
}

// The stolen socket shares the agent's O_NONBLOCK: wait for room instead of failing.
bool write_all(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      struct pollfd p = {fd, POLLOUT, 0};
      poll(&p, 1, 10000);
      continue;
    }
    if (n <= 0) return false;
    off += static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

int run_hostile(const char* mode, const char* agent_pid_text) {
  signal(SIGPIPE, SIG_IGN);
  std::string m = mode;
  if (m == "connect-flood") {
    // Connection requests to ports nobody listens on, as fast as possible; the second
    // argument is how many.
    int count = atoi(agent_pid_text);
    int refused = 0;
    for (int i = 0; i < count; ++i) {
      int fd = socket(AF_VSOCK, SOCK_STREAM, 0);
      struct sockaddr_vm a {};
      a.svm_family = AF_VSOCK;
      a.svm_cid = proto::kHostCid;
      a.svm_port = 20000 + static_cast<unsigned>(i);
      if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) ++refused;
      close(fd);
    }
    std::printf("refused %d\n", refused);
    return 0;
  }

  pid_t agent = static_cast<pid_t>(atoi(agent_pid_text));
  // Let the agent finish sending what it was sending (our own Started frame) before we stop it.
  usleep(200 * 1000);
  int fd = steal_agent_socket(agent);
  if (fd < 0) {
    std::fprintf(stderr, "hostile: cannot take the agent's socket: %s\n", strerror(errno));
    return 1;
  }
  kill(agent, SIGSTOP);
  bool ok = true;
  if (m == "garbage") {
    std::mt19937 rng(1);
    std::string junk(64 * 1024, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    ok = write_all(fd, junk);
  } else if (m == "huge") {
    ok = write_all(fd, proto::encode_header(proto::Op::kStdout, 1, 0xfffffff0u) + "xxxx");
  } else if (m == "unknown-op") {
    std::string f = proto::encode_frame(proto::Op::kOk, 1);
    f[4] = static_cast<char>(0x77);
    f[5] = static_cast<char>(0x77);
    ok = write_all(fd, f);
  } else if (m == "wrong-direction") {
    proto::ExecRequest req;
    req.argv = {"/bin/true"};
    ok = write_all(fd, proto::encode_frame(proto::Op::kExec, 1, req.encode()));
  } else if (m == "flood") {
    // Well-formed output for a request the host never made: 64 MiB of it, then give the
    // agent back its connection.
    std::string frame =
        proto::encode_frame(proto::Op::kStdout, 0x7fffffff, std::string(proto::kDataChunk, 'F'));
    for (int i = 0; i < 1024 && ok; ++i) ok = write_all(fd, frame);
    kill(agent, SIGCONT);
  } else {
    kill(agent, SIGCONT);
    std::fprintf(stderr, "hostile: unknown mode %s\n", mode);
    return 2;
  }
  std::printf("hostile %s: %s\n", mode, ok ? "sent" : "write failed");
  // The agent may stay stopped (its output never reaches the host): say it on the console too.
  if (FILE* console = std::fopen("/dev/console", "w")) {
    std::fprintf(console, "airlock-hostile: %s: %s\n", mode, ok ? "sent" : "write failed");
    std::fclose(console);
  }
  return 0;
}

}  // namespace airlock::guest
