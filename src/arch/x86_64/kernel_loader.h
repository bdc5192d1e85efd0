// Loads a guest kernel into guest memory: a bzImage through the 64-bit boot protocol
// (Documentation/arch/x86/boot.rst), or an uncompressed ELF vmlinux whose PT_LOAD segments go
// to their physical addresses (no decompression inside the guest: the fast path).
// Pure functions over bytes and GuestMemory; every malformed image is an Errc::bad_image with a
// message saying what is wrong. Threads: any.
#pragma once

#include <asm/bootparam.h>

#include <cstdint>
#include <functional>
#include <span>

#include "airlock/status.hpp"
#include "memory/guest_memory.h"

namespace airlock::x86 {

enum class KernelFormat { bzimage, elf };

struct LoadedKernel {
  KernelFormat format = KernelFormat::bzimage;
  uint64_t entry = 0;      // guest-physical 64-bit entry point
  uint64_t load_addr = 0;  // lowest guest-physical byte written
  uint64_t end = 0;        // one past the highest byte the kernel will use (incl. init_size)
  // The setup header to copy into boot_params: the image's own for a bzImage, a minimal one
  // for an ELF vmlinux.
  setup_header header{};
};

// How image bytes reach guest memory: `src` points into `image`, `len` bytes go to `gpa`.
// Empty: a plain checked copy. The machine passes one that reads those bytes from the file
// straight into guest RAM (pread), so the image's pages never enter the VMM's page tables.
using ImageCopy =
    std::function<Status(const GuestMemory& mem, uint64_t gpa, const uint8_t* src, size_t len)>;

// `ram_is_zero`: the caller guarantees that guest RAM where the kernel goes reads as zero
// (freshly mapped anonymous memory). The ELF loader then writes nothing where the image only
// has zeros to give: the bss beyond a segment's p_filesz, and SHT_NOBITS sections (.bss, .brk
// of a vmlinux, whose file bytes are zero padding) lying inside a segment's file range. A
// vmlinux then loads ~20 MB less (of ~58 MB). Without the flag every byte is written.

// Validates a bzImage setup header without touching guest memory. `image` is the whole file.
Status validate_bzimage(std::span<const uint8_t> image);

// Loads a bzImage or an ELF vmlinux (detected by magic) into `mem`. `ram_end` bounds the
// kernel: everything it needs must lie below it (low RAM, below the MMIO hole).
Result<LoadedKernel> load_kernel(const GuestMemory& mem, std::span<const uint8_t> image,
                                 uint64_t ram_end, const ImageCopy& copy = {},
                                 bool ram_is_zero = false);
Result<LoadedKernel> load_bzimage(const GuestMemory& mem, std::span<const uint8_t> image,
                                  uint64_t ram_end, const ImageCopy& copy = {});
Result<LoadedKernel> load_elf(const GuestMemory& mem, std::span<const uint8_t> image,
                              uint64_t ram_end, const ImageCopy& copy = {},
                              bool ram_is_zero = false);

}  // namespace airlock::x86
