// Split virtqueue (virtio 1.2 spec, section 2.7), device side.
//
// The driver (guest) owns the descriptor table and available ring and may be malicious:
// every index is reduced modulo the queue size, every address is checked through GuestMemory,
// chains are bounded by the queue size (a loop or an over-long chain is an error), indirect
// tables are checked the same way, and a malformed queue returns an error that makes the
// transport mark the device as needing reset (VIRTIO_CONFIG_S_NEEDS_RESET), never a crash.
// Thread-safety: one Queue is driven by one thread at a time (the device's worker).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "airlock/status.hpp"
#include "memory/guest_memory.h"

namespace airlock::virtio {

struct Descriptor {
  uint64_t addr = 0;
  uint32_t len = 0;
  bool device_writable = false;
};

// One chain popped from the available ring: driver-readable descriptors first, then
// device-writable ones (the spec requires that order; a chain that breaks it is rejected).
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<Descriptor> readable;
  std::vector<Descriptor> writable;

  uint64_t readable_bytes() const noexcept;
  uint64_t writable_bytes() const noexcept;
};

class Queue {
 public:
  // Set by the transport from the driver's configuration.
  uint16_t max_size = 256;
  uint16_t size = 0;
  bool ready = false;
  uint64_t desc_table = 0;
  uint64_t avail_ring = 0;
  uint64_t used_ring = 0;
  bool event_idx = false;      // VIRTIO_RING_F_EVENT_IDX negotiated
  bool indirect_desc = false;  // VIRTIO_RING_F_INDIRECT_DESC negotiated

  // The largest queue size the split ring allows (virtio 1.2 §2.7).
  static constexpr uint16_t kMaxQueueSize = 32768;
  // Indirect tables may exceed the queue size (Linux does so for big scatter lists); this
  // bounds them instead.
  static constexpr uint32_t kMaxIndirectEntries = 1024;

  // Checks the configured addresses and size against memory (called at DRIVER_OK / ready).
  Status validate(const GuestMemory& mem) const;
  void reset() noexcept;

  // Next available chain, std::nullopt when the ring is empty, or an error when the driver
  // broke the queue (the device must stop using it).
  Result<std::optional<DescriptorChain>> pop(const GuestMemory& mem);
  // Puts a chain back (undo of the last pop) when the device cannot consume it yet.
  void undo_pop() noexcept;
  // Returns a chain to the driver with `written` bytes written into its writable part.
  Status add_used(const GuestMemory& mem, uint16_t head, uint32_t written);
  // Whether the driver wants an interrupt for the used entries added since the last call
  // (honours VIRTQ_AVAIL_F_NO_INTERRUPT or used_event).
  bool should_notify(const GuestMemory& mem);
  // Tells the driver whether to kick us (VIRTQ_USED_F_NO_NOTIFY or avail_event). After
  // enabling, check available() again: the driver may have added a chain in between.
  void set_notification(const GuestMemory& mem, bool enabled);
  // Number of chains available right now (0 on a broken ring).
  uint16_t available(const GuestMemory& mem) const;

 private:
  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  uint16_t signalled_used_ = 0;
  bool signalled_valid_ = false;
  bool notification_enabled_ = true;

  Status walk_indirect(const GuestMemory& mem, uint64_t table, uint32_t table_len,
                       DescriptorChain& chain) const;
};

// Copies between host buffers and the guest buffers of a chain, bounds-checked.
class ChainReader {
 public:
  ChainReader(const GuestMemory& mem, const DescriptorChain& chain);
  // Reads up to len bytes; returns bytes read (less at the end of the readable part).
  Result<size_t> read(void* dst, size_t len);
  Status read_exact(void* dst, size_t len);
  size_t remaining() const noexcept { return remaining_; }

 private:
  const GuestMemory& mem_;
  const DescriptorChain& chain_;
  size_t index_ = 0;
  uint64_t offset_ = 0;
  size_t remaining_ = 0;
};

class ChainWriter {
 public:
  ChainWriter(const GuestMemory& mem, const DescriptorChain& chain);
  Result<size_t> write(const void* src, size_t len);
  Status write_exact(const void* src, size_t len);
  size_t written() const noexcept { return written_; }
  size_t remaining() const noexcept { return remaining_; }

 private:
  const GuestMemory& mem_;
  const DescriptorChain& chain_;
  size_t index_ = 0;
  uint64_t offset_ = 0;
  size_t written_ = 0;
  size_t remaining_ = 0;
};

}  // namespace airlock::virtio
