// virtio-mmio transport, version 2 ("modern"), virtio 1.2 §4.2.2: the register file of one
// device, the status state machine and feature negotiation, the device's queues, and the
// device's Interrupt (interrupt status register + a host trigger, the machine's irqfd).
//
// Threads: read()/write() are called on vCPU threads and serialise on an internal lock.
// notify() is called from the machine's event thread when a queue's ioeventfd fires (a direct
// write to QueueNotify takes the same path); it never runs concurrently with the device's
// activate()/reset(); at DRIVER_OK the transport itself passes queues that already hold
// buffers to the device once (early kicks are ignored). The Interrupt methods may be called
// from any thread. set_interrupt_trigger() must be called before the guest runs.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

#include "memory/guest_memory.h"
#include "virtio/device.h"
#include "virtio/queue.h"

namespace airlock::virtio {

class MmioTransport final : public Interrupt {
 public:
  // "virt" in little endian, as MagicValue must read.
  static constexpr uint32_t kMagic = 0x74726976;
  static constexpr uint32_t kVersion = 2;
  // Vendor ID the guest sees ("ALCK"); drivers do not look at it.
  static constexpr uint32_t kVendorId = 0x4b434c41;

  MmioTransport(std::shared_ptr<Device> device, const GuestMemory& memory);
  ~MmioTransport() override;
  MmioTransport(const MmioTransport&) = delete;
  MmioTransport& operator=(const MmioTransport&) = delete;

  // Guest MMIO accesses at `offset` into the device's window. Registers (below 0x100) take
  // 4-byte aligned 4-byte accesses; config space (0x100 on) takes 1, 2, 4 or 8 bytes. Anything
  // else reads as zero and is ignored on write.
  void read(uint64_t offset, uint8_t* data, size_t len);
  void write(uint64_t offset, const uint8_t* data, size_t len);

  // How to raise the device's interrupt line (the machine signals an irqfd).
  void set_interrupt_trigger(std::function<void()> raise);
  // The guest kicked queue `queue_index`. Ignored before DRIVER_OK, after the device asked
  // for a reset, or for a queue that does not exist or is not ready.
  void notify(uint32_t queue_index);

  size_t num_queues() const { return queues_.size(); }
  Device& device() { return *device_; }

  // The machine stops: the device stops processing, as on a driver reset.
  void shutdown();

  // Snapshot of registers, for tests and diagnostics.
  uint32_t status() const;
  uint32_t interrupt_status() const { return interrupt_status_.load(); }
  uint64_t offered_features() const { return offered_features_; }

  // Interrupt, for the device.
  void signal_used_queue() noexcept override;
  void signal_config_change() noexcept override;
  void signal_needs_reset() noexcept override;

 private:
  uint32_t read_register(uint64_t offset);
  // Returns the queue to notify when the write was to QueueNotify, else -1.
  int64_t write_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  bool accept_features() const;
  void activate();
  void reset_locked();
  Queue* selected_queue();
  bool queue_writable(const Queue* queue) const;

  std::shared_ptr<Device> device_;
  const GuestMemory& memory_;
  const uint64_t offered_features_;
  std::function<void()> raise_;

  // Lock order: mutex_ then notify_mutex_. mutex_ guards the register state; notify_mutex_
  // keeps queue_notify() apart from activate()/reset() without making vCPUs wait on the
  // device's processing.
  mutable std::mutex mutex_;
  std::mutex notify_mutex_;
  std::vector<Queue> queues_;  // never resized: devices hold pointers into it
  uint32_t device_status_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  uint32_t shm_sel_ = 0;
  bool activated_ = false;  // written with both locks held

  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<bool> needs_reset_{false};
  std::atomic<bool> driver_ok_{false};
  std::atomic<uint32_t> config_generation_{0};
};

}  // namespace airlock::virtio
