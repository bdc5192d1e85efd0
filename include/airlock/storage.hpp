// airlock storage: volumes (read-write ext4 disks that outlive sandboxes) and snapshots
// (read-only images: of a volume, or of a sandbox's root) in one directory on the host,
// ${AIRLOCK_CACHE_DIR:-~/.cache/airlock} by default (layout: src/image/README.md).
//
//   auto st = airlock::Storage::open();
//   st->create_volume("data", 1ull << 30);                 // sparse: costs what is written
//   SandboxOptions o; o.volumes = {{"data", "/data"}};     // attach at /data, read-write
//   st->snapshot_volume("data", "data-v1");                // when no sandbox has it attached
//   st->volume_from_snapshot("data-v1", "data2");
//
// A volume is attached read-write to one sandbox at a time: a second attach (or deleting or
// snapshotting an attached volume) fails with Errc::unavailable naming the volume. Snapshots of
// a sandbox's root are made with Sandbox::snapshot() and booted with SandboxOptions::root_snapshot.
//
// Threads: a Storage is a value holding a path; any number of them, in any threads or
// processes, may work on the same directory (exclusion is by file locks).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "airlock/status.hpp"

namespace airlock {

struct VolumeInfo {
  std::string name;
  uint64_t size_bytes = 0;       // the disk size the guest sees
  uint64_t allocated_bytes = 0;  // host space used (images are sparse)
  bool in_use = false;           // attached to a running sandbox right now
};

struct SnapshotInfo {
  std::string name;
  uint64_t size_bytes = 0;
  uint64_t allocated_bytes = 0;
  // A snapshot of a sandbox's root (boot it with SandboxOptions::root_snapshot); otherwise a
  // copy of a volume (turn it into a volume with volume_from_snapshot).
  bool is_root = false;
};

class Storage {
 public:
  // Names of volumes and snapshots: 1-64 of [A-Za-z0-9._-], not starting with '.' or '-'.
  static bool valid_name(const std::string& name) noexcept;
  // Opens (creating if needed) the store in `dir`; empty: the default directory.
  static Result<Storage> open(const std::string& dir = {});

  const std::string& dir() const noexcept { return dir_; }

  // A new, empty ext4 volume of size_bytes (rounded up to whole MiB, at least 16 MiB).
  Result<VolumeInfo> create_volume(const std::string& name, uint64_t size_bytes);
  Result<VolumeInfo> volume(const std::string& name) const;
  Result<std::vector<VolumeInfo>> list_volumes() const;
  Status remove_volume(const std::string& name);

  // A read-only copy of a volume no sandbox has attached.
  Result<SnapshotInfo> snapshot_volume(const std::string& volume, const std::string& snapshot);
  // A new volume holding a copy of a snapshot (of a volume or of a root layer).
  Result<VolumeInfo> volume_from_snapshot(const std::string& snapshot, const std::string& volume);
  Result<SnapshotInfo> snapshot(const std::string& name) const;
  Result<std::vector<SnapshotInfo>> list_snapshots() const;
  // Errc::unavailable while a sandbox boots from it or another root snapshot stacks on it.
  Status remove_snapshot(const std::string& name);

 private:
  explicit Storage(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

}  // namespace airlock
