#include "sandbox/storage.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>

#include "base/log.h"
#include "image/disks.h"
#include "image/ext4.h"
#include "vmm/defaults.h"

namespace airlock::sandbox {

namespace {

// Guest side (src/guest/root.h).
constexpr const char* kGuestAgent = "/run/airlock/agent";
constexpr const char* kGuestUpperMount = "/run/airlock/rw";
// The kernel's command line holds 2048 bytes; leave most of it to the VMM's defaults.
constexpr size_t kMaxStorageCmdline = 1024;
constexpr size_t kMaxMountPath = 256;

// Mount paths travel on the kernel command line: spaces and anything unusual are %XX-escaped.
std::string escape_path(const std::string& path) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : path) {
    if (isalnum(c) || c == '/' || c == '.' || c == '_' || c == '-') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

Status check_mount_path(const VolumeMount& v) {
  const std::string& p = v.path;
  auto bad = [&](const char* why) {
    return Status(Errc::invalid_argument, "volume " + v.name + ": mount path '" + p + "' " + why);
  };
  if (p.empty() || p[0] != '/') return bad("is not absolute");
  if (p.size() > kMaxMountPath) return bad("is too long");
  if (p.find('\0') != std::string::npos) return bad("contains a NUL byte");
  if (p == "/" || p.find("/../") != std::string::npos || p.ends_with("/..") ||
      p.find("/./") != std::string::npos || p.ends_with("/."))
    return bad("is not a plain directory path");
  for (const char* reserved : {"/proc", "/sys", "/dev", "/run"})
    if (p == reserved || p.starts_with(std::string(reserved) + "/"))
      return bad("is inside a filesystem the guest's init owns");
  return ok_status();
}

// The base image a sandbox names: "default" is the cached Debian image. Symlinks are resolved,
// so a root snapshot records the exact image it stacks on, not a name a rebuild repoints.
Result<std::string> resolve_base(const std::string& root_image) {
  std::string path =
      root_image == "default" ? vmm::cache_dir() + "/images/rootfs.ext4" : root_image;
  char* real = ::realpath(path.c_str(), nullptr);
  if (real == nullptr) {
    if (errno == ENOENT) {
      if (root_image == "default")
        return Status(Errc::unavailable,
                      "no root image at " + path + ": run scripts/build-rootfs.sh");
      return Status(Errc::not_found, "root image " + path + " does not exist");
    }
    return errno_status("root image " + path);
  }
  std::string out = real;
  ::free(real);
  return out;
}

std::string temp_upper_path(const std::string& store_root) {
  static std::atomic<uint64_t> counter{0};
  return store_root + "/tmp/upper-" + std::to_string(::getpid()) + "-" +
         std::to_string(counter.fetch_add(1)) + ".ext4";
}

}  // namespace

Result<std::unique_ptr<SandboxStorage>> SandboxStorage::prepare(const SandboxOptions& options) {
  const bool want_root = !options.root_image.empty() || !options.root_snapshot.empty();
  if (!want_root && options.volumes.empty()) {
    if (options.snapshottable_root)
      return Status(Errc::invalid_argument,
                    "snapshottable_root needs a root image (root_image or root_snapshot)");
    return std::unique_ptr<SandboxStorage>();
  }
  std::unique_ptr<SandboxStorage> st(new SandboxStorage());
  std::string store_root = options.storage_dir;
  if (store_root.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(store_root, image::ImageStore::default_root());
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(store_root));
  st->store_.emplace(std::move(store));

  // Root: a snapshot names its own base and layers; else a base image alone.
  if (!options.root_snapshot.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(auto snap, st->store_->snapshot(options.root_snapshot));
    if (!snap.is_root)
      return Status(Errc::invalid_argument, "snapshot " + options.root_snapshot +
                                                " is a copy of a volume, not of a sandbox root: "
                                                "mount it as a volume (volume_from_snapshot)");
    st->root_ = snap.root;
  } else if (!options.root_image.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(st->root_.base, resolve_base(options.root_image));
  }

  // Volumes: existing store volumes at plain absolute paths.
  std::vector<image::VolumeAttachment> attachments;
  for (const auto& v : options.volumes) {
    if (!image::ImageStore::valid_name(v.name))
      return Status(Errc::invalid_argument, "bad volume name '" + v.name + "'");
    AIRLOCK_RETURN_IF_ERROR(check_mount_path(v));
    AIRLOCK_RETURN_IF_ERROR(st->store_->volume(v.name).status());
    attachments.push_back({v.name, st->store_->volume_path(v.name), v.read_only});
    if (!v.read_only) st->writable_ = true;
  }

  // A fresh sparse upper disk, unlinked once open: it lives exactly as long as the sandbox.
  std::string upper_path;
  if (want_root && options.snapshottable_root) {
    uint64_t size =
        std::max<uint64_t>(options.root_upper_bytes, image::ImageStore::kMinVolumeBytes);
    size = (size + (1ull << 20) - 1) & ~((1ull << 20) - 1);
    if (size > image::ImageStore::kMaxVolumeBytes)
      return Status(Errc::invalid_argument, "root_upper_bytes is too large");
    const std::string dir = store_root + "/tmp";
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return errno_status("creating " + dir);
    upper_path = temp_upper_path(store_root);
    AIRLOCK_RETURN_IF_ERROR(image::make_ext4(upper_path, size, {.label = "airlock-upper"}));
    st->writable_ = true;
  }
  struct Unlink {
    std::string path;
    ~Unlink() {
      if (!path.empty()) ::unlink(path.c_str());
    }
  } unlink_upper{upper_path};

  std::vector<image::DiskSpec> disks;
  if (want_root) {
    AIRLOCK_ASSIGN_OR_RETURN(disks, image::plan_disks(st->root_, upper_path, attachments));
  } else {
    // No root: the volumes alone, with the same serials and checks.
    for (size_t i = 0; i < attachments.size(); ++i) {
      const auto& a = attachments[i];
      image::DiskSpec d{a.path, a.read_only, image::volume_serial(i), "volume " + a.name};
      if (auto info = image::inspect(d.path); !info.ok()) {
        Status s = info.status();
        return s.prefix(d.display_name);
      }
      disks.push_back(std::move(d));
    }
  }
  for (const auto& d : disks) {
    AIRLOCK_ASSIGN_OR_RETURN(auto dev, devices::BlkDevice::open({.path = d.path,
                                                                 .read_only = d.read_only,
                                                                 .serial = d.serial,
                                                                 .display_name = d.display_name}));
    st->devices_.push_back(std::move(dev));
  }
  if (!upper_path.empty()) {
    st->upper_fd_ = UniqueFd(::open(upper_path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!st->upper_fd_) return errno_status("opening the root upper image");
  }

  std::string cmd;
  if (want_root) {
    cmd = "airlock.root=1";
    if (!st->root_.layers.empty())
      cmd += " airlock.layers=" + std::to_string(st->root_.layers.size());
    cmd += upper_path.empty() ? " airlock.upper=tmpfs" : " airlock.upper=disk";
  }
  for (size_t i = 0; i < options.volumes.size(); ++i) {
    if (!cmd.empty()) cmd += ' ';
    cmd += "airlock.vol=" + image::volume_serial(i) +
           (options.volumes[i].read_only ? ",ro," : ",rw,") + escape_path(options.volumes[i].path);
  }
  if (cmd.size() > kMaxStorageCmdline)
    return Status(Errc::invalid_argument,
                  "too many volumes or mount paths too long for the kernel command line");
  st->cmdline_ = std::move(cmd);
  return st;
}

Result<SnapshotInfo> SandboxStorage::snapshot(Sandbox& sb, const std::string& name) {
  if (!upper_fd_)
    return Status(Errc::invalid_argument,
                  "this sandbox's root cannot be snapshotted: create it with a root image and "
                  "snapshottable_root");
  if (!image::ImageStore::valid_name(name))
    return Status(Errc::invalid_argument, "bad snapshot name '" + name + "'");
  if (store_->snapshot(name).ok())
    return Status(Errc::invalid_argument, "snapshot " + name + " already exists");
  ExecOptions eo;
  eo.timeout = Millis(60000);
  // Everything the guest wrote reaches the disk, and nothing more is written while we copy.
  auto frozen = sb.exec({kGuestAgent, "fsfreeze", kGuestUpperMount}, eo);
  Result<image::SnapshotInfo> taken = Status(Errc::internal, "not taken");
  if (!frozen.ok())
    taken = frozen.status().prefix("freezing the guest's root filesystem");
  else if (!frozen->success())
    taken =
        Status(Errc::unavailable, "freezing the guest's root filesystem failed: " + frozen->stderr);
  else
    taken = store_->snapshot_root(upper_fd_.get(), root_, name);
  // Thawed whatever happened (a freeze that timed out may still have taken effect); thawing a
  // filesystem that is not frozen only fails harmlessly.
  auto thawed = sb.exec({kGuestAgent, "fsthaw", kGuestUpperMount}, eo);
  if (frozen.ok() && frozen->success() && (!thawed.ok() || !thawed->success()))
    AIRLOCK_LOG_WARN("sandbox", "thawing the guest's root filesystem failed: {}",
                     thawed.ok() ? thawed->stderr : thawed.status().to_string());
  if (!taken.ok()) return taken.status();
  SnapshotInfo out;
  out.name = taken->name;
  out.size_bytes = taken->size_bytes;
  out.allocated_bytes = taken->allocated_bytes;
  out.is_root = taken->is_root;
  return out;
}

void SandboxStorage::release() {
  for (auto& d : devices_) d->release();
}

void SandboxStorage::sync_guest(Sandbox& sb) {
  if (!writable_ || !sb.status().ok()) return;
  ExecOptions eo;
  eo.timeout = Millis(10000);
  eo.wait_timeout = Millis(12000);
  auto r = sb.exec({"sync"}, eo);
  if (!r.ok() || !r->success())
    AIRLOCK_LOG_DEBUG("sandbox", "sync before stopping: {}",
                      r.ok() ? r->stderr : r.status().to_string());
}

}  // namespace airlock::sandbox
