// What a virtio-net device sends its frames through: a tap (net_tap.h), a datagram socket
// (net_socket.h), or anything else that moves whole Ethernet frames.
//
// Every frame crossing this interface is prefixed by a 12-byte virtio_net_hdr_v1 (the header
// the guest's driver uses), so checksum and segmentation offloads pass through unchanged.
// Backends are non-blocking: fd() is polled by the device's worker (EPOLLIN: a frame is
// waiting; EPOLLOUT: a frame can be written).
//
// Threads: used by the device's worker thread only, except the constructor/destructor.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>

#include "airlock/status.hpp"

namespace airlock::devices {

constexpr size_t kVirtioNetHdrSize = 12;  // sizeof(virtio_net_hdr_v1)

class NetBackend {
 public:
  virtual ~NetBackend() = default;

  virtual const char* name() const = 0;
  virtual int fd() const = 0;

  // Reads one frame (header included) into `iov`. Returns its length, or 0 when no frame is
  // waiting. Errc::resource_exhausted: the frame did not fit and was dropped (keep reading).
  // Any other error: the backend is broken.
  virtual Result<size_t> read_frame(const iovec* iov, size_t iovcnt) = 0;
  // Writes one frame (header included). Returns its length, or 0 when the backend cannot take
  // it now (retry when fd() is writable). Errc::invalid_argument: the backend rejected this
  // frame (dropped; keep going). Any other error: the backend is broken.
  virtual Result<size_t> write_frame(const iovec* iov, size_t iovcnt) = 0;

  // VIRTIO_NET_F_* offload bits the backend can carry: CSUM/HOST_* for frames the guest sends,
  // GUEST_* for frames it may deliver with partial checksums or as GSO super-frames.
  virtual uint64_t offload_features() const { return 0; }
  // Called at activation with the features the driver accepted: from now on, deliver only
  // what the guest can take (the tap's TUNSETOFFLOAD).
  virtual Status set_guest_offloads(uint64_t acked_features) {
    (void)acked_features;
    return ok_status();
  }
};

}  // namespace airlock::devices
