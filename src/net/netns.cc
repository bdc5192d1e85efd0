#include "net/netns.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <system_error>
#include <thread>

namespace airlock::net {

namespace {

// Runs `body` on its own thread and waits for it: the thread's namespace changes die with it.
Status on_helper_thread(const std::function<Status()>& body) {
  Status st;
  try {
    std::thread t([&] { st = body(); });
    t.join();
  } catch (const std::system_error& e) {
    return Status(Errc::resource_exhausted, std::string("namespace helper thread: ") + e.what());
  }
  return st;
}

Status privilege_error(int err, const char* what) {
  Status st = errno_status(err, what);
  if (err == EPERM || err == EACCES)
    st = Status(Errc::permission_denied,
                std::string(what) +
                    ": operation not permitted; a per-sandbox network namespace needs "
                    "CAP_SYS_ADMIN and CAP_NET_ADMIN (run as root), or pass a tap fd opened by a "
                    "privileged helper (SandboxOptions::tap_fd)");
  return st;
}

}  // namespace

Result<UniqueFd> run_in_new_netns(const std::function<Status()>& fn) {
  UniqueFd ns;
  Status st = on_helper_thread([&]() -> Status {
    if (::unshare(CLONE_NEWNET) != 0) return privilege_error(errno, "unshare(CLONE_NEWNET)");
    ns.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!ns) return errno_status("open /proc/thread-self/ns/net");
    return fn();
  });
  if (!st.ok()) return st;  // `ns` closes here, releasing the namespace
  return ns;
}

Status run_in_netns(int netns_fd, const std::function<Status()>& fn) {
  if (netns_fd < 0) return Status(Errc::invalid_argument, "run_in_netns: no namespace fd");
  return on_helper_thread([&]() -> Status {
    if (::setns(netns_fd, CLONE_NEWNET) != 0) return privilege_error(errno, "setns(CLONE_NEWNET)");
    return fn();
  });
}

Status write_sysctl(const char* path, const char* value) {
  std::string full = std::string("/proc/sys/") + path;
  UniqueFd fd(::open(full.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno_status("open " + full);
  size_t len = strlen(value);
  ssize_t n = ::write(fd.get(), value, len);
  if (n < 0) return errno_status("write " + full);
  if (static_cast<size_t>(n) != len) return Status(Errc::io, "short write to " + full);
  return ok_status();
}

Result<std::string> read_sysctl(const char* path) {
  std::string full = std::string("/proc/sys/") + path;
  UniqueFd fd(::open(full.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_status("open " + full);
  char buf[256];
  ssize_t n = ::read(fd.get(), buf, sizeof buf - 1);
  if (n < 0) return errno_status("read " + full);
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace airlock::net
