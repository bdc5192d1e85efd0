// Per-vCPU CPUID, derived from what KVM supports (KVM_GET_SUPPORTED_CPUID): each vCPU gets its
// own initial APIC id (leaf 1, leaves 0xB/0x1F), a topology of `count` cores in one package
// with one thread each (leaves 4, 0xB, 0x1F, 0x80000008), the hypervisor bit, and the
// TSC-deadline timer when the in-kernel LAPIC offers it. Pure function; threads: any.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace airlock::x86 {

struct CpuidOptions {
  unsigned vcpu_index = 0;  // also the APIC id
  unsigned vcpu_count = 1;
  bool tsc_deadline = false;  // KVM_CAP_TSC_DEADLINE_TIMER
};

std::vector<kvm_cpuid_entry2> normalize_cpuid(std::vector<kvm_cpuid_entry2> supported,
                                              const CpuidOptions& options);

// Entry for (function, index), or nullptr.
kvm_cpuid_entry2* find_cpuid(std::vector<kvm_cpuid_entry2>& entries, uint32_t function,
                             uint32_t index = 0);

}  // namespace airlock::x86
