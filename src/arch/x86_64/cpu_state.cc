#include "arch/x86_64/cpu_state.h"

#include <cstring>

#include "arch/x86_64/layout.h"

namespace airlock::x86 {

kvm_regs boot_regs(uint64_t entry, uint64_t boot_params_addr) {
  kvm_regs r{};
  r.rflags = 0x2;  // bit 1 is reserved and always set
  r.rip = entry;
  r.rsi = boot_params_addr;
  r.rsp = kBootStackTop;
  r.rbp = kBootStackTop;
  return r;
}

kvm_fpu boot_fpu() {
  kvm_fpu f{};
  f.fcw = 0x37f;     // x87 default control word (FNINIT)
  f.mxcsr = 0x1f80;  // SSE default: all exceptions masked
  return f;
}

// IA32_TSC is deliberately not written: KVM starts every vCPU's TSC in sync, while writing it
// per vCPU at slightly different times makes Linux find the TSCs unsynchronised.
std::vector<kvm_msr_entry> boot_msrs() {
  auto e = [](uint32_t index, uint64_t value) {
    kvm_msr_entry m{};
    m.index = index;
    m.data = value;
    return m;
  };
  return {
      e(kMsrSysenterCs, 0),
      e(kMsrSysenterEsp, 0),
      e(kMsrSysenterEip, 0),
      e(kMsrStar, 0),
      e(kMsrCstar, 0),
      e(kMsrKernelGsBase, 0),
      e(kMsrSyscallMask, 0),
      e(kMsrLstar, 0),
      e(kMsrMiscEnable, kMiscEnableFastString),
      e(kMsrMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack),
  };
}

uint32_t lapic_reg(const kvm_lapic_state& s, uint32_t offset) {
  uint32_t v;
  std::memcpy(&v, s.regs + offset, sizeof v);
  return v;
}

void set_lapic_reg(kvm_lapic_state& s, uint32_t offset, uint32_t value) {
  std::memcpy(s.regs + offset, &value, sizeof value);
}

void configure_lapic_lint(kvm_lapic_state& s) {
  auto with_mode = [](uint32_t reg, uint32_t mode) { return (reg & ~0x700u) | (mode << 8); };
  set_lapic_reg(s, kApicLvtLint0, with_mode(lapic_reg(s, kApicLvtLint0), kApicDeliveryExtInt));
  set_lapic_reg(s, kApicLvtLint1, with_mode(lapic_reg(s, kApicLvtLint1), kApicDeliveryNmi));
}

}  // namespace airlock::x86
