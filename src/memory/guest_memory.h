// Guest physical memory: anonymous host mappings placed at guest-physical addresses.
//
// Every access from the VMM to guest memory goes through here and is bounds- and
// overflow-checked: the guest is hostile and chooses the addresses. On x86_64, RAM above
// 3 GiB is placed at 4 GiB, leaving a hole for MMIO devices (layout in x86_64 code).
// Thread-safety: the mapping is fixed after create(); concurrent reads and writes from any
// thread are allowed (as on real hardware, ordering between them is the users' business).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "airlock/status.hpp"

namespace airlock {

struct MemoryRegion {
  uint64_t guest_addr = 0;
  uint64_t size = 0;
  uint8_t* host = nullptr;
};

class GuestMemory {
 public:
  // RAM of `size` bytes starting at guest-physical 0, with the part above `hole_start` moved
  // to 4 GiB. hole_start == 0 means "no hole". Size must be a multiple of 4 KiB.
  static Result<GuestMemory> create(uint64_t size, uint64_t hole_start = 0);

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) noexcept;
  GuestMemory& operator=(GuestMemory&&) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  uint64_t size() const noexcept { return total_; }
  const std::vector<MemoryRegion>& regions() const noexcept { return regions_; }
  // One past the highest guest-physical RAM address.
  uint64_t end_addr() const noexcept;

  // The one checked translation: a host pointer to [gpa, gpa+len) if that whole range is
  // RAM inside one region, else nullptr. len == 0 is valid if gpa is inside RAM.
  uint8_t* host_ptr(uint64_t gpa, uint64_t len) const noexcept;
  bool contains(uint64_t gpa, uint64_t len) const noexcept { return host_ptr(gpa, len) != nullptr; }

  // Copies, splitting across regions when a range spans adjacent ones.
  Status read(uint64_t gpa, void* dst, size_t len) const;
  Status write(uint64_t gpa, const void* src, size_t len) const;

  template <class T>
  Result<T> read_obj(uint64_t gpa) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T v;
    AIRLOCK_RETURN_IF_ERROR(read(gpa, &v, sizeof v));
    return v;
  }
  template <class T>
  Status write_obj(uint64_t gpa, const T& v) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(gpa, &v, sizeof v);
  }

  // Resident bytes of the guest RAM mappings (mincore), for metering and benchmarks.
  uint64_t resident_bytes() const;

 private:
  std::vector<MemoryRegion> regions_;
  uint64_t total_ = 0;
};

}  // namespace airlock
