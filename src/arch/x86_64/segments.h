// The boot GDT and the long-mode special registers (segments, CR0/CR3/CR4/EFER) for the 64-bit
// boot protocol: CS = __BOOT_CS (0x10, 64-bit code), DS/ES/SS = __BOOT_DS (0x18), flat.
// Threads: any.
#pragma once

#include <linux/kvm.h>

#include <array>
#include <cstdint>

#include "airlock/status.hpp"
#include "memory/guest_memory.h"

namespace airlock::x86 {

constexpr uint16_t kBootCsSelector = 0x10;
constexpr uint16_t kBootDsSelector = 0x18;
constexpr uint16_t kBootTssSelector = 0x20;

constexpr uint64_t kCr0Pe = 1ull << 0;
constexpr uint64_t kCr0Et = 1ull << 4;
constexpr uint64_t kCr0Pg = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

// A GDT descriptor from its parts (flags = the 4 high flag bits G/DB/L/AVL and the access byte,
// packed as in the descriptor: 0xa09b = 64-bit code).
constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((uint64_t{base} & 0xff000000u) << 32) | ((uint64_t{flags} & 0xf0ffu) << 40) |
         ((uint64_t{limit} & 0x000f0000u) << 32) | ((uint64_t{base} & 0x00ffffffu) << 16) |
         (uint64_t{limit} & 0x0000ffffu);
}

// Entries: null, null, code64 (0x10), data (0x18), TSS (0x20).
std::array<uint64_t, 5> boot_gdt();

// The KVM view of GDT entry `index`.
kvm_segment segment_from_gdt(uint64_t entry, uint16_t index);

// Writes the GDT and an empty IDT into guest memory.
Status write_gdt(const GuestMemory& mem);

// Fills segments, descriptor tables, control registers and EFER for long mode with paging
// rooted at `cr3`. Other fields of `sregs` (APIC base, interrupt bitmap) are kept.
void setup_long_mode_sregs(kvm_sregs& sregs, uint64_t cr3);

}  // namespace airlock::x86
