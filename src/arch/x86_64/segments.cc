#include "arch/x86_64/segments.h"

#include "arch/x86_64/layout.h"

namespace airlock::x86 {

std::array<uint64_t, 5> boot_gdt() {
  return {
      0,
      0,
      gdt_entry(0xa09b, 0, 0xfffff),  // code: present, DPL0, exec/read, accessed; G, L
      gdt_entry(0xc093, 0, 0xfffff),  // data: present, DPL0, read/write, accessed; G, D/B
      gdt_entry(0x808b, 0, 0xfffff),  // TSS: present, busy 64-bit TSS; G
  };
}

kvm_segment segment_from_gdt(uint64_t entry, uint16_t index) {
  kvm_segment s{};
  s.base = ((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24);
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  s.g = (entry >> 55) & 1;
  // KVM wants the limit in bytes: with G set the 20-bit limit counts 4 KiB pages.
  s.limit = s.g ? (limit << 12) | 0xfff : limit;
  s.selector = static_cast<uint16_t>(index * 8);
  s.type = (entry >> 40) & 0xf;
  s.s = (entry >> 44) & 1;
  s.dpl = (entry >> 45) & 3;
  s.present = (entry >> 47) & 1;
  s.avl = (entry >> 52) & 1;
  s.l = (entry >> 53) & 1;
  s.db = (entry >> 54) & 1;
  s.unusable = s.present ? 0 : 1;
  return s;
}

Status write_gdt(const GuestMemory& mem) {
  auto gdt = boot_gdt();
  AIRLOCK_RETURN_IF_ERROR(mem.write(kGdtAddr, gdt.data(), sizeof gdt));
  return mem.write_obj<uint64_t>(kIdtAddr, 0);
}

void setup_long_mode_sregs(kvm_sregs& sregs, uint64_t cr3) {
  auto gdt = boot_gdt();
  kvm_segment code = segment_from_gdt(gdt[kBootCsSelector / 8], kBootCsSelector / 8);
  kvm_segment data = segment_from_gdt(gdt[kBootDsSelector / 8], kBootDsSelector / 8);
  kvm_segment tss = segment_from_gdt(gdt[kBootTssSelector / 8], kBootTssSelector / 8);
  sregs.gdt.base = kGdtAddr;
  sregs.gdt.limit = sizeof(gdt) - 1;
  sregs.idt.base = kIdtAddr;
  sregs.idt.limit = 7;
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = tss;
  sregs.cr0 = kCr0Pe | kCr0Et | kCr0Pg;
  sregs.cr3 = cr3;
  sregs.cr4 = kCr4Pae;
  sregs.efer = kEferLme | kEferLma;
}

}  // namespace airlock::x86
