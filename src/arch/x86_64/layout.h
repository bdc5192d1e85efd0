// Guest-physical memory layout of an airlock x86_64 machine. One place, so the loaders, the
// boot tables and the machine agree. Low memory (below 1 MiB) holds the boot structures; the
// kernel goes at 1 MiB; RAM above 3 GiB moves to 4 GiB so [3 GiB, 4 GiB) is free for MMIO.
#pragma once

#include <cstdint>

namespace airlock::x86 {

constexpr uint64_t kPageSize = 0x1000;
constexpr uint64_t kGdtAddr = 0x500;        // boot GDT (5 entries)
constexpr uint64_t kIdtAddr = 0x540;        // empty IDT
constexpr uint64_t kZeroPageAddr = 0x7000;  // struct boot_params
constexpr uint64_t kBootStackTop = 0x8ff0;  // rsp at entry; the kernel switches stacks at once
constexpr uint64_t kPml4Addr = 0x9000;      // identity page tables: PML4, PDPT, 4 PDs
constexpr uint64_t kPdptAddr = 0xa000;
constexpr uint64_t kPdAddr = 0xb000;  // 4 pages: 0xb000..0xefff, 2 MiB pages up to 4 GiB
constexpr uint64_t kCmdlineAddr = 0x20000;
constexpr uint64_t kCmdlineMax = 0x10000;  // bytes available at kCmdlineAddr
constexpr uint64_t kEbdaStart = 0x9fc00;   // RAM below this is usable; above is reserved
constexpr uint64_t kAcpiAddr = 0xe0000;    // RSDP then the other ACPI tables (BIOS area)
constexpr uint64_t kAcpiEnd = 0x100000;
constexpr uint64_t kHighMemStart = 0x100000;      // 1 MiB: the bzImage protected-mode kernel
constexpr uint64_t kMmioHoleStart = 0xc0000000;   // 3 GiB
constexpr uint64_t kMmioHoleEnd = 0x100000000;    // 4 GiB
constexpr uint64_t kVirtioMmioBase = 0xd0000000;  // virtio-mmio windows, 4 KiB each
constexpr uint64_t kVirtioMmioSize = 0x1000;
constexpr uint32_t kVirtioFirstIrq = 5;
constexpr uint64_t kIoapicAddr = 0xfec00000;
constexpr uint64_t kLapicAddr = 0xfee00000;
// KVM needs three pages for the real-mode TSS and one for the EPT identity map, below 4 GiB
// and outside RAM; the top of the MMIO hole is unused.
constexpr uint64_t kKvmIdentityMapAddr = 0xfeffc000;
constexpr uint64_t kKvmTssAddr = 0xfeffd000;

// End of the RAM that lies below the MMIO hole, for a machine of `memory_bytes`.
constexpr uint64_t low_ram_end(uint64_t memory_bytes) {
  return memory_bytes < kMmioHoleStart ? memory_bytes : kMmioHoleStart;
}

}  // namespace airlock::x86
