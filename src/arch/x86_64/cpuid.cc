#include "arch/x86_64/cpuid.h"

namespace airlock::x86 {

namespace {

constexpr uint32_t kLeaf1EcxTscDeadline = 1u << 24;
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;

// Bits needed to number `n` items (x2APIC id shift).
uint32_t bits_for(unsigned n) {
  uint32_t bits = 0;
  while ((1u << bits) < n) ++bits;
  return bits;
}

}  // namespace

kvm_cpuid_entry2* find_cpuid(std::vector<kvm_cpuid_entry2>& entries, uint32_t function,
                             uint32_t index) {
  for (auto& e : entries)
    if (e.function == function && e.index == index) return &e;
  return nullptr;
}

std::vector<kvm_cpuid_entry2> normalize_cpuid(std::vector<kvm_cpuid_entry2> cpuid,
                                              const CpuidOptions& o) {
  const uint32_t apic_id = o.vcpu_index;
  const unsigned count = o.vcpu_count == 0 ? 1 : o.vcpu_count;
  const uint32_t core_bits = bits_for(count);
  for (auto& e : cpuid) {
    switch (e.function) {
      case 1:
        // EBX: [31:24] initial APIC id, [23:16] logical processors per package, keep the rest.
        e.ebx = (e.ebx & 0x0000ffffu) | (apic_id << 24) | ((count & 0xff) << 16);
        e.ecx |= kLeaf1EcxHypervisor;
        if (o.tsc_deadline)
          e.ecx |= kLeaf1EcxTscDeadline;
        else
          e.ecx &= ~kLeaf1EcxTscDeadline;
        if (count > 1)
          e.edx |= kLeaf1EdxHtt;
        else
          e.edx &= ~kLeaf1EdxHtt;
        break;
      case 4:
        // EAX[31:26]: cores per package - 1; [25:14]: threads sharing this cache - 1 (1 thread
        // per core, caches up to L2 private, L3 shared by the package).
        if ((e.eax & 0x1f) != 0) {
          uint32_t level = (e.eax >> 5) & 0x7;
          uint32_t sharing = level >= 3 ? count - 1 : 0;
          e.eax = (e.eax & 0x3fffu) | ((sharing & 0xfff) << 14) | (((count - 1) & 0x3f) << 26);
        }
        break;
      case 0xb:
      case 0x1f:
        // Extended topology: level 0 = SMT (1 thread), level 1 = core (count cores).
        e.edx = apic_id;
        if (e.index == 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (1u << 8) | 0;
        } else if (e.index == 1) {
          e.eax = core_bits;
          e.ebx = count;
          e.ecx = (2u << 8) | 1;
        } else {
          e.eax = 0;
          e.ebx = 0;
          e.ecx = e.index & 0xff;
        }
        break;
      case 0x80000008:
        // AMD: ECX[7:0] cores - 1, [15:12] APIC id bits.
        e.ecx = (e.ecx & ~0xf0ffu) | ((count - 1) & 0xff) | (core_bits << 12);
        break;
      case 0x8000001e:
        // AMD extended APIC id / compute unit: one thread per core, core id = APIC id.
        e.eax = apic_id;
        e.ebx = apic_id & 0xff;
        e.ecx = 0;
        break;
      default:
        break;
    }
  }
  return cpuid;
}

}  // namespace airlock::x86
