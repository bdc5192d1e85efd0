#include "arch/x86_64/boot_params.h"

#include <algorithm>

#include <fmt/format.h>

#include "arch/x86_64/layout.h"

namespace airlock::x86 {

std::vector<boot_e820_entry> build_e820(uint64_t memory_bytes) {
  std::vector<boot_e820_entry> map;
  map.push_back({0, kEbdaStart, kE820Ram});
  map.push_back({kEbdaStart, kHighMemStart - kEbdaStart, kE820Reserved});
  uint64_t low_end = low_ram_end(memory_bytes);
  if (low_end > kHighMemStart) map.push_back({kHighMemStart, low_end - kHighMemStart, kE820Ram});
  if (memory_bytes > kMmioHoleStart)
    map.push_back({kMmioHoleEnd, memory_bytes - kMmioHoleStart, kE820Ram});
  return map;
}

Result<uint64_t> place_initrd(const LoadedKernel& kernel, uint64_t initrd_size, uint64_t ram_end) {
  uint64_t limit = std::min<uint64_t>(uint64_t{kernel.header.initrd_addr_max} + 1, ram_end);
  uint64_t lowest = (kernel.end + kPageSize - 1) & ~(kPageSize - 1);
  if (initrd_size > limit || limit - initrd_size < lowest)
    return Status(
        Errc::resource_exhausted,
        fmt::format("initramfs of {} KiB does not fit between the kernel (ends at {} MiB) "
                    "and {} MiB: give the machine more memory",
                    initrd_size >> 10, kernel.end >> 20, limit >> 20));
  return (limit - initrd_size) & ~(kPageSize - 1);
}

Status write_boot_params(const GuestMemory& mem, const BootParamsInput& in) {
  if (!in.kernel) return Status(Errc::internal, "write_boot_params without a kernel");
  const setup_header& kh = in.kernel->header;
  uint64_t max_cmdline = std::min<uint64_t>(kh.cmdline_size, kCmdlineMax - 1);
  if (in.cmdline.size() > max_cmdline)
    return Status(Errc::invalid_argument,
                  fmt::format("kernel command line is {} bytes; this kernel accepts at most {}",
                              in.cmdline.size(), max_cmdline));
  AIRLOCK_RETURN_IF_ERROR(mem.write(kCmdlineAddr, in.cmdline.c_str(), in.cmdline.size() + 1));

  boot_params bp{};
  bp.hdr = kh;
  bp.hdr.type_of_loader = 0xff;  // "undefined" boot loader
  bp.hdr.loadflags |= CAN_USE_HEAP;
  bp.hdr.heap_end_ptr = 0xfe00;
  bp.hdr.vid_mode = 0xffff;  // "normal"
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(kCmdlineAddr);
  bp.ext_cmd_line_ptr = 0;
  bp.hdr.ramdisk_image = static_cast<uint32_t>(in.initrd_addr);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(in.initrd_size);
  bp.ext_ramdisk_image = static_cast<uint32_t>(in.initrd_addr >> 32);
  bp.ext_ramdisk_size = static_cast<uint32_t>(in.initrd_size >> 32);
  bp.acpi_rsdp_addr = in.acpi_rsdp_addr;
  auto e820 = build_e820(in.memory_bytes);
  bp.e820_entries = static_cast<uint8_t>(e820.size());
  std::copy(e820.begin(), e820.end(), bp.e820_table);
  return mem.write_obj(kZeroPageAddr, bp);
}

}  // namespace airlock::x86
