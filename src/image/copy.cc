#include "image/copy.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

#include "base/fd.h"

namespace airlock::image {

namespace {

// Plain read/write for filesystems where copy_file_range refuses (EXDEV before 5.3, some
// network or FUSE filesystems).
Status copy_range_slow(int src, int dst, uint64_t offset, uint64_t len) {
  std::vector<uint8_t> buf(1 << 20);
  while (len > 0) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(len, buf.size()));
    const ssize_t n = ::pread(src, buf.data(), want, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("reading source image");
    if (n == 0) return Status(Errc::io, "source image shrank while being copied");
    size_t done = 0;
    while (done < static_cast<size_t>(n)) {
      const ssize_t w = ::pwrite(dst, buf.data() + done, static_cast<size_t>(n) - done,
                                 static_cast<off_t>(offset + done));
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) return errno_status("writing image copy");
      done += static_cast<size_t>(w);
    }
    offset += static_cast<uint64_t>(n);
    len -= static_cast<uint64_t>(n);
  }
  return ok_status();
}

Status copy_range(int src, int dst, uint64_t offset, uint64_t len) {
  auto in = static_cast<loff_t>(offset);
  auto out = static_cast<loff_t>(offset);
  while (len > 0) {
    const ssize_t n = ::copy_file_range(src, &in, dst, &out, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP))
      return copy_range_slow(src, dst, static_cast<uint64_t>(in), len);
    if (n < 0) return errno_status("copy_file_range");
    if (n == 0) return Status(Errc::io, "source image shrank while being copied");
    len -= static_cast<uint64_t>(n);
  }
  return ok_status();
}

// Copies only the extents that hold data; holes stay holes in the copy.
Status copy_data_extents(int src, int dst, uint64_t size, uint64_t& copied) {
  uint64_t pos = 0;
  while (pos < size) {
    const off_t data = ::lseek(src, static_cast<off_t>(pos), SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) return ok_status();  // only a hole remains
      // No SEEK_DATA support: copy everything from here.
      if (errno == EINVAL) {
        copied += size - pos;
        return copy_range(src, dst, pos, size - pos);
      }
      return errno_status("lseek(SEEK_DATA)");
    }
    off_t hole = ::lseek(src, data, SEEK_HOLE);
    if (hole < 0) return errno_status("lseek(SEEK_HOLE)");
    const uint64_t end = std::min<uint64_t>(static_cast<uint64_t>(hole), size);
    const uint64_t start = static_cast<uint64_t>(data);
    if (start >= end) break;
    AIRLOCK_RETURN_IF_ERROR(copy_range(src, dst, start, end - start));
    copied += end - start;
    pos = end;
  }
  return ok_status();
}

}  // namespace

Result<CopyStats> copy_image(int src_fd, const std::string& dst_path, unsigned mode) {
  struct stat st {};
  if (::fstat(src_fd, &st) != 0) return errno_status("stat of source image");
  if (!S_ISREG(st.st_mode)) return Status(Errc::invalid_argument, "source is not a regular file");
  UniqueFd dst(::open(dst_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode));
  if (!dst) return errno_status("creating " + dst_path);
  auto fail = [&](Status s) {
    ::unlink(dst_path.c_str());
    return s;
  };
  CopyStats stats;
  if (::ioctl(dst.get(), FICLONE, src_fd) == 0) {
    stats.reflinked = true;
  } else {
    const auto size = static_cast<uint64_t>(st.st_size);
    if (::ftruncate(dst.get(), static_cast<off_t>(size)) != 0)
      return fail(errno_status("sizing " + dst_path));
    Status s = copy_data_extents(src_fd, dst.get(), size, stats.bytes_copied);
    if (!s.ok()) return fail(s);
  }
  if (::fsync(dst.get()) != 0) return fail(errno_status("fsync of " + dst_path));
  // O_CREAT's mode is filtered by the umask; the caller asked for exactly this one.
  if (::fchmod(dst.get(), mode) != 0) return fail(errno_status("chmod of " + dst_path));
  return stats;
}

}  // namespace airlock::image
