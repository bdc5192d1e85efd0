#include "memory/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <utility>

#include "base/fd.h"

namespace airlock {

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t k4G = 1ull << 32;
}  // namespace

Result<GuestMemory> GuestMemory::create(uint64_t size, uint64_t hole_start) {
  if (size == 0 || size % kPage != 0)
    return Status(Errc::invalid_argument, "guest memory size must be a non-zero multiple of 4 KiB");
  if (hole_start % kPage != 0 || hole_start > k4G)
    return Status(Errc::invalid_argument, "memory hole must be page aligned and below 4 GiB");
  GuestMemory mem;
  auto map = [&](uint64_t gpa, uint64_t len) -> Status {
    // 2 MiB-align the host mapping (over-map, trim): KVM can only back guest memory with huge
    // pages (and huge NPT/EPT entries) where host and guest addresses agree modulo 2 MiB.
    constexpr uint64_t k2M = 2ull << 20;
    void* raw = ::mmap(nullptr, len + k2M, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (raw == MAP_FAILED) return errno_status("mmap guest memory");
    uintptr_t start = reinterpret_cast<uintptr_t>(raw);
    uintptr_t aligned = (start + k2M - 1) & ~(uintptr_t{k2M} - 1);
    if (aligned > start) ::munmap(raw, aligned - start);
    uintptr_t tail = aligned + len;
    if (start + len + k2M > tail) ::munmap(reinterpret_cast<void*>(tail), start + len + k2M - tail);
    void* p = reinterpret_cast<void*>(aligned);
    ::madvise(p, len, MADV_DONTDUMP);
    ::madvise(p, len, MADV_HUGEPAGE);
    mem.regions_.push_back({gpa, len, static_cast<uint8_t*>(p)});
    mem.total_ += len;
    return ok_status();
  };
  if (hole_start != 0 && size > hole_start) {
    AIRLOCK_RETURN_IF_ERROR(map(0, hole_start));
    AIRLOCK_RETURN_IF_ERROR(map(k4G, size - hole_start));
  } else {
    AIRLOCK_RETURN_IF_ERROR(map(0, size));
  }
  return mem;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : regions_(std::move(o.regions_)), total_(std::exchange(o.total_, 0)) {
  o.regions_.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
  if (this != &o) {
    this->~GuestMemory();
    regions_ = std::move(o.regions_);
    o.regions_.clear();
    total_ = std::exchange(o.total_, 0);
  }
  return *this;
}

GuestMemory::~GuestMemory() {
  for (auto& r : regions_) ::munmap(r.host, r.size);
  regions_.clear();
  total_ = 0;
}

uint64_t GuestMemory::end_addr() const noexcept {
  return regions_.empty() ? 0 : regions_.back().guest_addr + regions_.back().size;
}

uint8_t* GuestMemory::host_ptr(uint64_t gpa, uint64_t len) const noexcept {
  for (const auto& r : regions_) {
    if (gpa < r.guest_addr) continue;
    uint64_t off = gpa - r.guest_addr;
    if (off >= r.size) continue;
    if (len > r.size - off) return nullptr;  // no overflow: off < r.size here
    return r.host + off;
  }
  return nullptr;
}

Status GuestMemory::read(uint64_t gpa, void* dst, size_t len) const {
  auto* out = static_cast<uint8_t*>(dst);
  while (len > 0) {
    const MemoryRegion* hit = nullptr;
    for (const auto& r : regions_)
      if (gpa >= r.guest_addr && gpa - r.guest_addr < r.size) hit = &r;
    if (!hit) return Status(Errc::invalid_argument, "guest address outside RAM");
    uint64_t off = gpa - hit->guest_addr;
    uint64_t n = std::min<uint64_t>(len, hit->size - off);
    std::memcpy(out, hit->host + off, n);
    out += n;
    len -= n;
    gpa += n;
  }
  return ok_status();
}

Status GuestMemory::write(uint64_t gpa, const void* src, size_t len) const {
  auto* in = static_cast<const uint8_t*>(src);
  while (len > 0) {
    const MemoryRegion* hit = nullptr;
    for (const auto& r : regions_)
      if (gpa >= r.guest_addr && gpa - r.guest_addr < r.size) hit = &r;
    if (!hit) return Status(Errc::invalid_argument, "guest address outside RAM");
    uint64_t off = gpa - hit->guest_addr;
    uint64_t n = std::min<uint64_t>(len, hit->size - off);
    std::memcpy(hit->host + off, in, n);
    in += n;
    len -= n;
    gpa += n;
  }
  return ok_status();
}

uint64_t GuestMemory::resident_bytes() const {
  uint64_t resident = 0;
  std::vector<unsigned char> vec;
  for (const auto& r : regions_) {
    vec.resize(r.size / kPage);
    if (::mincore(r.host, r.size, vec.data()) != 0) continue;
    for (unsigned char c : vec) resident += (c & 1) ? kPage : 0;
  }
  return resident;
}

}  // namespace airlock
