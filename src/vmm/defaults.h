// Where airlock finds its default guest kernel and test initramfs: the cache that
// scripts/fetch-kernel.sh and scripts/build-initramfs.sh fill,
// ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock}. Threads: any (reads the environment).
#pragma once

#include <string>

#include "airlock/status.hpp"

namespace airlock::vmm {

// The cache root (no check that it exists).
std::string cache_dir();
// kernel/current/vmlinux when present (uncompressed: boots faster), else kernel/current/vmlinuz.
// Errc::unavailable with "run scripts/fetch-kernel.sh" when neither exists.
Result<std::string> default_kernel_path();
// initramfs/test.cpio.gz; Errc::unavailable with "run scripts/build-initramfs.sh" when absent.
Result<std::string> default_initramfs_path();

}  // namespace airlock::vmm
