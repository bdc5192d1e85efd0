#include "base/fd.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

namespace airlock {

void UniqueFd::reset(int fd) noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

Status errno_status(int err, const std::string& what) {
  Errc code = Errc::io;
  switch (err) {
    case EACCES:
    case EPERM: code = Errc::permission_denied; break;
    case ENOENT:
    case ENODEV:
    case ENXIO: code = Errc::not_found; break;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE: code = Errc::resource_exhausted; break;
    case EINVAL: code = Errc::invalid_argument; break;
    case ETIMEDOUT: code = Errc::timeout; break;
    default: break;
  }
  char buf[128];
  const char* msg = strerror_r(err, buf, sizeof buf);
  return Status(code, what + ": " + msg);
}

Status errno_status(const std::string& what) { return errno_status(errno, what); }

Result<UniqueFd> make_eventfd(bool nonblocking) {
  int fd = ::eventfd(0, EFD_CLOEXEC | (nonblocking ? EFD_NONBLOCK : 0));
  if (fd < 0) return errno_status("eventfd");
  return UniqueFd(fd);
}

void signal_eventfd(int fd) noexcept {
  if (fd < 0) return;
  uint64_t one = 1;
  ssize_t n;
  do n = ::write(fd, &one, sizeof one);
  while (n < 0 && errno == EINTR);
}

uint64_t drain_eventfd(int fd) noexcept {
  uint64_t v = 0;
  if (fd < 0) return 0;
  ssize_t n;
  do n = ::read(fd, &v, sizeof v);
  while (n < 0 && errno == EINTR);
  return n == sizeof v ? v : 0;
}

Status set_nonblocking(int fd, bool on) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return errno_status("fcntl(F_GETFL)");
  flags = on ? (flags | O_NONBLOCK) : (flags & ~O_NONBLOCK);
  if (::fcntl(fd, F_SETFL, flags) < 0) return errno_status("fcntl(F_SETFL)");
  return ok_status();
}

Result<std::string> read_file(const std::string& path, size_t max_bytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_status("open " + path);
  struct stat st{};
  if (::fstat(fd.get(), &st) < 0) return errno_status("stat " + path);
  if (static_cast<uint64_t>(st.st_size) > max_bytes)
    return Status(Errc::resource_exhausted, path + ": larger than " + std::to_string(max_bytes) +
                                                " bytes");
  std::string out;
  out.resize(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + done, out.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("read " + path);
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

}  // namespace airlock
