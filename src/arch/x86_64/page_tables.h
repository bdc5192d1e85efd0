// Identity page tables for the 64-bit entry: the boot protocol wants the kernel, boot_params
// and command line identity-mapped; we map the first 4 GiB with 2 MiB pages (PML4 -> one
// PDPT -> four page directories), which also covers the initramfs and the MMIO hole.
// Threads: any.
#pragma once

#include <cstdint>

#include "airlock/status.hpp"
#include "memory/guest_memory.h"

namespace airlock::x86 {

// Writes the tables at kPml4Addr..kPdAddr+4 pages; returns the value for CR3.
Result<uint64_t> write_identity_page_tables(const GuestMemory& mem);

}  // namespace airlock::x86
