// Test helper: plays the guest driver's side of a split virtqueue inside a real GuestMemory,
// writing descriptor tables and the available ring exactly where a driver would, and reading
// back what the device put in the used ring. Also helpers to drive a virtio-mmio transport
// through its registers the way Linux's virtio_mmio driver does. Single-threaded.
#pragma once

#define VIRTIO_RING_NO_LEGACY
#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#include <linux/virtio_ring.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <vector>

#include "memory/guest_memory.h"
#include "virtio/queue.h"

namespace airlock::virtio::testing {

struct Buffer {
  uint64_t addr;
  uint32_t len;
  bool writable;
};

class MockDriver {
 public:
  // Lays the rings out from `base` the way Linux does: table, avail ring, used ring.
  MockDriver(const GuestMemory& mem, uint16_t size, uint64_t base = 0x1000)
      : mem_(mem), size_(size) {
    desc = base;
    avail = desc + 16ull * size;
    used = (avail + 6 + 2ull * size + 4095) & ~4095ull;
  }

  uint16_t size() const { return size_; }

  // Points a Queue at these rings (what the transport does from the MMIO registers).
  void configure(Queue& q, bool event_idx = false, bool indirect = false) const {
    q.size = size_;
    q.desc_table = desc;
    q.avail_ring = avail;
    q.used_ring = used;
    q.event_idx = event_idx;
    q.indirect_desc = indirect;
    q.ready = true;
  }

  void set_desc(uint16_t index, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    write_desc(desc, index, addr, len, flags, next);
  }
  void write_desc(uint64_t table, uint32_t index, uint64_t addr, uint32_t len, uint16_t flags,
                  uint16_t next = 0) {
    vring_desc d{};
    d.addr = addr;
    d.len = len;
    d.flags = flags;
    d.next = next;
    (void)mem_.write_obj(table + 16ull * index, d);
  }

  // Writes the buffers as one chain into consecutive free descriptors; returns the head.
  uint16_t add_chain(std::initializer_list<Buffer> buffers) {
    const uint16_t head = static_cast<uint16_t>(next_free_ % size_);
    size_t i = 0;
    for (const Buffer& b : buffers) {
      const uint16_t index = static_cast<uint16_t>(next_free_ % size_);
      const bool last = ++i == buffers.size();
      uint16_t flags = b.writable ? VRING_DESC_F_WRITE : 0;
      if (!last) flags |= VRING_DESC_F_NEXT;
      set_desc(index, b.addr, b.len, flags, static_cast<uint16_t>((next_free_ + 1) % size_));
      ++next_free_;
    }
    return head;
  }

  // Puts a head in the next available slot and moves the index (as virtqueue_kick does).
  void publish(uint16_t head) {
    (void)mem_.write_obj<uint16_t>(avail + 4 + 2ull * (avail_idx_ % size_), head);
    set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
  }
  uint16_t add_and_publish(std::initializer_list<Buffer> buffers) {
    const uint16_t head = add_chain(buffers);
    publish(head);
    return head;
  }

  void set_avail_idx(uint16_t idx) {
    avail_idx_ = idx;
    (void)mem_.write_obj<uint16_t>(avail + 2, idx);
  }
  void set_avail_flags(uint16_t flags) { (void)mem_.write_obj<uint16_t>(avail, flags); }
  void set_used_event(uint16_t v) { (void)mem_.write_obj<uint16_t>(avail + 4 + 2ull * size_, v); }

  uint16_t used_idx() const { return mem_.read_obj<uint16_t>(used + 2).value(); }
  uint16_t used_flags() const { return mem_.read_obj<uint16_t>(used).value(); }
  uint16_t avail_event() const { return mem_.read_obj<uint16_t>(used + 4 + 8ull * size_).value(); }
  vring_used_elem used_elem(uint16_t ring_index) const {
    return mem_.read_obj<vring_used_elem>(used + 4 + 8ull * (ring_index % size_)).value();
  }

  uint64_t desc = 0, avail = 0, used = 0;

 private:
  const GuestMemory& mem_;
  uint16_t size_;
  uint32_t next_free_ = 0;
  uint16_t avail_idx_ = 0;
};

// 32-bit register accesses as the guest makes them.
template <class Transport>
uint32_t reg_read(Transport& t, uint64_t offset) {
  uint32_t v = 0xdeadbeef;
  t.read(offset, reinterpret_cast<uint8_t*>(&v), sizeof v);
  return v;
}
template <class Transport>
void reg_write(Transport& t, uint64_t offset, uint32_t value) {
  t.write(offset, reinterpret_cast<const uint8_t*>(&value), sizeof value);
}

template <class Transport>
void negotiate(Transport& t, uint64_t features) {
  reg_write(t, VIRTIO_MMIO_STATUS, 0);
  reg_write(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
  reg_write(t, VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
  for (uint32_t page = 0; page < 2; ++page) {
    reg_write(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, page);
    reg_write(t, VIRTIO_MMIO_DRIVER_FEATURES, static_cast<uint32_t>(features >> (32 * page)));
  }
  reg_write(t, VIRTIO_MMIO_STATUS,
            VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
}

template <class Transport>
void setup_queue(Transport& t, uint32_t index, const MockDriver& d) {
  reg_write(t, VIRTIO_MMIO_QUEUE_SEL, index);
  reg_write(t, VIRTIO_MMIO_QUEUE_NUM, d.size());
  reg_write(t, VIRTIO_MMIO_QUEUE_DESC_LOW, static_cast<uint32_t>(d.desc));
  reg_write(t, VIRTIO_MMIO_QUEUE_DESC_HIGH, static_cast<uint32_t>(d.desc >> 32));
  reg_write(t, VIRTIO_MMIO_QUEUE_AVAIL_LOW, static_cast<uint32_t>(d.avail));
  reg_write(t, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, static_cast<uint32_t>(d.avail >> 32));
  reg_write(t, VIRTIO_MMIO_QUEUE_USED_LOW, static_cast<uint32_t>(d.used));
  reg_write(t, VIRTIO_MMIO_QUEUE_USED_HIGH, static_cast<uint32_t>(d.used >> 32));
  reg_write(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

constexpr uint32_t kStatusUpToFeaturesOk =
    VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
constexpr uint32_t kStatusRunning = kStatusUpToFeaturesOk | VIRTIO_CONFIG_S_DRIVER_OK;

template <class Transport>
void driver_ok(Transport& t) {
  reg_write(t, VIRTIO_MMIO_STATUS, kStatusRunning);
}

constexpr uint64_t feature(unsigned bit) {
  return 1ull << bit;
}

}  // namespace airlock::virtio::testing
