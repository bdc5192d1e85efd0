// Owning file descriptor and small POSIX helpers shared by every layer.
// Thread-safety: a UniqueFd is a value; the helpers are reentrant.
#pragma once

#include <string>
#include <utility>

#include "airlock/status.hpp"

namespace airlock {

class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) reset(std::exchange(o.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  int get() const noexcept { return fd_; }
  bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Status for a failed OS call: "<what>: <strerror(err)>", with a code chosen from errno
// (EACCES/EPERM -> permission_denied, ENOENT -> not_found, ...).
Status errno_status(int err, const std::string& what);
Status errno_status(const std::string& what);  // uses the current errno

Result<UniqueFd> make_eventfd(bool nonblocking = true);
// Adds 1 to an eventfd counter; harmless if the fd is invalid.
void signal_eventfd(int fd) noexcept;
// Reads and clears an eventfd counter; returns the value read or 0.
uint64_t drain_eventfd(int fd) noexcept;

Status set_nonblocking(int fd, bool on = true);
// Reads a whole file (bounded by max_bytes) into a string.
Result<std::string> read_file(const std::string& path, size_t max_bytes);

}  // namespace airlock
