#include "image/disks.h"

#include "image/ext4.h"

namespace airlock::image {

namespace {

Status add(std::vector<DiskSpec>& out, DiskSpec spec) {
  auto info = inspect(spec.path);
  if (!info.ok()) {
    Status s = info.status();
    return s.prefix(spec.display_name);
  }
  out.push_back(std::move(spec));
  return ok_status();
}

}  // namespace

std::string layer_serial(size_t index) {
  return "airlock-layer" + std::to_string(index + 1);
}
std::string volume_serial(size_t index) {
  return "airlock-vol" + std::to_string(index);
}

Result<std::vector<DiskSpec>> plan_disks(const RootImage& root, const std::string& upper_path,
                                         const std::vector<VolumeAttachment>& volumes) {
  if (root.base.empty()) return Status(Errc::invalid_argument, "no root base image");
  if (root.layers.size() > kMaxLayers)
    return Status(Errc::invalid_argument, "root has " + std::to_string(root.layers.size()) +
                                              " layers; at most " + std::to_string(kMaxLayers));
  if (volumes.size() > kMaxVolumes)
    return Status(Errc::invalid_argument, std::to_string(volumes.size()) + " volumes; at most " +
                                              std::to_string(kMaxVolumes));
  std::vector<DiskSpec> disks;
  AIRLOCK_RETURN_IF_ERROR(add(disks, {root.base, true, kRootSerial, "root base image"}));
  for (size_t i = 0; i < root.layers.size(); ++i)
    AIRLOCK_RETURN_IF_ERROR(
        add(disks, {root.layers[i], true, layer_serial(i), "root layer " + std::to_string(i + 1)}));
  if (!upper_path.empty())
    AIRLOCK_RETURN_IF_ERROR(add(disks, {upper_path, false, kUpperSerial, "root upper image"}));
  for (size_t i = 0; i < volumes.size(); ++i) {
    const auto& v = volumes[i];
    AIRLOCK_RETURN_IF_ERROR(
        add(disks, {v.path, v.read_only, volume_serial(i), "volume " + v.name}));
  }
  return disks;
}

}  // namespace airlock::image
