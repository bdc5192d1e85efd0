// ImageStore: snapshots (read-only images) of volumes and of sandbox roots.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "base/fd.h"
#include "image/copy.h"
#include "image/fs_util.h"
#include "image/store.h"
#include "image/tool.h"

namespace airlock::image {

namespace {

constexpr const char* kManifestHeader = "airlock-root-snapshot 1";
// e2fsck exit codes: 0 clean, 1 errors corrected (a replayed journal counts as that).
constexpr int kFsckCorrected = 1;

// The manifest of a root snapshot: a header line, "base <path>", then "layer <path>" lines
// from the bottom layer up; the last layer is the snapshot's own image.
std::string format_manifest(const RootImage& root) {
  std::string text = std::string(kManifestHeader) + "\nbase " + root.base + "\n";
  for (const auto& layer : root.layers) text += "layer " + layer + "\n";
  return text;
}

Result<RootImage> parse_manifest(const std::string& path) {
  AIRLOCK_ASSIGN_OR_RETURN(const std::string text, read_file(path, 1 << 20));
  RootImage root;
  size_t pos = 0;
  bool header = false;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty()) continue;
    if (!header) {
      if (line != kManifestHeader) break;
      header = true;
    } else if (line.rfind("base ", 0) == 0) {
      root.base = line.substr(5);
    } else if (line.rfind("layer ", 0) == 0) {
      root.layers.push_back(line.substr(6));
    }
  }
  if (!header || root.base.empty() || root.layers.empty())
    return Status(Errc::bad_image, "root snapshot manifest " + path + " is malformed");
  return root;
}

}  // namespace

std::string ImageStore::manifest_path(const std::string& name) const {
  return snapshots_dir() + "/" + name + kManifestSuffix;
}

Status ImageStore::publish_snapshot(int src_fd, const std::string& name) {
  const std::string tmp = temp_path(snapshots_dir(), name);
  // Writable by its owner until published: the journal replay below opens it read-write.
  AIRLOCK_ASSIGN_OR_RETURN(CopyStats copied, copy_image(src_fd, tmp, 0600));
  (void)copied;
  auto info = inspect(tmp);
  if (!info.ok()) {
    ::unlink(tmp.c_str());
    return info.status();
  }
  if (info->needs_recovery) {
    // Replays the journal into the copy only; nothing else is checked or changed.
    Status s = run_tool({"e2fsck", "-E", "journal_only", "-p", tmp}, kFsckCorrected);
    if (!s.ok()) {
      ::unlink(tmp.c_str());
      return s.prefix("replaying the journal of snapshot " + name);
    }
  }
  if (::chmod(tmp.c_str(), 0444) != 0) {
    Status s = errno_status("chmod of snapshot " + name);
    ::unlink(tmp.c_str());
    return s;
  }
  return publish(tmp, snapshot_path(name), "snapshot " + name);
}

Result<SnapshotInfo> ImageStore::snapshot_volume(const std::string& volume,
                                                 const std::string& snapshot_name) {
  AIRLOCK_RETURN_IF_ERROR(check_name("volume", volume));
  AIRLOCK_RETURN_IF_ERROR(check_name("snapshot", snapshot_name));
  if (::access(snapshot_path(snapshot_name).c_str(), F_OK) == 0)
    return Status(Errc::invalid_argument, "snapshot " + snapshot_name + " already exists");
  // A shared lock keeps sandboxes from attaching it read-write while it is copied.
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd src,
                           open_locked(volume_path(volume), O_RDONLY, LOCK_SH, "volume " + volume,
                                       "volume " + volume +
                                           " is in use by another sandbox; snapshot it "
                                           "when no sandbox has it attached"));
  AIRLOCK_RETURN_IF_ERROR(publish_snapshot(src.get(), snapshot_name));
  return snapshot(snapshot_name);
}

Result<SnapshotInfo> ImageStore::snapshot_root(int upper_fd, const RootImage& parent,
                                               const std::string& snapshot_name) {
  AIRLOCK_RETURN_IF_ERROR(check_name("snapshot", snapshot_name));
  if (parent.base.empty()) return Status(Errc::invalid_argument, "root snapshot without a base");
  AIRLOCK_ASSIGN_OR_RETURN(const ImageInfo base, inspect(parent.base));
  (void)base;
  RootImage root = parent;
  root.layers.push_back(snapshot_path(snapshot_name));
  // The manifest goes first: an image without one would list as a volume snapshot.
  const std::string manifest_tmp = temp_path(snapshots_dir(), snapshot_name);
  AIRLOCK_RETURN_IF_ERROR(write_new_file(manifest_tmp, format_manifest(root)));
  AIRLOCK_RETURN_IF_ERROR(
      publish(manifest_tmp, manifest_path(snapshot_name), "snapshot " + snapshot_name));
  Status s = publish_snapshot(upper_fd, snapshot_name);
  if (!s.ok()) {
    ::unlink(manifest_path(snapshot_name).c_str());
    return s;
  }
  return snapshot(snapshot_name);
}

Result<SnapshotInfo> ImageStore::snapshot(const std::string& name) const {
  AIRLOCK_RETURN_IF_ERROR(check_name("snapshot", name));
  SnapshotInfo info;
  info.name = name;
  info.path = snapshot_path(name);
  struct stat st {};
  if (::stat(info.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status(Errc::not_found, "snapshot " + name + " does not exist");
    return errno_status("stat of snapshot " + name);
  }
  info.size_bytes = static_cast<uint64_t>(st.st_size);
  info.allocated_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  const std::string manifest = manifest_path(name);
  if (::access(manifest.c_str(), F_OK) == 0) {
    AIRLOCK_ASSIGN_OR_RETURN(info.root, parse_manifest(manifest));
    info.is_root = true;
  }
  return info;
}

Result<std::vector<SnapshotInfo>> ImageStore::list_snapshots() const {
  AIRLOCK_ASSIGN_OR_RETURN(const auto names, names_in(snapshots_dir(), kImageSuffix));
  std::vector<SnapshotInfo> out;
  for (const auto& name : names) {
    auto s = snapshot(name);
    if (s.ok()) out.push_back(std::move(s).value());  // deleted meanwhile: skip
  }
  return out;
}

Status ImageStore::delete_snapshot(const std::string& name) {
  AIRLOCK_RETURN_IF_ERROR(check_name("snapshot", name));
  const std::string path = snapshot_path(name);
  AIRLOCK_ASSIGN_OR_RETURN(const auto all, list_snapshots());
  for (const auto& other : all) {
    if (other.name == name || !other.is_root) continue;
    for (const auto& layer : other.root.layers)
      if (layer == path)
        return Status(Errc::unavailable,
                      "snapshot " + name + " is a layer of snapshot " + other.name);
  }
  // Sandboxes booted from it hold shared locks.
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd,
                           open_locked(path, O_RDONLY, LOCK_EX, "snapshot " + name,
                                       "snapshot " + name + " is in use by a sandbox"));
  if (::unlink(path.c_str()) != 0) return errno_status("deleting snapshot " + name);
  ::unlink(manifest_path(name).c_str());
  return ok_status();
}

}  // namespace airlock::image
