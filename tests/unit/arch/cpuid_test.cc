#include <doctest/doctest.h>

#include "arch/x86_64/cpuid.h"

using namespace airlock::x86;

namespace {
kvm_cpuid_entry2 leaf(uint32_t fn, uint32_t index, uint32_t eax, uint32_t ebx, uint32_t ecx,
                      uint32_t edx) {
  kvm_cpuid_entry2 e{};
  e.function = fn;
  e.index = index;
  e.eax = eax;
  e.ebx = ebx;
  e.ecx = ecx;
  e.edx = edx;
  return e;
}

// What a host might report: leaf 1 with a stale APIC id and no hypervisor bit, two cache
// leaves, topology leaves, the KVM signature.
std::vector<kvm_cpuid_entry2> supported() {
  return {
      leaf(0, 0, 0x10, 0x68747541, 0x444d4163, 0x69746e65),
      leaf(1, 0, 0x00800f12, 0x07080800, 0x7ed8320b, 0x178bfbff),
      leaf(4, 0, 0x00000121, 0x01c0003f, 0x3f, 0),   // L1d
      leaf(4, 3, 0x00000163, 0x03c0003f, 0xfff, 0),  // L3
      leaf(0xb, 0, 1, 2, 0x100, 7),
      leaf(0xb, 1, 4, 16, 0x201, 7),
      leaf(0xb, 2, 0, 0, 2, 7),
      leaf(0x40000000, 0, 0x40000001, 0x4b4d564b, 0x564b4d56, 0x4d),
      leaf(0x80000008, 0, 0x3030, 0, 0x400f, 0),
  };
}
}  // namespace

TEST_CASE("each vCPU gets its own APIC id in leaf 1 and the topology leaves") {
  for (unsigned i = 0; i < 3; ++i) {
    auto c = normalize_cpuid(supported(), {i, 3, true});
    auto* l1 = find_cpuid(c, 1);
    REQUIRE(l1);
    CHECK((l1->ebx >> 24) == i);
    CHECK(((l1->ebx >> 16) & 0xff) == 3);
    CHECK((l1->ebx & 0xffff) == 0x0800);  // brand/CLFLUSH bits kept
    CHECK((l1->ecx & (1u << 31)) != 0);   // hypervisor
    CHECK((l1->ecx & (1u << 24)) != 0);   // TSC deadline
    CHECK((l1->edx & (1u << 28)) != 0);   // HTT: more than one logical CPU
    for (uint32_t sub = 0; sub < 3; ++sub) {
      auto* t = find_cpuid(c, 0xb, sub);
      REQUIRE(t);
      CHECK(t->edx == i);
      CHECK((t->ecx & 0xff) == sub);
    }
    auto* smt = find_cpuid(c, 0xb, 0);
    CHECK(smt->ebx == 1);
    CHECK(((smt->ecx >> 8) & 0xff) == 1);
    auto* core = find_cpuid(c, 0xb, 1);
    CHECK(core->eax == 2);  // 3 CPUs need 2 bits of APIC id
    CHECK(core->ebx == 3);
    CHECK(((core->ecx >> 8) & 0xff) == 2);
    auto* end = find_cpuid(c, 0xb, 2);
    CHECK(end->ebx == 0);
    CHECK(((end->ecx >> 8) & 0xff) == 0);
  }
}

TEST_CASE("cache leaves count the vCPUs as cores, L3 is shared, L1 private") {
  auto c = normalize_cpuid(supported(), {0, 4, false});
  auto* l1d = find_cpuid(c, 4, 0);
  auto* l3 = find_cpuid(c, 4, 3);
  REQUIRE(l1d);
  REQUIRE(l3);
  CHECK((l1d->eax >> 26) == 3);
  CHECK(((l1d->eax >> 14) & 0xfff) == 0);
  CHECK(((l3->eax >> 14) & 0xfff) == 3);
  CHECK((l1d->eax & 0x3fff) == 0x121);  // type/level bits kept
  auto* amd = find_cpuid(c, 0x80000008);
  CHECK((amd->ecx & 0xff) == 3);
}

TEST_CASE("single vCPU: no HTT, no TSC deadline when KVM lacks it, KVM signature kept") {
  auto c = normalize_cpuid(supported(), {0, 1, false});
  auto* l1 = find_cpuid(c, 1);
  CHECK((l1->edx & (1u << 28)) == 0);
  CHECK((l1->ecx & (1u << 24)) == 0);
  auto* kvm = find_cpuid(c, 0x40000000);
  REQUIRE(kvm);
  CHECK(kvm->ebx == 0x4b4d564b);  // "KVMK"
  CHECK(find_cpuid(c, 0x12345678) == nullptr);
}
