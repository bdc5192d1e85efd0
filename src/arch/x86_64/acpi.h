// ACPI tables for a hardware-reduced platform: RSDP -> XSDT -> {FADT -> DSDT, MADT}.
// The MADT lists every vCPU's local APIC and the IOAPIC (so Linux brings up all CPUs and routes
// ISA IRQs 1:1 to IOAPIC pins); the DSDT declares COM1 (so its IRQ 4 gets routed) and each
// virtio-mmio device as a "LNRO0005" device with its MMIO window and interrupt — Debian's kernel
// finds virtio-mmio devices only this way (it is built without virtio_mmio.device= support and
// without device tree on x86). Pure functions over bytes / GuestMemory. Threads: any.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "airlock/status.hpp"
#include "memory/guest_memory.h"

namespace airlock::x86 {

struct MmioDeviceInfo {
  uint64_t base = 0;
  uint64_t size = 0;
  uint32_t irq = 0;
};

// Sum of all bytes; a valid ACPI table sums to 0 mod 256.
uint8_t acpi_checksum(const uint8_t* data, size_t len);

std::vector<uint8_t> build_dsdt(const std::vector<MmioDeviceInfo>& devices);
std::vector<uint8_t> build_madt(unsigned vcpus);
std::vector<uint8_t> build_fadt(uint64_t dsdt_addr);
std::vector<uint8_t> build_xsdt(const std::vector<uint64_t>& tables);
std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr);

// Writes all tables into [kAcpiAddr, kAcpiEnd); returns the RSDP address.
Result<uint64_t> write_acpi_tables(const GuestMemory& mem, unsigned vcpus,
                                   const std::vector<MmioDeviceInfo>& devices);

// AML PkgLength encoding of `length` (the length of what follows the opcode, not counting
// the PkgLength bytes themselves). Exposed for tests.
std::vector<uint8_t> aml_pkg_length(size_t length);

}  // namespace airlock::x86
