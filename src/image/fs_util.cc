#include "image/fs_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include <fmt/format.h>

#include "image/store.h"

namespace airlock::image {

Status mkdir_p(const std::string& path) {
  for (size_t pos = 1; pos <= path.size(); ++pos) {
    if (pos != path.size() && path[pos] != '/') continue;
    const std::string prefix = path.substr(0, pos);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST)
      return errno_status("creating directory " + prefix);
  }
  return ok_status();
}

Status check_name(const char* kind, const std::string& name) {
  if (ImageStore::valid_name(name)) return ok_status();
  return Status(Errc::invalid_argument,
                fmt::format("{} name '{}' is not 1-64 of [A-Za-z0-9._-] starting with a letter "
                            "or digit",
                            kind, name));
}

std::string temp_path(const std::string& dir, const std::string& name) {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}/.{}.tmp.{}.{}", dir, name, ::getpid(), counter++);
}

Status publish(const std::string& tmp, const std::string& path, const std::string& what) {
  if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE) == 0)
    return ok_status();
  int err = errno;
  if (err == EINVAL || err == ENOSYS) {
    // No RENAME_NOREPLACE on this filesystem: link() fails on an existing name as well.
    if (::link(tmp.c_str(), path.c_str()) == 0) {
      ::unlink(tmp.c_str());
      return ok_status();
    }
    err = errno;
  }
  ::unlink(tmp.c_str());
  if (err == EEXIST) return Status(Errc::invalid_argument, what + " already exists");
  return errno_status(err, "publishing " + what);
}

Result<UniqueFd> open_locked(const std::string& path, int flags, int lock, const std::string& what,
                             const std::string& busy_message) {
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return Status(Errc::not_found, what + " does not exist");
    return errno_status("opening " + what);
  }
  if (::flock(fd.get(), lock | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) return Status(Errc::unavailable, busy_message);
    return errno_status("locking " + what);
  }
  return fd;
}

bool held_exclusively(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  return fd && ::flock(fd.get(), LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
}

Result<std::vector<std::string>> names_in(const std::string& dir, const std::string& suffix) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return errno_status("listing " + dir);
  std::vector<std::string> names;
  while (dirent* e = ::readdir(d)) {
    const std::string file = e->d_name;
    if (file.size() <= suffix.size() ||
        file.compare(file.size() - suffix.size(), suffix.size(), suffix) != 0)
      continue;
    const std::string name = file.substr(0, file.size() - suffix.size());
    if (ImageStore::valid_name(name)) names.push_back(name);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

Status write_new_file(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return errno_status("creating " + path);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("writing " + path);
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return errno_status("fsync of " + path);
  return ok_status();
}

}  // namespace airlock::image
