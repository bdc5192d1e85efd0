#include "virtio/queue.h"

// The legacy vring_init() helper in this header is not valid C++; we need none of it.
#define VIRTIO_RING_NO_LEGACY
#include <linux/virtio_ring.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <string>

namespace airlock::virtio {

namespace {

// Layout of the split rings (virtio 1.2 §2.7.5, §2.7.6, §2.7.8).
constexpr uint64_t kDescSize = sizeof(vring_desc);           // 16
constexpr uint64_t kUsedElemSize = sizeof(vring_used_elem);  // 8
constexpr uint64_t kRingHeader = 4;                          // flags + idx
constexpr uint64_t kIdxOffset = 2;

static_assert(kDescSize == 16 && kUsedElemSize == 8);

Status broken(const char* why) {
  return Status(Errc::protocol, std::string("virtqueue: ") + why);
}

bool is_power_of_two(uint32_t v) {
  return v != 0 && (v & (v - 1)) == 0;
}

// True when [addr, addr+len) is guest RAM; the range may cross adjacent regions, as
// GuestMemory::read/write allow.
bool ram_covers(const GuestMemory& mem, uint64_t addr, uint64_t len) {
  if (len > UINT64_MAX - addr) return false;
  if (len == 0) return mem.contains(addr, 0);
  while (len > 0) {
    const MemoryRegion* hit = nullptr;
    for (const auto& r : mem.regions()) {
      if (addr >= r.guest_addr && addr - r.guest_addr < r.size) {
        hit = &r;
        break;
      }
    }
    if (!hit) return false;
    uint64_t n = std::min(len, hit->size - (addr - hit->guest_addr));
    addr += n;
    len -= n;
  }
  return true;
}

// Ring indices and flags are shared with a driver running concurrently on another CPU: they
// are accessed as single 16-bit atomics so that neither side ever sees a torn value.
uint16_t* ring_word(const GuestMemory& mem, uint64_t gpa) {
  if (gpa % 2 != 0) return nullptr;
  return reinterpret_cast<uint16_t*>(mem.host_ptr(gpa, 2));
}

Result<uint16_t> load_word(const GuestMemory& mem, uint64_t gpa) {
  uint16_t* p = ring_word(mem, gpa);
  if (!p) return broken("ring outside guest RAM");
  return std::atomic_ref<uint16_t>(*p).load(std::memory_order_relaxed);
}

Status store_word(const GuestMemory& mem, uint64_t gpa, uint16_t value) {
  uint16_t* p = ring_word(mem, gpa);
  if (!p) return broken("ring outside guest RAM");
  std::atomic_ref<uint16_t>(*p).store(value, std::memory_order_relaxed);
  return ok_status();
}

Result<vring_desc> read_desc(const GuestMemory& mem, uint64_t table, uint64_t index) {
  auto desc = mem.read_obj<vring_desc>(table + index * kDescSize);
  if (!desc.ok()) return broken("descriptor table outside guest RAM");
  return desc;
}

// Adds one buffer descriptor to the chain: its buffer must be RAM (addr + len must not wrap)
// and device-writable buffers must come after every driver-readable one (§2.7.4.2).
Status append(const GuestMemory& mem, const vring_desc& d, DescriptorChain& chain) {
  if (!ram_covers(mem, d.addr, d.len)) return broken("descriptor buffer outside guest RAM");
  const bool writable = (d.flags & VRING_DESC_F_WRITE) != 0;
  if (!writable && !chain.writable.empty())
    return broken("driver-readable descriptor after a device-writable one");
  (writable ? chain.writable : chain.readable).push_back({d.addr, d.len, writable});
  return ok_status();
}

uint64_t sum_lengths(const std::vector<Descriptor>& descs) {
  uint64_t total = 0;
  for (const auto& d : descs) total += d.len;
  return total;
}

}  // namespace

uint64_t DescriptorChain::readable_bytes() const noexcept {
  return sum_lengths(readable);
}
uint64_t DescriptorChain::writable_bytes() const noexcept {
  return sum_lengths(writable);
}

Status Queue::validate(const GuestMemory& mem) const {
  if (!is_power_of_two(size) || size > max_size || size > kMaxQueueSize)
    return Status(Errc::protocol, "virtqueue: size " + std::to_string(size) +
                                      " is not a power of 2 no larger than " +
                                      std::to_string(max_size));
  if (desc_table % 16 != 0 || avail_ring % 2 != 0 || used_ring % 4 != 0)
    return broken("ring address misaligned");
  const uint64_t event_word = event_idx ? 2 : 0;
  if (!ram_covers(mem, desc_table, kDescSize * size))
    return broken("descriptor table outside guest RAM");
  if (!ram_covers(mem, avail_ring, kRingHeader + 2ull * size + event_word))
    return broken("available ring outside guest RAM");
  if (!ram_covers(mem, used_ring, kRingHeader + kUsedElemSize * size + event_word))
    return broken("used ring outside guest RAM");
  return ok_status();
}

void Queue::reset() noexcept {
  size = 0;
  ready = false;
  desc_table = avail_ring = used_ring = 0;
  event_idx = indirect_desc = false;
  next_avail_ = next_used_ = signalled_used_ = 0;
  signalled_valid_ = false;
  notification_enabled_ = true;
}

Status Queue::walk_indirect(const GuestMemory& mem, uint64_t table, uint32_t table_len,
                            DescriptorChain& chain) const {
  if (!indirect_desc) return broken("indirect descriptor without VIRTIO_RING_F_INDIRECT_DESC");
  if (table_len == 0 || table_len % kDescSize != 0)
    return broken("indirect table length is not a non-zero multiple of 16");
  const uint32_t entries = table_len / kDescSize;
  if (entries > kMaxIndirectEntries) return broken("indirect table too long");
  if (!ram_covers(mem, table, table_len)) return broken("indirect table outside guest RAM");
  uint32_t index = 0;  // an indirect chain starts at the table's first entry (§2.7.5.3)
  for (uint32_t count = 0;; ++count) {
    if (count >= entries) return broken("indirect descriptor chain loops");
    AIRLOCK_ASSIGN_OR_RETURN(vring_desc d, read_desc(mem, table, index));
    if (d.flags & VRING_DESC_F_INDIRECT) return broken("nested indirect table");
    AIRLOCK_RETURN_IF_ERROR(append(mem, d, chain));
    if (!(d.flags & VRING_DESC_F_NEXT)) return ok_status();
    if (d.next >= entries) return broken("indirect next index out of range");
    index = d.next;
  }
}

Result<std::optional<DescriptorChain>> Queue::pop(const GuestMemory& mem) {
  if (!ready || !is_power_of_two(size)) return broken("queue is not configured");
  if (event_idx && notification_enabled_) {
    // Publish where the driver must kick us before looking at its index. The full fence pairs
    // with the driver's barrier between its idx store and its avail_event load: without it
    // both sides can miss the other's update and the queue stalls.
    AIRLOCK_RETURN_IF_ERROR(
        store_word(mem, used_ring + kRingHeader + kUsedElemSize * size, next_avail_));
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
  AIRLOCK_ASSIGN_OR_RETURN(uint16_t avail_idx, load_word(mem, avail_ring + kIdxOffset));
  const uint16_t pending = static_cast<uint16_t>(avail_idx - next_avail_);
  if (pending == 0) return std::optional<DescriptorChain>();
  if (pending > size) return broken("available index moved more than the queue size ahead");
  // The driver wrote the ring entry and descriptors before the index: read them after it.
  std::atomic_thread_fence(std::memory_order_acquire);

  auto head = mem.read_obj<uint16_t>(avail_ring + kRingHeader + 2ull * (next_avail_ % size));
  if (!head.ok()) return broken("available ring outside guest RAM");
  if (head.value() >= size) return broken("head descriptor index out of range");

  DescriptorChain chain;
  chain.head = head.value();
  uint16_t index = chain.head;
  for (uint32_t count = 0;; ++count) {
    if (count >= size) return broken("descriptor chain loops or is longer than the queue");
    AIRLOCK_ASSIGN_OR_RETURN(vring_desc d, read_desc(mem, desc_table, index));
    if (d.flags & VRING_DESC_F_INDIRECT) {
      // The write flag of the descriptor naming the table is ignored (§2.7.5.3.2).
      if (d.flags & VRING_DESC_F_NEXT) return broken("indirect descriptor with NEXT set");
      AIRLOCK_RETURN_IF_ERROR(walk_indirect(mem, d.addr, d.len, chain));
      break;
    }
    AIRLOCK_RETURN_IF_ERROR(append(mem, d, chain));
    if (!(d.flags & VRING_DESC_F_NEXT)) break;
    if (d.next >= size) return broken("next descriptor index out of range");
    index = d.next;
  }
  ++next_avail_;
  // Keep avail_event current even for a device that stops popping before the ring is empty.
  if (event_idx && notification_enabled_)
    (void)store_word(mem, used_ring + kRingHeader + kUsedElemSize * size, next_avail_);
  return std::optional<DescriptorChain>(std::move(chain));
}

void Queue::undo_pop() noexcept {
  --next_avail_;
}

Status Queue::add_used(const GuestMemory& mem, uint16_t head, uint32_t written) {
  if (!is_power_of_two(size) || head >= size)
    return Status(Errc::internal, "virtqueue: add_used with a head that was never popped");
  vring_used_elem elem{};
  elem.id = head;
  elem.len = written;
  const uint64_t slot = used_ring + kRingHeader + kUsedElemSize * (next_used_ % size);
  if (!mem.write_obj(slot, elem).ok()) return broken("used ring outside guest RAM");
  // The element must be visible before the index that hands it to the driver.
  std::atomic_thread_fence(std::memory_order_release);
  const uint16_t next = static_cast<uint16_t>(next_used_ + 1);
  AIRLOCK_RETURN_IF_ERROR(store_word(mem, used_ring + kIdxOffset, next));
  next_used_ = next;
  return ok_status();
}

bool Queue::should_notify(const GuestMemory& mem) {
  // Orders our used idx store before reading the driver's suppression state; pairs with the
  // driver's barrier between re-enabling callbacks and re-reading the used idx.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx) {
    auto flags = load_word(mem, avail_ring);
    return !flags.ok() || !(flags.value() & VRING_AVAIL_F_NO_INTERRUPT);
  }
  const uint16_t old = signalled_used_;
  const bool valid = signalled_valid_;
  signalled_used_ = next_used_;
  signalled_valid_ = true;
  if (!valid) return true;
  // An unreadable used_event only costs a spurious interrupt.
  auto used_event = load_word(mem, avail_ring + kRingHeader + 2ull * size);
  if (!used_event.ok()) return true;
  return vring_need_event(used_event.value(), next_used_, old) != 0;
}

void Queue::set_notification(const GuestMemory& mem, bool enabled) {
  notification_enabled_ = enabled;
  if (!is_power_of_two(size)) return;
  if (event_idx) {
    // With EVENT_IDX the used flags are ignored by the driver; disabling means no longer
    // moving avail_event forward.
    if (enabled) (void)store_word(mem, used_ring + kRingHeader + kUsedElemSize * size, next_avail_);
  } else {
    (void)store_word(mem, used_ring, enabled ? 0 : VRING_USED_F_NO_NOTIFY);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

uint16_t Queue::available(const GuestMemory& mem) const {
  if (!ready || !is_power_of_two(size)) return 0;
  auto idx = load_word(mem, avail_ring + kIdxOffset);
  if (!idx.ok()) return 0;
  const uint16_t pending = static_cast<uint16_t>(idx.value() - next_avail_);
  return pending > size ? 0 : pending;
}

ChainReader::ChainReader(const GuestMemory& mem, const DescriptorChain& chain)
    : mem_(mem), chain_(chain), remaining_(chain.readable_bytes()) {}

Result<size_t> ChainReader::read(void* dst, size_t len) {
  auto* out = static_cast<uint8_t*>(dst);
  size_t done = 0;
  while (done < len && index_ < chain_.readable.size()) {
    const Descriptor& d = chain_.readable[index_];
    const uint64_t n = std::min<uint64_t>(len - done, d.len - offset_);
    if (n > 0 && !mem_.read(d.addr + offset_, out + done, n).ok())
      return broken("buffer outside guest RAM");
    done += n;
    offset_ += n;
    remaining_ -= n;
    if (offset_ == d.len) {
      ++index_;
      offset_ = 0;
    }
  }
  return done;
}

Status ChainReader::read_exact(void* dst, size_t len) {
  if (len > remaining_) return broken("chain shorter than the request it carries");
  AIRLOCK_ASSIGN_OR_RETURN(size_t n, read(dst, len));
  (void)n;
  return ok_status();
}

ChainWriter::ChainWriter(const GuestMemory& mem, const DescriptorChain& chain)
    : mem_(mem), chain_(chain), remaining_(chain.writable_bytes()) {}

Result<size_t> ChainWriter::write(const void* src, size_t len) {
  const auto* in = static_cast<const uint8_t*>(src);
  size_t done = 0;
  while (done < len && index_ < chain_.writable.size()) {
    const Descriptor& d = chain_.writable[index_];
    const uint64_t n = std::min<uint64_t>(len - done, d.len - offset_);
    if (n > 0 && !mem_.write(d.addr + offset_, in + done, n).ok())
      return broken("buffer outside guest RAM");
    done += n;
    offset_ += n;
    remaining_ -= n;
    written_ += n;
    if (offset_ == d.len) {
      ++index_;
      offset_ = 0;
    }
  }
  return done;
}

Status ChainWriter::write_exact(const void* src, size_t len) {
  if (len > remaining_) return broken("chain has too little writable space");
  AIRLOCK_ASSIGN_OR_RETURN(size_t n, write(src, len));
  (void)n;
  return ok_status();
}

}  // namespace airlock::virtio
