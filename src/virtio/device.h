// A virtio device as the transport sees it. Devices own their queues' processing and never
// touch KVM descriptors or MMIO registers: the transport (mmio.h) owns the register file and
// the machine owns the wiring (ioeventfd for notifications, irqfd for interrupts).
//
// Threads: read_config/write_config/activate/reset are called on a vCPU thread with the
// transport's lock held. queue_notify() is called from the machine's event thread when the
// guest kicks a queue (via ioeventfd), never concurrently with itself or with activate/reset
// for one device (the transport also calls it once right after activate(), on the vCPU thread,
// for each queue that already holds buffers the driver queued before DRIVER_OK); a device
// may instead or in addition run its own worker thread (vsock, net), started in activate()
// and joined in reset() / the destructor.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "airlock/status.hpp"
#include "memory/guest_memory.h"
#include "virtio/queue.h"

namespace airlock::virtio {

// How a device raises its interrupt; implemented by the transport (sets the interrupt status
// bit, then signals the irqfd). Safe to call from any thread.
class Interrupt {
 public:
  virtual ~Interrupt() = default;
  virtual void signal_used_queue() noexcept = 0;
  virtual void signal_config_change() noexcept = 0;
  // The device found its queues broken: the transport sets DEVICE_NEEDS_RESET and tells the
  // driver. The device must stop processing until reset().
  virtual void signal_needs_reset() noexcept = 0;
};

struct ActivateContext {
  const GuestMemory* memory = nullptr;
  // Every queue, owned by the transport, valid until reset(). A queue the driver left off has
  // ready == false: the device decides whether it can run without it.
  std::vector<Queue*> queues;
  Interrupt* interrupt = nullptr;
  uint64_t acked_features = 0;
};

class Device {
 public:
  virtual ~Device() = default;

  virtual uint32_t device_id() const = 0;      // VIRTIO_ID_* from <linux/virtio_ids.h>
  virtual const char* name() const = 0;        // for messages: "rng", "vsock", ...
  // Device-specific feature bits; the transport adds VIRTIO_F_VERSION_1 and the ring features
  // it supports.
  virtual uint64_t device_features() const = 0;
  virtual size_t num_queues() const = 0;
  virtual uint16_t queue_max_size(size_t /*index*/) const { return 256; }

  // Config space accesses; offsets past the device's config read as zero / are ignored.
  virtual void read_config(uint64_t offset, uint8_t* data, size_t len) {
    (void)offset;
    for (size_t i = 0; i < len; ++i) data[i] = 0;
  }
  virtual void write_config(uint64_t offset, const uint8_t* data, size_t len) {
    (void)offset, (void)data, (void)len;
  }

  // The driver set DRIVER_OK with every queue configured. An error here marks the device as
  // needing reset.
  virtual Status activate(const ActivateContext& ctx) = 0;
  virtual void queue_notify(size_t index) = 0;
  // Driver wrote 0 to status, or the machine stops: stop processing, forget the queues.
  // Called only once the driver had set DRIVER_OK (whether or not activate() ran or succeeded),
  // before the transport resets the queues.
  virtual void reset() = 0;
};

}  // namespace airlock::virtio
