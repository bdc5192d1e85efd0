#include "arch/x86_64/page_tables.h"

#include "arch/x86_64/layout.h"

namespace airlock::x86 {

namespace {
constexpr uint64_t kPresent = 1ull << 0;
constexpr uint64_t kWritable = 1ull << 1;
constexpr uint64_t kHugePage = 1ull << 7;  // PS: this PDE maps 2 MiB
constexpr uint64_t k2M = 2ull << 20;
}  // namespace

Result<uint64_t> write_identity_page_tables(const GuestMemory& mem) {
  AIRLOCK_RETURN_IF_ERROR(mem.write_obj<uint64_t>(kPml4Addr, kPdptAddr | kPresent | kWritable));
  for (uint64_t pdpt_index = 0; pdpt_index < 4; ++pdpt_index) {
    uint64_t pd = kPdAddr + pdpt_index * kPageSize;
    AIRLOCK_RETURN_IF_ERROR(
        mem.write_obj<uint64_t>(kPdptAddr + pdpt_index * 8, pd | kPresent | kWritable));
    for (uint64_t i = 0; i < 512; ++i) {
      uint64_t phys = (pdpt_index * 512 + i) * k2M;
      AIRLOCK_RETURN_IF_ERROR(
          mem.write_obj<uint64_t>(pd + i * 8, phys | kPresent | kWritable | kHugePage));
    }
  }
  return kPml4Addr;
}

}  // namespace airlock::x86
