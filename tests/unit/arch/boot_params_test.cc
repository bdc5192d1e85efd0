#include <doctest/doctest.h>

#include <string>

#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/layout.h"

using namespace airlock;
using namespace airlock::x86;

namespace {
LoadedKernel fake_kernel(uint64_t end = 0x2000000) {
  LoadedKernel k;
  k.entry = 0x100200;
  k.load_addr = 0x100000;
  k.end = end;
  k.header.header = 0x53726448;
  k.header.version = 0x20f;
  k.header.cmdline_size = 2047;
  k.header.initrd_addr_max = 0x7fffffff;
  return k;
}
}  // namespace

TEST_CASE("e820 for small memory: low RAM, reserved BIOS area, RAM from 1 MiB") {
  auto map = build_e820(512ull << 20);
  REQUIRE(map.size() == 3);
  CHECK(+map[0].addr == 0);
  CHECK(+map[0].size == kEbdaStart);
  CHECK(+map[0].type == kE820Ram);
  CHECK(+map[1].addr == kEbdaStart);
  CHECK(+map[1].type == kE820Reserved);
  CHECK(+map[1].addr + map[1].size == kHighMemStart);
  CHECK(+map[2].addr == kHighMemStart);
  CHECK(+map[2].addr + map[2].size == 512ull << 20);
  CHECK(+map[2].type == kE820Ram);
}

TEST_CASE("e820 above 3 GiB leaves the MMIO hole and continues at 4 GiB") {
  uint64_t mem = 5ull << 30;
  auto map = build_e820(mem);
  REQUIRE(map.size() == 4);
  CHECK(+map[2].addr + map[2].size == kMmioHoleStart);
  CHECK(+map[3].addr == kMmioHoleEnd);
  CHECK(+map[3].size == mem - kMmioHoleStart);
  uint64_t ram = 0;
  for (auto& e : map)
    if (e.type == kE820Ram) ram += e.size;
  CHECK(ram == mem - (kHighMemStart - kEbdaStart));
}

TEST_CASE("initramfs goes page-aligned to the top of usable RAM, above the kernel") {
  auto k = fake_kernel();
  auto at = place_initrd(k, 1000000, 512ull << 20);
  REQUIRE(at.ok());
  CHECK(*at % 4096 == 0);
  CHECK(*at + 1000000 <= 512ull << 20);
  CHECK(*at + 1000000 + 4096 > 512ull << 20);

  k.header.initrd_addr_max = 0x0fffffff;  // 256 MiB limit
  at = place_initrd(k, 1000000, 512ull << 20);
  REQUIRE(at.ok());
  CHECK(*at + 1000000 <= 0x10000000);

  auto too_big = place_initrd(fake_kernel(), 600ull << 20, 512ull << 20);
  CHECK(too_big.status().code() == Errc::resource_exhausted);
  CHECK(too_big.status().message().find("more memory") != std::string::npos);

  // Would overlap the kernel.
  auto overlap = place_initrd(fake_kernel(500ull << 20), 20ull << 20, 512ull << 20);
  CHECK(!overlap.ok());
}

TEST_CASE("boot_params carries header, command line, initramfs, e820 and RSDP") {
  auto mem = GuestMemory::create(512ull << 20, kMmioHoleStart);
  REQUIRE(mem.ok());
  auto k = fake_kernel();
  BootParamsInput in;
  in.kernel = &k;
  in.cmdline = "console=ttyS0 quiet";
  in.initrd_addr = 0x1f000000;
  in.initrd_size = 12345;
  in.memory_bytes = 512ull << 20;
  in.acpi_rsdp_addr = kAcpiAddr;
  REQUIRE(write_boot_params(*mem, in).ok());
  auto bp = mem->read_obj<boot_params>(kZeroPageAddr);
  REQUIRE(bp.ok());
  CHECK(+bp->hdr.header == 0x53726448);
  CHECK(+bp->hdr.type_of_loader == 0xff);
  CHECK(+bp->hdr.cmd_line_ptr == kCmdlineAddr);
  CHECK(+bp->hdr.ramdisk_image == 0x1f000000);
  CHECK(+bp->hdr.ramdisk_size == 12345);
  CHECK(+bp->acpi_rsdp_addr == kAcpiAddr);
  CHECK(+bp->e820_entries == 3);
  CHECK(+bp->e820_table[2].addr == kHighMemStart);
  char cmd[32] = {};
  REQUIRE(mem->read(kCmdlineAddr, cmd, sizeof cmd - 1).ok());
  CHECK(std::string(cmd) == "console=ttyS0 quiet");
}

TEST_CASE("a command line longer than the kernel accepts is an error") {
  auto mem = GuestMemory::create(64 << 20);
  REQUIRE(mem.ok());
  auto k = fake_kernel();
  BootParamsInput in;
  in.kernel = &k;
  in.cmdline = std::string(3000, 'a');
  in.memory_bytes = 64 << 20;
  Status st = write_boot_params(*mem, in);
  CHECK(st.code() == Errc::invalid_argument);
  CHECK(st.message().find("2047") != std::string::npos);
}
