// The "zero page" (struct boot_params) handed to the kernel at its 64-bit entry: setup header,
// e820 memory map, command line and initramfs location. Pure functions over GuestMemory.
// Threads: any.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <string>
#include <vector>

#include "airlock/status.hpp"
#include "arch/x86_64/kernel_loader.h"
#include "memory/guest_memory.h"

namespace airlock::x86 {

constexpr uint32_t kE820Ram = 1;
constexpr uint32_t kE820Reserved = 2;

// RAM below 640 KiB (up to the EBDA), the BIOS area reserved, RAM from 1 MiB; with more than
// 3 GiB, the part above moves to 4 GiB.
std::vector<boot_e820_entry> build_e820(uint64_t memory_bytes);

// Where the initramfs goes: page-aligned, as high as possible below
// min(initrd_addr_max + 1, ram_end), above the kernel. Errc::resource_exhausted if it does not fit.
Result<uint64_t> place_initrd(const LoadedKernel& kernel, uint64_t initrd_size, uint64_t ram_end);

struct BootParamsInput {
  const LoadedKernel* kernel = nullptr;
  std::string cmdline;
  uint64_t initrd_addr = 0;  // 0 with initrd_size 0: none
  uint64_t initrd_size = 0;
  uint64_t memory_bytes = 0;
  uint64_t acpi_rsdp_addr = 0;
};

// Writes the command line at kCmdlineAddr and boot_params at kZeroPageAddr.
Status write_boot_params(const GuestMemory& mem, const BootParamsInput& in);

}  // namespace airlock::x86
