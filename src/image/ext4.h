// ext4 disk images on the host: checking that a file is a whole, plausible ext4 image before a
// guest gets it, and formatting new ones with e2fsprogs' mkfs.ext4.
//
// inspect() reads only the superblock (no fsck): it catches what would otherwise surface as an
// obscure mount failure inside the guest: a missing file, a size that is not whole sectors, a
// file that is not ext4, a truncated image (the filesystem claims more blocks than the file has).
// Thread-safety: reentrant.
#pragma once

#include <cstdint>
#include <string>

#include "airlock/status.hpp"

namespace airlock::image {

struct ImageInfo {
  std::string path;
  uint64_t size_bytes = 0;       // the file's length, what the guest sees as the disk
  uint64_t allocated_bytes = 0;  // host space the (sparse) file really uses
  uint32_t block_size = 0;       // filesystem block size
  uint64_t block_count = 0;      // filesystem blocks
  std::string label;             // volume label (mkfs -L), may be empty
  std::string uuid;              // 8-4-4-4-12 hex
  bool clean = false;            // unmounted cleanly (s_state)
  bool needs_recovery = false;   // journal holds transactions not yet replayed
};

// Errc::not_found for a missing file, Errc::bad_image for anything that is not a whole ext4
// image, with the reason.
Result<ImageInfo> inspect(const std::string& path);

struct Ext4Options {
  std::string label;       // at most 16 bytes
  std::string source_dir;  // when set, the new filesystem holds a copy of this tree (mkfs -d)
};

// Creates `path` (which must not exist) as a sparse file of `size_bytes` (a multiple of 4096)
// holding a fresh ext4 filesystem whose root directory belongs to root. On failure nothing is
// left behind.
Status make_ext4(const std::string& path, uint64_t size_bytes, const Ext4Options& options = {});

}  // namespace airlock::image
