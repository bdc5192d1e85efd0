#include "image/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <fmt/format.h>

#include "base/fd.h"
#include "image/copy.h"
#include "image/fs_util.h"

namespace airlock::image {

namespace {

constexpr uint64_t kMiB = 1ull << 20;

}  // namespace

bool ImageStore::valid_name(const std::string& name) noexcept {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') return false;
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

Result<std::string> ImageStore::default_root() {
  if (const char* dir = std::getenv("AIRLOCK_CACHE_DIR"); dir != nullptr && *dir != '\0')
    return std::string(dir);
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return std::string(home) + "/.cache/airlock";
  return Status(Errc::unavailable, "neither AIRLOCK_CACHE_DIR nor HOME is set");
}

Result<ImageStore> ImageStore::open(const std::string& root) {
  if (root.empty()) return Status(Errc::invalid_argument, "image store: empty directory");
  ImageStore store(root);
  AIRLOCK_RETURN_IF_ERROR(mkdir_p(store.volumes_dir()));
  AIRLOCK_RETURN_IF_ERROR(mkdir_p(store.snapshots_dir()));
  return store;
}

std::string ImageStore::volume_path(const std::string& name) const {
  return volumes_dir() + "/" + name + kImageSuffix;
}
std::string ImageStore::snapshot_path(const std::string& name) const {
  return snapshots_dir() + "/" + name + kImageSuffix;
}

Result<VolumeInfo> ImageStore::create_volume(const std::string& name, uint64_t size_bytes) {
  AIRLOCK_RETURN_IF_ERROR(check_name("volume", name));
  if (size_bytes > kMaxVolumeBytes)
    return Status(Errc::invalid_argument, fmt::format("volume size {} exceeds the {} TiB limit",
                                                      size_bytes, kMaxVolumeBytes >> 40));
  const uint64_t size = std::max(kMinVolumeBytes, (size_bytes + kMiB - 1) / kMiB * kMiB);
  const std::string path = volume_path(name);
  if (::access(path.c_str(), F_OK) == 0)
    return Status(Errc::invalid_argument, "volume " + name + " already exists");
  const std::string tmp = temp_path(volumes_dir(), name);
  AIRLOCK_RETURN_IF_ERROR(make_ext4(tmp, size, {.label = name.substr(0, 16)}));
  AIRLOCK_RETURN_IF_ERROR(publish(tmp, path, "volume " + name));
  return volume(name);
}

Result<VolumeInfo> ImageStore::volume(const std::string& name) const {
  AIRLOCK_RETURN_IF_ERROR(check_name("volume", name));
  VolumeInfo v;
  v.name = name;
  v.path = volume_path(name);
  struct stat st {};
  if (::stat(v.path.c_str(), &st) != 0) {
    if (errno == ENOENT) return Status(Errc::not_found, "volume " + name + " does not exist");
    return errno_status("stat of volume " + name);
  }
  v.size_bytes = static_cast<uint64_t>(st.st_size);
  v.allocated_bytes = static_cast<uint64_t>(st.st_blocks) * 512;
  v.in_use = held_exclusively(v.path);
  return v;
}

Result<std::vector<VolumeInfo>> ImageStore::list_volumes() const {
  AIRLOCK_ASSIGN_OR_RETURN(const auto names, names_in(volumes_dir(), kImageSuffix));
  std::vector<VolumeInfo> out;
  for (const auto& name : names) {
    auto v = volume(name);
    if (v.ok()) out.push_back(std::move(v).value());  // deleted meanwhile: skip
  }
  return out;
}

Status ImageStore::delete_volume(const std::string& name) {
  AIRLOCK_RETURN_IF_ERROR(check_name("volume", name));
  const std::string path = volume_path(name);
  // Holding the exclusive lock while unlinking: no sandbox can be attaching it meanwhile.
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd,
                           open_locked(path, O_RDONLY, LOCK_EX, "volume " + name,
                                       "volume " + name + " is in use by another sandbox"));
  if (::unlink(path.c_str()) != 0) return errno_status("deleting volume " + name);
  return ok_status();
}

Result<VolumeInfo> ImageStore::volume_from_snapshot(const std::string& snapshot,
                                                    const std::string& volume_name) {
  AIRLOCK_RETURN_IF_ERROR(check_name("snapshot", snapshot));
  AIRLOCK_RETURN_IF_ERROR(check_name("volume", volume_name));
  AIRLOCK_ASSIGN_OR_RETURN(
      UniqueFd src, open_locked(snapshot_path(snapshot), O_RDONLY, LOCK_SH, "snapshot " + snapshot,
                                "snapshot " + snapshot + " is being written"));
  const std::string tmp = temp_path(volumes_dir(), volume_name);
  AIRLOCK_ASSIGN_OR_RETURN(CopyStats copied, copy_image(src.get(), tmp, 0644));
  (void)copied;
  AIRLOCK_RETURN_IF_ERROR(publish(tmp, volume_path(volume_name), "volume " + volume_name));
  return volume(volume_name);
}

}  // namespace airlock::image
