// Initial vCPU state for the 64-bit boot protocol that is not segments or CPUID: general
// registers (entry point, boot_params in RSI), FPU, boot MSRs, and the local APIC's LINT pins
// (LINT0 = ExtINT from the PIC, LINT1 = NMI, as firmware leaves them). Threads: any.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace airlock::x86 {

// MSR indices (Intel SDM vol. 4).
constexpr uint32_t kMsrIa32Tsc = 0x10;
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;

constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnable = 1ull << 11;
constexpr uint64_t kMtrrTypeWriteBack = 6;

// Local APIC register offsets inside kvm_lapic_state::regs and LVT delivery modes.
constexpr uint32_t kApicLvtLint0 = 0x350;
constexpr uint32_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicDeliveryNmi = 4;
constexpr uint32_t kApicDeliveryExtInt = 7;

kvm_regs boot_regs(uint64_t entry, uint64_t boot_params_addr);
kvm_fpu boot_fpu();
std::vector<kvm_msr_entry> boot_msrs();

uint32_t lapic_reg(const kvm_lapic_state& s, uint32_t offset);
void set_lapic_reg(kvm_lapic_state& s, uint32_t offset, uint32_t value);
// Sets LINT0 to ExtINT and LINT1 to NMI delivery, keeping the other LVT bits.
void configure_lapic_lint(kvm_lapic_state& s);

}  // namespace airlock::x86
