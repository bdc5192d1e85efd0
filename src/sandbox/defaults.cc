#include "sandbox/defaults.h"

#include <sys/stat.h>

#include <cstdlib>

#include "vmm/defaults.h"

namespace airlock::sandbox {

Result<std::string> default_sandbox_initramfs_path() {
  const char* env = std::getenv("AIRLOCK_SANDBOX_INITRAMFS");
  std::string path = env && *env ? env : vmm::cache_dir() + "/initramfs/sandbox.cpio.gz";
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return path;
  return Status(Errc::unavailable, "no sandbox initramfs at " + path +
                                       ": build the airlock-guest-agent target, then run "
                                       "scripts/build-sandbox-image.sh");
}

}  // namespace airlock::sandbox
