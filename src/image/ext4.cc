#include "image/ext4.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/fd.h"
#include "image/tool.h"

namespace airlock::image {

namespace {

// The primary superblock: 1024 bytes at offset 1024 (ext4 disk layout). Offsets below are
// within it; all fields little endian, like the host.
constexpr uint64_t kSuperblockOffset = 1024;
constexpr size_t kSuperblockSize = 1024;
constexpr size_t kBlocksCountLo = 0x04;
constexpr size_t kLogBlockSize = 0x18;
constexpr size_t kMagic = 0x38;
constexpr size_t kState = 0x3a;
constexpr size_t kFeatureIncompat = 0x60;
constexpr size_t kUuid = 0x68;
constexpr size_t kVolumeName = 0x78;
constexpr size_t kBlocksCountHi = 0x150;

constexpr uint16_t kExt4Magic = 0xef53;
constexpr uint16_t kStateCleanlyUnmounted = 0x1;
constexpr uint32_t kIncompatRecover = 0x4;
constexpr uint32_t kIncompat64Bit = 0x80;
constexpr uint32_t kMaxLogBlockSize = 6;  // 64 KiB blocks

template <class T>
T field(const uint8_t* sb, size_t offset) {
  T v;
  std::memcpy(&v, sb + offset, sizeof v);
  return v;
}

Status bad(const std::string& path, const std::string& why) {
  return Status(Errc::bad_image, "image " + path + ": " + why);
}

std::string format_uuid(const uint8_t* u) {
  return fmt::format(
      "{:02x}{:02x}{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-{:02x}{:02x}-"
      "{:02x}{:02x}{:02x}{:02x}{:02x}{:02x}",
      u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
      u[15]);
}

}  // namespace

Result<ImageInfo> inspect(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_status("opening image " + path);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_status("stat of image " + path);
  if (!S_ISREG(st.st_mode)) return bad(path, "not a regular file");
  ImageInfo info;
  info.path = path;
  info.size_bytes = static_cast<uint64_t>(st.st_size);
  info.allocated_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  if (info.size_bytes % 512 != 0)
    return bad(path, fmt::format("size {} is not a multiple of 512 bytes", info.size_bytes));
  if (info.size_bytes < kSuperblockOffset + kSuperblockSize)
    return bad(path, fmt::format("size {} is too small for an ext4 filesystem", info.size_bytes));

  uint8_t sb[kSuperblockSize];
  size_t got = 0;
  while (got < sizeof sb) {
    const ssize_t n =
        ::pread(fd.get(), sb + got, sizeof sb - got, static_cast<off_t>(kSuperblockOffset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_status("reading image " + path);
    if (n == 0) return bad(path, "ends inside its superblock");
    got += static_cast<size_t>(n);
  }
  if (field<uint16_t>(sb, kMagic) != kExt4Magic)
    return bad(path, "no ext4 superblock (magic 0xEF53 missing at byte 1080)");
  const uint32_t log_block = field<uint32_t>(sb, kLogBlockSize);
  if (log_block > kMaxLogBlockSize)
    return bad(path, fmt::format("corrupt superblock: block size 1024<<{}", log_block));
  info.block_size = 1024u << log_block;
  const uint32_t incompat = field<uint32_t>(sb, kFeatureIncompat);
  info.block_count = field<uint32_t>(sb, kBlocksCountLo);
  if (incompat & kIncompat64Bit)
    info.block_count |= uint64_t{field<uint32_t>(sb, kBlocksCountHi)} << 32;
  if (info.block_count == 0) return bad(path, "corrupt superblock: zero blocks");
  // Both factors are bounded (block count < 2^64, block size <= 2^16): compare by division.
  if (info.block_count > info.size_bytes / info.block_size)
    return bad(path, fmt::format("truncated: the filesystem spans {} blocks of {} bytes but the "
                                 "file holds {} bytes",
                                 info.block_count, info.block_size, info.size_bytes));
  char label[17] = {};
  std::memcpy(label, sb + kVolumeName, 16);
  info.label = label;
  info.uuid = format_uuid(sb + kUuid);
  info.clean = (field<uint16_t>(sb, kState) & kStateCleanlyUnmounted) != 0;
  info.needs_recovery = (incompat & kIncompatRecover) != 0;
  return info;
}

Status make_ext4(const std::string& path, uint64_t size_bytes, const Ext4Options& options) {
  if (size_bytes == 0 || size_bytes % 4096 != 0)
    return Status(Errc::invalid_argument,
                  fmt::format("image size {} is not a positive multiple of 4096", size_bytes));
  if (options.label.size() > 16)
    return Status(Errc::invalid_argument, "ext4 label '" + options.label + "' exceeds 16 bytes");
  {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (!fd) return errno_status("creating image " + path);
    if (::ftruncate(fd.get(), static_cast<off_t>(size_bytes)) != 0) {
      Status s = errno_status("sizing image " + path);
      ::unlink(path.c_str());
      return s;
    }
  }
  // -m 0: no blocks reserved for root (the guest is root anyway); -b 4096: mkfs would pick
  // 1 KiB blocks and 128-byte inodes for small images, slower and without y2038-safe times;
  // root_owner: mkfs would otherwise give the root directory to whoever runs it.
  std::vector<std::string> argv = {"mkfs.ext4",     "-F", "-q", "-m", "0", "-b", "4096", "-E",
                                   "root_owner=0:0"};
  if (!options.label.empty()) argv.insert(argv.end(), {"-L", options.label});
  if (!options.source_dir.empty()) argv.insert(argv.end(), {"-d", options.source_dir});
  argv.push_back(path);
  Status s = run_tool(argv);
  if (!s.ok()) {
    ::unlink(path.c_str());
    return s.prefix("formatting " + path);
  }
  return ok_status();
}

}  // namespace airlock::image
