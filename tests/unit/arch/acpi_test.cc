#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/layout.h"

using namespace airlock;
using namespace airlock::x86;

namespace {
uint32_t u32(const std::vector<uint8_t>& t, size_t off) {
  uint32_t v;
  std::memcpy(&v, t.data() + off, 4);
  return v;
}
uint64_t u64(const std::vector<uint8_t>& t, size_t off) {
  uint64_t v;
  std::memcpy(&v, t.data() + off, 8);
  return v;
}
bool contains(const std::vector<uint8_t>& t, const std::vector<uint8_t>& needle) {
  return std::search(t.begin(), t.end(), needle.begin(), needle.end()) != t.end();
}
}  // namespace

TEST_CASE("AML package lengths use 1 to 3 bytes and count themselves") {
  CHECK(aml_pkg_length(10) == std::vector<uint8_t>{11});
  CHECK(aml_pkg_length(62) == std::vector<uint8_t>{63});
  // 63 bytes of content: 65 in total with a 2-byte PkgLength: 0x41 0x04.
  CHECK(aml_pkg_length(63) == std::vector<uint8_t>{0x41, 0x04});
  auto three = aml_pkg_length(5000);
  REQUIRE(three.size() == 3);
  CHECK((three[0] >> 6) == 2);
  size_t decoded = (three[0] & 0xf) | (size_t{three[1]} << 4) | (size_t{three[2]} << 12);
  CHECK(decoded == 5003);
}

TEST_CASE("MADT lists every vCPU, the IOAPIC and LINT1 NMI, checksum is valid") {
  auto t = build_madt(4);
  CHECK(std::string(t.begin(), t.begin() + 4) == "APIC");
  CHECK(u32(t, 4) == t.size());
  CHECK(acpi_checksum(t.data(), t.size()) == 0);
  CHECK(u32(t, 36) == kLapicAddr);
  size_t off = 44;
  unsigned cpus = 0;
  bool ioapic = false, nmi = false;
  while (off + 2 <= t.size()) {
    uint8_t type = t[off], len = t[off + 1];
    REQUIRE(len >= 2);
    if (type == 0) {
      CHECK(t[off + 3] == cpus);  // APIC id
      CHECK((t[off + 4] & 1) == 1);
      ++cpus;
    } else if (type == 1) {
      ioapic = u32(t, off + 4) == kIoapicAddr && u32(t, off + 8) == 0;
    } else if (type == 4) {
      nmi = t[off + 2] == 0xff && t[off + 5] == 1;
    }
    off += len;
  }
  CHECK(off == t.size());
  CHECK(cpus == 4);
  CHECK(ioapic);
  CHECK(nmi);
}

TEST_CASE("DSDT declares COM1 and one LNRO0005 device per virtio-mmio window") {
  std::vector<MmioDeviceInfo> devs = {{0xd0000000, 0x1000, 5}, {0xd0001000, 0x1000, 6}};
  auto t = build_dsdt(devs);
  CHECK(std::string(t.begin(), t.begin() + 4) == "DSDT");
  CHECK(acpi_checksum(t.data(), t.size()) == 0);
  CHECK(u32(t, 4) == t.size());
  CHECK(contains(t, {'L', 'N', 'R', 'O', '0', '0', '0', '5', 0}));
  CHECK(contains(t, {'V', '0', '0', '0'}));
  CHECK(contains(t, {'V', '0', '0', '1'}));
  // Memory32Fixed for the second window and its Extended Interrupt (edge, high) on IRQ 6.
  CHECK(contains(t, {0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0, 0x00, 0x10, 0x00, 0x00}));
  CHECK(contains(t, {0x89, 0x06, 0x00, 0x03, 0x01, 0x06, 0x00, 0x00, 0x00}));
  // COM1: PNP0501, I/O 0x3f8, IRQ 4.
  CHECK(contains(t, {0x41, 0xd0, 0x05, 0x01}));
  CHECK(contains(t, {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03}));
  CHECK(contains(t, {0x22, 0x10, 0x00}));
  // The scope's PkgLength covers exactly the rest of the table.
  CHECK(t[36] == 0x10);
}

TEST_CASE("FADT is hardware-reduced, points at the DSDT, says no RTC/VGA/MSI") {
  auto t = build_fadt(0xe0040);
  CHECK(std::string(t.begin(), t.begin() + 4) == "FACP");
  CHECK(t.size() == 276);
  CHECK(acpi_checksum(t.data(), t.size()) == 0);
  CHECK(u32(t, 40) == 0xe0040);
  CHECK(u64(t, 140) == 0xe0040);
  CHECK((u32(t, 112) & (1u << 20)) != 0);
  uint16_t iapc = static_cast<uint16_t>(t[109] | (t[110] << 8));
  CHECK((iapc & (1u << 5)) != 0);
  CHECK((iapc & (1u << 1)) == 0);  // no 8042 declared
}

TEST_CASE("tables written to guest memory chain from the RSDP") {
  auto mem = GuestMemory::create(2 << 20);
  REQUIRE(mem.ok());
  auto rsdp_addr = write_acpi_tables(*mem, 2, {{0xd0000000, 0x1000, 5}});
  REQUIRE(rsdp_addr.ok());
  CHECK(*rsdp_addr == kAcpiAddr);
  std::vector<uint8_t> rsdp(36);
  REQUIRE(mem->read(*rsdp_addr, rsdp.data(), 36).ok());
  CHECK(std::string(rsdp.begin(), rsdp.begin() + 8) == "RSD PTR ");
  CHECK(acpi_checksum(rsdp.data(), 20) == 0);
  CHECK(acpi_checksum(rsdp.data(), 36) == 0);
  CHECK(rsdp[15] == 2);
  uint64_t xsdt_addr = u64(rsdp, 24);
  uint32_t xsdt_len = *mem->read_obj<uint32_t>(xsdt_addr + 4);
  std::vector<uint8_t> xsdt(xsdt_len);
  REQUIRE(mem->read(xsdt_addr, xsdt.data(), xsdt_len).ok());
  CHECK(acpi_checksum(xsdt.data(), xsdt.size()) == 0);
  REQUIRE(xsdt_len == 36 + 16);
  std::string sigs;
  for (size_t i = 0; i < 2; ++i) {
    uint64_t a = u64(xsdt, 36 + 8 * i);
    CHECK(a >= kAcpiAddr);
    CHECK(a < kAcpiEnd);
    char sig[5] = {};
    REQUIRE(mem->read(a, sig, 4).ok());
    sigs += sig;
  }
  CHECK(sigs == "FACPAPIC");
}
