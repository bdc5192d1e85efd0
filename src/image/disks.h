// Which disks a sandbox gets, in which order, with which serials: the host half of the device
// contract in README.md, as data. The sandbox turns each DiskSpec into a devices::BlkDevice
// (path, read_only, serial, display_name) and attaches them in this order; the guest agent
// finds them by serial. Every image is inspected first, so a missing, truncated or corrupt
// image is a clear error before anything boots.
// Thread-safety: reentrant.
#pragma once

#include <string>
#include <vector>

#include "airlock/status.hpp"
#include "image/store.h"

namespace airlock::image {

inline constexpr const char* kRootSerial = "airlock-root";
inline constexpr const char* kUpperSerial = "airlock-upper";
inline constexpr size_t kMaxLayers = 64;
inline constexpr size_t kMaxVolumes = 100;
std::string layer_serial(size_t index);   // "airlock-layer1" for the bottom layer (index 0)
std::string volume_serial(size_t index);  // "airlock-vol0" for the first volume

struct DiskSpec {
  std::string path;
  bool read_only = false;
  std::string serial;        // at most 20 bytes (virtio-blk GET_ID)
  std::string display_name;  // "volume data", "root layer 1", ... for errors
};

struct VolumeAttachment {
  std::string name;  // volume name, for messages
  std::string path;  // its image (ImageStore::volume_path)
  bool read_only = false;
};

// root.base, then root.layers bottom to top, then the upper image (when not empty), then the
// volumes in order. Errc::invalid_argument past kMaxLayers / kMaxVolumes; the image's
// inspect() error (not_found, bad_image) prefixed with what it is for.
Result<std::vector<DiskSpec>> plan_disks(const RootImage& root, const std::string& upper_path,
                                         const std::vector<VolumeAttachment>& volumes);

}  // namespace airlock::image
