#include "vmm/defaults.h"

#include <sys/stat.h>

#include <cstdlib>

namespace airlock::vmm {

namespace {
bool is_file(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
}  // namespace

std::string cache_dir() {
  const char* dir = std::getenv("AIRLOCK_CACHE_DIR");
  if (dir && *dir) return dir;
  const char* home = std::getenv("HOME");
  return std::string(home && *home ? home : "/root") + "/.cache/airlock";
}

Result<std::string> default_kernel_path() {
  std::string base = cache_dir() + "/kernel/current/";
  for (const char* name : {"vmlinux", "vmlinuz"})
    if (is_file(base + name)) return base + name;
  return Status(Errc::unavailable, "no cached guest kernel in " + base +
                                       " (vmlinux or vmlinuz): run scripts/fetch-kernel.sh");
}

Result<std::string> default_initramfs_path() {
  std::string path = cache_dir() + "/initramfs/test.cpio.gz";
  if (is_file(path)) return path;
  return Status(Errc::unavailable,
                "no cached test initramfs at " + path + ": run scripts/build-initramfs.sh");
}

}  // namespace airlock::vmm
