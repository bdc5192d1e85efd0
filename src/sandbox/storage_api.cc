// airlock::Storage (include/airlock/storage.hpp): the public face of image::ImageStore.
#include "airlock/storage.hpp"

#include "image/store.h"

namespace airlock {

namespace {

VolumeInfo to_public(const image::VolumeInfo& v) {
  return {v.name, v.size_bytes, v.allocated_bytes, v.in_use};
}

SnapshotInfo to_public(const image::SnapshotInfo& s) {
  return {s.name, s.size_bytes, s.allocated_bytes, s.is_root};
}

}  // namespace

bool Storage::valid_name(const std::string& name) noexcept {
  return image::ImageStore::valid_name(name);
}

Result<Storage> Storage::open(const std::string& dir) {
  std::string root = dir;
  if (root.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(root, image::ImageStore::default_root());
  }
  AIRLOCK_RETURN_IF_ERROR(image::ImageStore::open(root).status());
  return Storage(root);
}

Result<VolumeInfo> Storage::create_volume(const std::string& name, uint64_t size_bytes) {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto v, store.create_volume(name, size_bytes));
  return to_public(v);
}

Result<VolumeInfo> Storage::volume(const std::string& name) const {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto v, store.volume(name));
  return to_public(v);
}

Result<std::vector<VolumeInfo>> Storage::list_volumes() const {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto all, store.list_volumes());
  std::vector<VolumeInfo> out;
  for (const auto& v : all) out.push_back(to_public(v));
  return out;
}

Status Storage::remove_volume(const std::string& name) {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  return store.delete_volume(name);
}

Result<SnapshotInfo> Storage::snapshot_volume(const std::string& volume,
                                              const std::string& snapshot) {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto s, store.snapshot_volume(volume, snapshot));
  return to_public(s);
}

Result<VolumeInfo> Storage::volume_from_snapshot(const std::string& snapshot,
                                                 const std::string& volume) {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto v, store.volume_from_snapshot(snapshot, volume));
  return to_public(v);
}

Result<SnapshotInfo> Storage::snapshot(const std::string& name) const {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto s, store.snapshot(name));
  return to_public(s);
}

Result<std::vector<SnapshotInfo>> Storage::list_snapshots() const {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  AIRLOCK_ASSIGN_OR_RETURN(auto all, store.list_snapshots());
  std::vector<SnapshotInfo> out;
  for (const auto& s : all) out.push_back(to_public(s));
  return out;
}

Status Storage::remove_snapshot(const std::string& name) {
  AIRLOCK_ASSIGN_OR_RETURN(auto store, image::ImageStore::open(dir_));
  return store.delete_snapshot(name);
}

}  // namespace airlock
