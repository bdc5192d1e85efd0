// The host's store of disk images: volumes (read-write ext4 images that outlive sandboxes) and
// snapshots (read-only copies that sandboxes boot from or new volumes start from), under one
// directory, ${AIRLOCK_CACHE_DIR:-$HOME/.cache/airlock} by default:
//
//   <root>/volumes/<name>.ext4      read-write, attached to at most one sandbox at a time
//   <root>/snapshots/<name>.ext4    read-only (mode 0444), shared by any number of sandboxes
//   <root>/snapshots/<name>.root    for a snapshot of a sandbox's root: which base image and
//                                   which lower layers it stacks on (see README.md)
//
// Exclusion uses flock() on the image files, the same locks BlkDevice takes: a volume attached
// read-write holds LOCK_EX, so it cannot be deleted or snapshotted underneath its sandbox.
// Files appear atomically (written under a dot-name, then renamed without replacing), so a
// crash never leaves a half-written image under a real name.
//
// Thread-safety: an ImageStore is a value holding paths; any number of them, in any threads or
// processes, may work on the same directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "airlock/status.hpp"
#include "image/ext4.h"

namespace airlock::image {

struct VolumeInfo {
  std::string name;
  std::string path;
  uint64_t size_bytes = 0;
  uint64_t allocated_bytes = 0;
  bool in_use = false;  // a sandbox has it attached read-write right now
};

// What a sandbox boots from: a base image plus read-only overlay layers, bottom to top.
struct RootImage {
  std::string base;                 // path of the base root filesystem image
  std::vector<std::string> layers;  // paths of layer images (each holds an overlay "upper/" tree)
};

struct SnapshotInfo {
  std::string name;
  std::string path;
  uint64_t size_bytes = 0;
  uint64_t allocated_bytes = 0;
  bool is_root = false;  // a sandbox root layer (has a .root manifest) rather than a volume copy
  RootImage root;        // for root snapshots: what to boot (its layers end with this one)
};

class ImageStore {
 public:
  // Volume and snapshot names: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'.
  static bool valid_name(const std::string& name) noexcept;
  // ${AIRLOCK_CACHE_DIR} or $HOME/.cache/airlock.
  static Result<std::string> default_root();
  // Opens (creating if needed) the store at `root`.
  static Result<ImageStore> open(const std::string& root);

  const std::string& root() const noexcept { return root_; }
  std::string volume_path(const std::string& name) const;
  std::string snapshot_path(const std::string& name) const;

  // Volumes. Sizes are rounded up to whole MiB; at least kMinVolumeBytes.
  static constexpr uint64_t kMinVolumeBytes = 16ull << 20;  // the smallest with a journal
  static constexpr uint64_t kMaxVolumeBytes = 16ull << 40;
  Result<VolumeInfo> create_volume(const std::string& name, uint64_t size_bytes);
  Result<VolumeInfo> volume(const std::string& name) const;
  Result<std::vector<VolumeInfo>> list_volumes() const;
  // Errc::unavailable while a sandbox has it attached.
  Status delete_volume(const std::string& name);

  // A read-only copy of a volume no sandbox is writing (Errc::unavailable otherwise).
  Result<SnapshotInfo> snapshot_volume(const std::string& volume, const std::string& snapshot);
  // A new volume holding a copy of a snapshot.
  Result<VolumeInfo> volume_from_snapshot(const std::string& snapshot, const std::string& volume);
  // A snapshot of a sandbox's root: `upper_fd` is its writable upper image (opened and locked
  // by the caller, who guarantees nobody writes it during the copy: guest filesystem synced
  // and frozen, or the sandbox stopped), `parent` what that sandbox booted from.
  Result<SnapshotInfo> snapshot_root(int upper_fd, const RootImage& parent,
                                     const std::string& snapshot);
  Result<SnapshotInfo> snapshot(const std::string& name) const;
  Result<std::vector<SnapshotInfo>> list_snapshots() const;
  // Errc::unavailable when another root snapshot stacks on it.
  Status delete_snapshot(const std::string& name);

 private:
  explicit ImageStore(std::string root) : root_(std::move(root)) {}
  std::string volumes_dir() const { return root_ + "/volumes"; }
  std::string snapshots_dir() const { return root_ + "/snapshots"; }
  std::string manifest_path(const std::string& name) const;
  // Copies an open image into snapshots/<name>.ext4, checked and read-only, replaying its
  // journal in the copy if a sandbox died with transactions pending (a read-only device cannot
  // be replayed in the guest).
  Status publish_snapshot(int src_fd, const std::string& name);

  std::string root_;
};

}  // namespace airlock::image
