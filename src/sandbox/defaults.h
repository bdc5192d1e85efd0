// Where a Sandbox finds its guest image by default. Threads: any (reads the environment).
#pragma once

#include <string>

#include "airlock/status.hpp"

namespace airlock::sandbox {

// $AIRLOCK_SANDBOX_INITRAMFS if set, else ${cache}/initramfs/sandbox.cpio.gz (the latest
// scripts/build-sandbox-image.sh output); Errc::unavailable with the fix when absent.
Result<std::string> default_sandbox_initramfs_path();

}  // namespace airlock::sandbox
