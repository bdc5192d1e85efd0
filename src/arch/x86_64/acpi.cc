#include "arch/x86_64/acpi.h"

#include <cstring>

#include <fmt/format.h>

#include "arch/x86_64/layout.h"

namespace airlock::x86 {

namespace {

constexpr size_t kHeaderSize = 36;
constexpr char kOemId[7] = "AIRLCK";
constexpr char kOemTableId[9] = "AIRLOCKV";
constexpr char kCreatorId[5] = "ALCK";

void put(std::vector<uint8_t>& b, size_t off, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
void append(std::vector<uint8_t>& b, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void append_str(std::vector<uint8_t>& b, const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(s[i]));
}

// A table of `size` bytes with its header filled in except the checksum.
std::vector<uint8_t> table(const char sig[4], size_t size, uint8_t revision) {
  std::vector<uint8_t> t(size, 0);
  std::memcpy(t.data(), sig, 4);
  put(t, 4, size, 4);
  t[8] = revision;
  std::memcpy(t.data() + 10, kOemId, 6);
  std::memcpy(t.data() + 16, kOemTableId, 8);
  put(t, 24, 1, 4);  // OEM revision
  std::memcpy(t.data() + 28, kCreatorId, 4);
  put(t, 32, 1, 4);  // creator revision
  return t;
}

// Sets the length field and the checksum (byte 9) once the table is complete.
void finish(std::vector<uint8_t>& t) {
  put(t, 4, t.size(), 4);
  t[9] = 0;
  t[9] = static_cast<uint8_t>(0x100 - acpi_checksum(t.data(), t.size()));
}

// AML helpers (ACPI spec, chapter 20).
constexpr uint8_t kAmlNameOp = 0x08;
constexpr uint8_t kAmlScopeOp = 0x10;
constexpr uint8_t kAmlBufferOp = 0x11;
constexpr uint8_t kAmlStringPrefix = 0x0d;
constexpr uint8_t kAmlDWordPrefix = 0x0c;
constexpr uint8_t kAmlWordPrefix = 0x0b;
constexpr uint8_t kAmlExtOpPrefix = 0x5b;
constexpr uint8_t kAmlDeviceOp = 0x82;

std::vector<uint8_t> aml_package(std::vector<uint8_t> head, const std::vector<uint8_t>& body) {
  // head = opcode bytes; then PkgLength covering itself + body.
  auto len = aml_pkg_length(body.size());
  head.insert(head.end(), len.begin(), len.end());
  head.insert(head.end(), body.begin(), body.end());
  return head;
}

void aml_name_seg(std::vector<uint8_t>& b, const std::string& seg) {
  append_str(b, seg.c_str(), 4);
}

std::vector<uint8_t> virtio_mmio_device_aml(unsigned index, const MmioDeviceInfo& d) {
  std::vector<uint8_t> body;
  aml_name_seg(body, fmt::format("V{:03X}", index & 0xfff));
  // Name (_HID, "LNRO0005")
  body.push_back(kAmlNameOp);
  aml_name_seg(body, "_HID");
  body.push_back(kAmlStringPrefix);
  append_str(body, "LNRO0005", 9);  // includes the NUL terminator
  // Name (_UID, index)
  body.push_back(kAmlNameOp);
  aml_name_seg(body, "_UID");
  body.push_back(kAmlDWordPrefix);
  append(body, index, 4);
  // Name (_CRS, ResourceTemplate () { Memory32Fixed; Interrupt; EndTag })
  std::vector<uint8_t> res;
  res.push_back(0x86);  // Memory32Fixed, length 9
  append(res, 9, 2);
  res.push_back(1);  // read/write
  append(res, d.base, 4);
  append(res, d.size, 4);
  res.push_back(0x89);  // Extended Interrupt, length 6
  append(res, 6, 2);
  res.push_back(0x03);  // consumer, edge-triggered, active high, exclusive
  res.push_back(1);     // one interrupt
  append(res, d.irq, 4);
  res.push_back(0x79);  // End tag
  res.push_back(0);     // checksum 0: "treat as correct"
  std::vector<uint8_t> buffer;
  buffer.push_back(kAmlWordPrefix);
  append(buffer, res.size(), 2);
  buffer.insert(buffer.end(), res.begin(), res.end());
  body.push_back(kAmlNameOp);
  aml_name_seg(body, "_CRS");
  auto buf = aml_package({kAmlBufferOp}, buffer);
  body.insert(body.end(), buf.begin(), buf.end());
  return aml_package({kAmlExtOpPrefix, kAmlDeviceOp}, body);
}

// COM1 as an ACPI device (PNP0501, ports 0x3f8-0x3ff, ISA IRQ 4). On a hardware-reduced platform
// Linux has no legacy PIC and maps no ISA IRQ by itself: only a device that declares its IRQ
// gets it routed through the IOAPIC, so the UART must be here for its interrupt to work.
std::vector<uint8_t> com1_device_aml() {
  std::vector<uint8_t> body;
  aml_name_seg(body, "COM1");
  body.push_back(kAmlNameOp);
  aml_name_seg(body, "_HID");
  body.push_back(kAmlDWordPrefix);
  append(body, 0x0105d041, 4);  // EisaId("PNP0501"), 16550-compatible UART
  body.push_back(kAmlNameOp);
  aml_name_seg(body, "_UID");
  body.push_back(kAmlDWordPrefix);
  append(body, 1, 4);
  std::vector<uint8_t> res = {
      0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,  // IO(Decode16, 0x3f8, 0x3f8, 1, 8)
      0x22, 0x10, 0x00,                                // IRQNoFlags() {4}
      0x79, 0x00,                                      // End tag
  };
  std::vector<uint8_t> buffer;
  buffer.push_back(kAmlWordPrefix);
  append(buffer, res.size(), 2);
  buffer.insert(buffer.end(), res.begin(), res.end());
  body.push_back(kAmlNameOp);
  aml_name_seg(body, "_CRS");
  auto buf = aml_package({kAmlBufferOp}, buffer);
  body.insert(body.end(), buf.begin(), buf.end());
  return aml_package({kAmlExtOpPrefix, kAmlDeviceOp}, body);
}

}  // namespace

uint8_t acpi_checksum(const uint8_t* data, size_t len) {
  uint8_t sum = 0;
  for (size_t i = 0; i < len; ++i) sum = static_cast<uint8_t>(sum + data[i]);
  return sum;
}

std::vector<uint8_t> aml_pkg_length(size_t length) {
  // The encoded value counts the PkgLength bytes too.
  if (length + 1 < 0x40) return {static_cast<uint8_t>(length + 1)};
  for (size_t extra = 1; extra <= 3; ++extra) {
    size_t total = length + 1 + extra;
    if (total < (size_t{1} << (4 + 8 * extra))) {
      std::vector<uint8_t> out;
      out.push_back(static_cast<uint8_t>((extra << 6) | (total & 0xf)));
      for (size_t i = 0; i < extra; ++i) out.push_back(static_cast<uint8_t>(total >> (4 + 8 * i)));
      return out;
    }
  }
  return {};  // unreachable for tables that fit below 1 MiB
}

std::vector<uint8_t> build_dsdt(const std::vector<MmioDeviceInfo>& devices) {
  auto t = table("DSDT", kHeaderSize, 2);
  std::vector<uint8_t> scope_body;
  scope_body.push_back('\\');
  aml_name_seg(scope_body, "_SB_");
  auto com1 = com1_device_aml();
  scope_body.insert(scope_body.end(), com1.begin(), com1.end());
  for (size_t i = 0; i < devices.size(); ++i) {
    auto dev = virtio_mmio_device_aml(static_cast<unsigned>(i), devices[i]);
    scope_body.insert(scope_body.end(), dev.begin(), dev.end());
  }
  auto scope = aml_package({kAmlScopeOp}, scope_body);
  t.insert(t.end(), scope.begin(), scope.end());
  finish(t);
  return t;
}

std::vector<uint8_t> build_madt(unsigned vcpus) {
  auto t = table("APIC", kHeaderSize, 5);
  append(t, kLapicAddr, 4);
  append(t, 0, 4);  // flags: no PC-AT dual 8259 (hardware-reduced: no legacy PIC)
  for (unsigned i = 0; i < vcpus; ++i) {
    t.push_back(0);  // Processor Local APIC
    t.push_back(8);
    t.push_back(static_cast<uint8_t>(i));  // ACPI processor UID
    t.push_back(static_cast<uint8_t>(i));  // APIC id
    append(t, 1, 4);                       // enabled
  }
  t.push_back(1);  // I/O APIC
  t.push_back(12);
  t.push_back(0);  // I/O APIC id (KVM's in-kernel IOAPIC resets its id register to 0)
  t.push_back(0);
  append(t, kIoapicAddr, 4);
  append(t, 0, 4);  // global system interrupt base
  t.push_back(4);   // Local APIC NMI: all processors, LINT1
  t.push_back(6);
  t.push_back(0xff);
  append(t, 0, 2);
  t.push_back(1);
  finish(t);
  return t;
}

std::vector<uint8_t> build_fadt(uint64_t dsdt_addr) {
  auto t = table("FACP", 276, 6);
  put(t, 40, dsdt_addr, 4);  // DSDT (32-bit)
  // IA-PC boot architecture flags: no VGA, no MSI, no CMOS RTC (so Linux does not probe one),
  // and no 8042 flag (so the i8042 driver does not probe; reboot still uses port 0x64).
  put(t, 109, (1u << 2) | (1u << 3) | (1u << 5), 2);
  // Flags: HW_REDUCED_ACPI, no fixed power button, no fixed sleep button.
  put(t, 112, (1u << 20) | (1u << 4) | (1u << 5), 4);
  t[131] = 5;                                  // FADT minor version (ACPI 6.5)
  put(t, 140, dsdt_addr, 8);                   // X_DSDT
  std::memcpy(t.data() + 268, "AIRLOCKV", 8);  // hypervisor vendor identity
  finish(t);
  return t;
}

std::vector<uint8_t> build_xsdt(const std::vector<uint64_t>& tables) {
  auto t = table("XSDT", kHeaderSize, 1);
  for (uint64_t a : tables) append(t, a, 8);
  finish(t);
  return t;
}

std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr) {
  std::vector<uint8_t> r(36, 0);
  std::memcpy(r.data(), "RSD PTR ", 8);
  std::memcpy(r.data() + 9, kOemId, 6);
  r[15] = 2;          // revision: ACPI 2.0+ (XSDT)
  put(r, 16, 0, 4);   // no RSDT
  put(r, 20, 36, 4);  // length
  put(r, 24, xsdt_addr, 8);
  r[8] = static_cast<uint8_t>(0x100 - acpi_checksum(r.data(), 20));   // ACPI 1.0 part
  r[32] = static_cast<uint8_t>(0x100 - acpi_checksum(r.data(), 36));  // whole structure
  return r;
}

Result<uint64_t> write_acpi_tables(const GuestMemory& mem, unsigned vcpus,
                                   const std::vector<MmioDeviceInfo>& devices) {
  uint64_t next = kAcpiAddr;
  auto place = [&](const std::vector<uint8_t>& t) -> Result<uint64_t> {
    uint64_t at = next;
    if (t.size() > kAcpiEnd - at)
      return Status(Errc::resource_exhausted, "ACPI tables do not fit in the BIOS area");
    AIRLOCK_RETURN_IF_ERROR(mem.write(at, t.data(), t.size()));
    next = (at + t.size() + 15) & ~uint64_t{15};
    return at;
  };
  const uint64_t rsdp_addr = kAcpiAddr;
  next += 64;  // RSDP goes first (Linux also scans 0xe0000..0xfffff for it); written last
  AIRLOCK_ASSIGN_OR_RETURN(uint64_t dsdt, place(build_dsdt(devices)));
  AIRLOCK_ASSIGN_OR_RETURN(uint64_t fadt, place(build_fadt(dsdt)));
  AIRLOCK_ASSIGN_OR_RETURN(uint64_t madt, place(build_madt(vcpus)));
  AIRLOCK_ASSIGN_OR_RETURN(uint64_t xsdt, place(build_xsdt({fadt, madt})));
  auto rsdp = build_rsdp(xsdt);
  AIRLOCK_RETURN_IF_ERROR(mem.write(rsdp_addr, rsdp.data(), rsdp.size()));
  return rsdp_addr;
}

}  // namespace airlock::x86
