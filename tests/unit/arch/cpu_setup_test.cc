#include <doctest/doctest.h>

#include "arch/x86_64/cpu_state.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/page_tables.h"
#include "arch/x86_64/segments.h"

using namespace airlock;
using namespace airlock::x86;

TEST_CASE("identity page tables map the first 4 GiB with 2 MiB pages") {
  auto mem = GuestMemory::create(64 << 20);
  REQUIRE(mem.ok());
  auto cr3 = write_identity_page_tables(*mem);
  REQUIRE(cr3.ok());
  CHECK(*cr3 == kPml4Addr);
  // Walk a few addresses the way the MMU would.
  for (uint64_t va :
       {0ull, 0x100200ull, 0x1fe32000ull, 0xbfffffffull, 0xd0000000ull, 0xffffffffull}) {
    uint64_t pml4e = *mem->read_obj<uint64_t>(kPml4Addr + ((va >> 39) & 511) * 8);
    REQUIRE((pml4e & 1) == 1);
    uint64_t pdpte = *mem->read_obj<uint64_t>((pml4e & ~0xfffull) + ((va >> 30) & 511) * 8);
    REQUIRE((pdpte & 1) == 1);
    uint64_t pde = *mem->read_obj<uint64_t>((pdpte & ~0xfffull) + ((va >> 21) & 511) * 8);
    REQUIRE((pde & 0x83) == 0x83);  // present, writable, 2 MiB page
    uint64_t pa = (pde & ~0x1fffffull) | (va & 0x1fffff);
    CHECK(pa == va);
  }
  // Nothing mapped beyond 4 GiB.
  CHECK(*mem->read_obj<uint64_t>(kPdptAddr + 4 * 8) == 0);
}

TEST_CASE("boot GDT entries decode to flat long-mode segments") {
  auto gdt = boot_gdt();
  CHECK(gdt[0] == 0);
  CHECK(gdt[2] == 0x00af9b000000ffffull);  // the classic 64-bit code descriptor
  CHECK(gdt[3] == 0x00cf93000000ffffull);  // flat data
  kvm_segment cs = segment_from_gdt(gdt[2], 2);
  CHECK(cs.selector == kBootCsSelector);
  CHECK(cs.base == 0);
  CHECK(cs.limit == 0xffffffff);
  CHECK(cs.l == 1);
  CHECK(cs.db == 0);
  CHECK(cs.type == 0xb);
  CHECK(cs.present == 1);
  CHECK(cs.s == 1);
  kvm_segment ds = segment_from_gdt(gdt[3], 3);
  CHECK(ds.selector == kBootDsSelector);
  CHECK(ds.db == 1);
  CHECK(ds.l == 0);
  CHECK(ds.type == 0x3);
  kvm_segment tr = segment_from_gdt(gdt[4], 4);
  CHECK(tr.s == 0);
  CHECK(tr.type == 0xb);
}

TEST_CASE("long-mode sregs: paging, PAE, LME/LMA and the boot selectors") {
  kvm_sregs s{};
  s.apic_base = 0xfee00900;
  setup_long_mode_sregs(s, kPml4Addr);
  CHECK((s.cr0 & kCr0Pe) != 0);
  CHECK((s.cr0 & kCr0Pg) != 0);
  CHECK(s.cr3 == kPml4Addr);
  CHECK((s.cr4 & kCr4Pae) != 0);
  CHECK((s.efer & (kEferLme | kEferLma)) == (kEferLme | kEferLma));
  CHECK(s.cs.selector == 0x10);
  CHECK(s.ds.selector == 0x18);
  CHECK(s.ss.selector == 0x18);
  CHECK(s.gdt.base == kGdtAddr);
  CHECK(s.gdt.limit == 5 * 8 - 1);
  CHECK(s.apic_base == 0xfee00900);  // untouched

  auto mem = GuestMemory::create(1 << 20);
  REQUIRE(mem.ok());
  REQUIRE(write_gdt(*mem).ok());
  CHECK(*mem->read_obj<uint64_t>(kGdtAddr + 16) == boot_gdt()[2]);
}

TEST_CASE("boot registers, FPU and MSRs") {
  kvm_regs r = boot_regs(0x100200, kZeroPageAddr);
  CHECK(r.rip == 0x100200);
  CHECK(r.rsi == kZeroPageAddr);
  CHECK(r.rflags == 2);
  kvm_fpu f = boot_fpu();
  CHECK(f.fcw == 0x37f);
  CHECK(f.mxcsr == 0x1f80);
  auto msrs = boot_msrs();
  bool fast_string = false, mtrr_wb = false, lstar = false;
  for (auto& m : msrs) {
    if (m.index == kMsrMiscEnable) fast_string = (m.data & 1) != 0;
    if (m.index == kMsrMtrrDefType) mtrr_wb = m.data == ((1u << 11) | 6);
    if (m.index == kMsrLstar) lstar = m.data == 0;
  }
  CHECK(fast_string);
  CHECK(mtrr_wb);
  CHECK(lstar);
}

TEST_CASE("LAPIC LINT0 becomes ExtINT and LINT1 NMI, other bits kept") {
  kvm_lapic_state s{};
  set_lapic_reg(s, kApicLvtLint0, 0x00010700 | 0x20);  // masked, some vector bits
  set_lapic_reg(s, kApicLvtLint1, 0x00010000);
  configure_lapic_lint(s);
  CHECK(((lapic_reg(s, kApicLvtLint0) >> 8) & 7) == kApicDeliveryExtInt);
  CHECK((lapic_reg(s, kApicLvtLint0) & 0x10000) != 0);
  CHECK((lapic_reg(s, kApicLvtLint0) & 0xff) == 0x20);
  CHECK(((lapic_reg(s, kApicLvtLint1) >> 8) & 7) == kApicDeliveryNmi);
}
