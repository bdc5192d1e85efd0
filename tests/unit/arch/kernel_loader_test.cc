#include <doctest/doctest.h>
#include <elf.h>

#include <cstring>
#include <vector>

#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"

using namespace airlock;
using namespace airlock::x86;

namespace {

constexpr uint64_t kMem = 64 << 20;

// A synthetic bzImage: 4 setup sectors + boot sector, then `payload` bytes of "kernel".
std::vector<uint8_t> make_bzimage(size_t payload = 8192, uint16_t version = 0x20f,
                                  uint16_t xloadflags = XLF_KERNEL_64) {
  size_t setup = 5 * 512;
  std::vector<uint8_t> img(setup + payload, 0);
  setup_header h{};
  h.setup_sects = 4;
  h.boot_flag = 0xAA55;
  h.header = 0x53726448;
  h.version = version;
  h.loadflags = LOADED_HIGH;
  h.syssize = static_cast<uint32_t>(payload / 16);
  h.xloadflags = xloadflags;
  h.cmdline_size = 2047;
  h.initrd_addr_max = 0x7fffffff;
  h.pref_address = 0x1000000;
  h.init_size = 0x800000;
  std::memcpy(img.data() + 0x1f1, &h, sizeof h);
  for (size_t i = 0; i < payload; ++i) img[setup + i] = static_cast<uint8_t>(i * 7);
  return img;
}

std::vector<uint8_t> make_elf(uint16_t machine = EM_X86_64, uint64_t paddr = 0x1000000,
                              size_t filesz = 4096, size_t memsz = 8192) {
  std::vector<uint8_t> img(0x1000 + filesz, 0);
  Elf64_Ehdr eh{};
  std::memcpy(eh.e_ident, ELFMAG, SELFMAG);
  eh.e_ident[EI_CLASS] = ELFCLASS64;
  eh.e_ident[EI_DATA] = ELFDATA2LSB;
  eh.e_ident[EI_VERSION] = EV_CURRENT;
  eh.e_type = ET_EXEC;
  eh.e_machine = machine;
  eh.e_entry = paddr;
  eh.e_phoff = sizeof(Elf64_Ehdr);
  eh.e_phentsize = sizeof(Elf64_Phdr);
  eh.e_phnum = 1;
  std::memcpy(img.data(), &eh, sizeof eh);
  Elf64_Phdr ph{};
  ph.p_type = PT_LOAD;
  ph.p_offset = 0x1000;
  ph.p_vaddr = 0xffffffff80000000ull + paddr;
  ph.p_paddr = paddr;
  ph.p_filesz = filesz;
  ph.p_memsz = memsz;
  std::memcpy(img.data() + eh.e_phoff, &ph, sizeof ph);
  for (size_t i = 0; i < filesz; ++i) img[0x1000 + i] = 0xab;
  return img;
}

}  // namespace

TEST_CASE("a valid bzImage loads at 1 MiB with its 64-bit entry") {
  auto mem = GuestMemory::create(kMem);
  REQUIRE(mem.ok());
  auto img = make_bzimage();
  CHECK(validate_bzimage(img).ok());
  auto k = load_kernel(*mem, img, kMem);
  REQUIRE(k.ok());
  CHECK(k->format == KernelFormat::bzimage);
  CHECK(k->load_addr == kHighMemStart);
  CHECK(k->entry == kHighMemStart + 0x200);
  CHECK(k->end == 0x1000000 + 0x800000);  // pref_address + init_size
  CHECK(+k->header.version == 0x20f);
  // The protected-mode code was copied byte for byte.
  CHECK(*mem->read_obj<uint8_t>(kHighMemStart + 3) == 21);
}

TEST_CASE("bzImage validation rejects truncated and foreign images with clear messages") {
  auto img = make_bzimage();
  SUBCASE("too short for a header") {
    std::vector<uint8_t> tiny(img.begin(), img.begin() + 0x100);
    Status st = validate_bzimage(tiny);
    CHECK(st.code() == Errc::bad_image);
    CHECK(st.message().find("truncated") != std::string::npos);
  }
  SUBCASE("payload cut short") {
    img.resize(img.size() - 100);
    Status st = validate_bzimage(img);
    CHECK(st.code() == Errc::bad_image);
    CHECK(st.message().find("truncated") != std::string::npos);
  }
  SUBCASE("wrong magic") {
    img[0x202] = 'X';
    Status st = validate_bzimage(img);
    CHECK(st.code() == Errc::bad_image);
    CHECK(st.message().find("HdrS") != std::string::npos);
  }
  SUBCASE("protocol too old") {
    auto old = make_bzimage(8192, 0x205);
    Status st = validate_bzimage(old);
    CHECK(st.code() == Errc::bad_image);
    CHECK(st.message().find("2.05") != std::string::npos);
    CHECK(st.message().find("2.06") != std::string::npos);
  }
  SUBCASE("no 64-bit entry") {
    auto no64 = make_bzimage(8192, 0x20f, 0);
    Status st = validate_bzimage(no64);
    CHECK(st.code() == Errc::bad_image);
    CHECK(st.message().find("XLF_KERNEL_64") != std::string::npos);
  }
  SUBCASE("garbage") {
    std::vector<uint8_t> junk(100000, 0x5a);
    auto mem = GuestMemory::create(kMem);
    auto k = load_kernel(*mem, junk, kMem);
    CHECK(k.status().code() == Errc::bad_image);
  }
}

TEST_CASE("a bzImage whose decompression area exceeds RAM is refused") {
  auto mem = GuestMemory::create(16 << 20);
  REQUIRE(mem.ok());
  auto k = load_bzimage(*mem, make_bzimage(), 16 << 20);
  CHECK(k.status().code() == Errc::resource_exhausted);
  CHECK(k.status().message().find("more memory") != std::string::npos);
}

TEST_CASE("an x86_64 ELF vmlinux loads its segments at their physical addresses") {
  auto mem = GuestMemory::create(kMem);
  REQUIRE(mem.ok());
  // Dirty the bss area first: the loader must zero it.
  REQUIRE(mem->write_obj<uint32_t>(0x1000000 + 4096 + 8, 0xffffffff).ok());
  auto k = load_kernel(*mem, make_elf(), kMem);
  REQUIRE(k.ok());
  CHECK(k->format == KernelFormat::elf);
  CHECK(k->entry == 0x1000000);
  CHECK(k->end == 0x1000000 + 8192);
  CHECK(*mem->read_obj<uint8_t>(0x1000000) == 0xab);
  CHECK(*mem->read_obj<uint32_t>(0x1000000 + 4096 + 8) == 0);
  CHECK(+k->header.header == 0x53726448);
  CHECK((k->header.xloadflags & XLF_KERNEL_64) != 0);
}

TEST_CASE("ELF kernels of another machine, truncated or outside RAM are refused") {
  auto mem = GuestMemory::create(kMem);
  REQUIRE(mem.ok());
  auto arm = load_kernel(*mem, make_elf(EM_AARCH64), kMem);
  CHECK(arm.status().code() == Errc::bad_image);
  CHECK(arm.status().message().find("not x86_64") != std::string::npos);

  auto img = make_elf();
  img.resize(0x1000 + 100);
  auto cut = load_kernel(*mem, img, kMem);
  CHECK(cut.status().code() == Errc::bad_image);
  CHECK(cut.status().message().find("truncated") != std::string::npos);

  auto high = load_kernel(*mem, make_elf(EM_X86_64, kMem - 4096), kMem);
  CHECK(high.status().code() == Errc::resource_exhausted);

  std::vector<uint8_t> stub = {0x7f, 'E', 'L', 'F', 2};
  CHECK(load_kernel(*mem, stub, kMem).status().code() == Errc::bad_image);
}

namespace {

// make_elf() plus a section table with one allocated SHT_NOBITS section covering file bytes
// [nobits_off, nobits_off + nobits_len) of the segment (which hold 0xab, not zeros).
std::vector<uint8_t> make_elf_with_nobits(uint64_t nobits_off, uint64_t nobits_len) {
  auto img = make_elf(EM_X86_64, 0x1000000, 3 * 4096, 4 * 4096);
  Elf64_Ehdr eh;
  std::memcpy(&eh, img.data(), sizeof eh);
  Elf64_Phdr ph;
  std::memcpy(&ph, img.data() + eh.e_phoff, sizeof ph);
  Elf64_Shdr sh[2]{};  // [0] is the null section
  sh[1].sh_type = SHT_NOBITS;
  sh[1].sh_flags = SHF_ALLOC | SHF_WRITE;
  sh[1].sh_addr = ph.p_vaddr + nobits_off;
  sh[1].sh_offset = ph.p_offset + nobits_off;
  sh[1].sh_size = nobits_len;
  eh.e_shoff = img.size();
  eh.e_shentsize = sizeof(Elf64_Shdr);
  eh.e_shnum = 2;
  std::memcpy(img.data(), &eh, sizeof eh);
  img.resize(img.size() + sizeof sh);
  std::memcpy(img.data() + eh.e_shoff, sh, sizeof sh);
  return img;
}

}  // namespace

TEST_CASE("on zeroed RAM an ELF kernel's NOBITS sections and bss are not written") {
  auto img = make_elf_with_nobits(4096, 4096);
  uint64_t copied = 0;
  ImageCopy count = [&](const GuestMemory& m, uint64_t gpa, const uint8_t* src, size_t len) {
    copied += len;
    return m.write(gpa, src, len);
  };
  auto fresh = GuestMemory::create(kMem);
  REQUIRE(fresh.ok());
  auto k = load_kernel(*fresh, img, kMem, count, /*ram_is_zero=*/true);
  REQUIRE(k.ok());
  CHECK(copied == 2 * 4096);  // the NOBITS page is left out
  CHECK(*fresh->read_obj<uint8_t>(0x1000000) == 0xab);
  CHECK(*fresh->read_obj<uint8_t>(0x1000000 + 4096) == 0);
  CHECK(*fresh->read_obj<uint8_t>(0x1000000 + 2 * 4096) == 0xab);
  CHECK(k->end == 0x1000000 + 4 * 4096);

  // Without the promise every file byte is copied and the bss zeroed over old contents.
  copied = 0;
  auto dirty = GuestMemory::create(kMem);
  REQUIRE(dirty.ok());
  REQUIRE(dirty->write_obj<uint32_t>(0x1000000 + 3 * 4096 + 8, 0xffffffff).ok());
  REQUIRE(load_kernel(*dirty, img, kMem, count).ok());
  CHECK(copied == 3 * 4096);
  CHECK(*dirty->read_obj<uint8_t>(0x1000000 + 4096) == 0xab);
  CHECK(*dirty->read_obj<uint32_t>(0x1000000 + 3 * 4096 + 8) == 0);
}

TEST_CASE(
    "NOBITS ranges reaching outside the segment's file bytes, or a bad section table, are copied") {
  // Straddles the end of the file bytes (into the bss): not wholly inside, so copied.
  auto straddle = make_elf_with_nobits(2 * 4096, 2 * 4096);
  auto mem = GuestMemory::create(kMem);
  REQUIRE(mem.ok());
  REQUIRE(load_kernel(*mem, straddle, kMem, {}, true).ok());
  CHECK(*mem->read_obj<uint8_t>(0x1000000 + 2 * 4096) == 0xab);

  // A section table pointing past the end of the file is ignored, not an error.
  auto bad = make_elf_with_nobits(4096, 4096);
  Elf64_Ehdr eh;
  std::memcpy(&eh, bad.data(), sizeof eh);
  eh.e_shoff = bad.size() - 8;
  std::memcpy(bad.data(), &eh, sizeof eh);
  auto mem2 = GuestMemory::create(kMem);
  REQUIRE(mem2.ok());
  REQUIRE(load_kernel(*mem2, bad, kMem, {}, true).ok());
  CHECK(*mem2->read_obj<uint8_t>(0x1000000 + 4096) == 0xab);
}
