// A sandbox's disks: turns SandboxOptions' storage block (root image or root snapshot, a
// writable upper in memory or on a fresh sparse disk, volumes) into virtio-blk devices plus the
// kernel command line the guest init reads (src/guest/root.h), following the device contract
// of src/image/README.md. Also takes root snapshots (guest fs frozen around the host's copy) and
// flushes the guest's writes before the sandbox stops.
//
// Threads: prepare() before the machine exists; devices()/cmdline() while the sandbox boots;
// snapshot() and sync_guest() from any thread while it runs (they talk to the agent).
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "airlock/sandbox.hpp"
#include "base/fd.h"
#include "devices/blk.h"
#include "image/store.h"

namespace airlock::sandbox {

class SandboxStorage {
 public:
  // Null when the options ask for no disk at all (the initramfs-only sandbox of old). Every
  // image is checked first: missing, truncated or corrupt images are clear errors
  // (Errc::not_found / Errc::bad_image naming the image); a volume attached read-write elsewhere
  // is Errc::unavailable naming the volume.
  static Result<std::unique_ptr<SandboxStorage>> prepare(const SandboxOptions& options);

  // Appended to the kernel command line ("airlock.root=1 ...").
  const std::string& cmdline() const { return cmdline_; }
  // Attach in this order.
  const std::vector<std::shared_ptr<devices::BlkDevice>>& devices() const { return devices_; }
  // A disk the guest writes (an upper disk or a read-write volume).
  bool has_writable_disks() const { return writable_; }

  // Sandbox::snapshot.
  Result<SnapshotInfo> snapshot(Sandbox& sb, const std::string& name);
  // After the machine stopped: lets other sandboxes attach the images (BlkDevice::release).
  void release();
  // Asks the guest to sync (bounded wait); errors are ignored: the sandbox may be dead already.
  void sync_guest(Sandbox& sb);

 private:
  SandboxStorage() = default;

  std::optional<image::ImageStore> store_;
  image::RootImage root_;  // base empty: no root image
  UniqueFd upper_fd_;      // the upper image (unlinked), read-only, for snapshots
  std::string cmdline_;
  std::vector<std::shared_ptr<devices::BlkDevice>> devices_;
  bool writable_ = false;
};

}  // namespace airlock::sandbox
