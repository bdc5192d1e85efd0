#include "arch/x86_64/kernel_loader.h"

#include <elf.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "arch/x86_64/layout.h"

namespace airlock::x86 {

namespace {

constexpr uint64_t kSetupHeaderOffset = 0x1f1;
constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS"
constexpr uint16_t kMinProtocol = 0x206;     // cmdline_size first appears in 2.06

Status bad(std::string msg) {
  return Status(Errc::bad_image, std::move(msg));
}

bool is_elf(std::span<const uint8_t> image) {
  return image.size() >= 4 && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

setup_header read_header(std::span<const uint8_t> image) {
  setup_header h{};
  std::memcpy(&h, image.data() + kSetupHeaderOffset, sizeof h);
  return h;
}

Status copy_image(const ImageCopy& copy, const GuestMemory& mem, uint64_t gpa, const uint8_t* src,
                  size_t len) {
  if (copy) return copy(mem, gpa, src, len);
  return mem.write(gpa, src, len);
}

// Virtual address ranges [lo, hi) of allocated SHT_NOBITS sections, sorted; at most kMax of
// them (a vmlinux has 3), any further ones are simply copied. A fixed array, not a vector:
// the machine loads on a thread of its own, and a first malloc() there would give that thread
// a malloc arena, whose first (transparent huge) page alone is 2 MiB of VMM RSS.
struct SkipRanges {
  static constexpr size_t kMax = 16;
  std::array<std::pair<uint64_t, uint64_t>, kMax> r{};
  size_t n = 0;
  const std::pair<uint64_t, uint64_t>* begin() const { return r.data(); }
  const std::pair<uint64_t, uint64_t>* end() const { return r.data() + n; }
};

// Section headers are optional for loading: a missing or malformed table yields no ranges
// (everything is then copied), never an error.
SkipRanges nobits_ranges(std::span<const uint8_t> image, const Elf64_Ehdr& eh) {
  SkipRanges out;
  if (eh.e_shoff == 0 || eh.e_shentsize != sizeof(Elf64_Shdr) || eh.e_shnum == 0 ||
      eh.e_shnum > 4096 || eh.e_shoff > image.size() ||
      uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr) > image.size() - eh.e_shoff)
    return out;
  for (unsigned i = 0; i < eh.e_shnum && out.n < SkipRanges::kMax; ++i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, image.data() + eh.e_shoff + i * sizeof(Elf64_Shdr), sizeof sh);
    if (sh.sh_type != SHT_NOBITS || !(sh.sh_flags & SHF_ALLOC) || sh.sh_size == 0) continue;
    if (sh.sh_addr > UINT64_MAX - sh.sh_size) continue;
    out.r[out.n++] = {sh.sh_addr, sh.sh_addr + sh.sh_size};
  }
  std::sort(out.r.begin(), out.r.begin() + static_cast<std::ptrdiff_t>(out.n));
  return out;
}

// Copies segment `ph`'s file bytes to its physical address, leaving out the `skip` ranges
// (virtual, sorted) that lie wholly inside the segment's file range.
Status copy_segment(const ImageCopy& copy, const GuestMemory& mem, std::span<const uint8_t> image,
                    const Elf64_Phdr& ph, const SkipRanges& skip) {
  uint64_t pos = 0;  // offset into the segment's file bytes
  if (ph.p_vaddr <= UINT64_MAX - ph.p_filesz) {
    for (const auto& [lo, hi] : skip) {
      if (lo < ph.p_vaddr + pos || hi > ph.p_vaddr + ph.p_filesz) continue;
      uint64_t a = lo - ph.p_vaddr, b = hi - ph.p_vaddr;
      if (a > pos)
        AIRLOCK_RETURN_IF_ERROR(
            copy_image(copy, mem, ph.p_paddr + pos, image.data() + ph.p_offset + pos, a - pos));
      pos = b;
    }
  }
  if (pos < ph.p_filesz)
    AIRLOCK_RETURN_IF_ERROR(copy_image(copy, mem, ph.p_paddr + pos,
                                       image.data() + ph.p_offset + pos, ph.p_filesz - pos));
  return ok_status();
}

}  // namespace

Status validate_bzimage(std::span<const uint8_t> image) {
  if (image.size() < kSetupHeaderOffset + sizeof(setup_header))
    return bad(
        fmt::format("kernel image truncated or not a kernel at all (not a bzImage or ELF "
                    "vmlinux): {} bytes is smaller than a bzImage setup header",
                    image.size()));
  setup_header h = read_header(image);
  if (h.header != kHdrSMagic)
    return bad("not a bzImage: no \"HdrS\" magic at offset 0x202 (and not an ELF vmlinux)");
  if (h.boot_flag != 0xAA55) return bad("not a bzImage: boot flag 0xAA55 missing at offset 0x1fe");
  if (h.version < kMinProtocol)
    return bad(fmt::format("bzImage boot protocol {}.{:02} is too old: airlock needs 2.06 or later",
                           h.version >> 8, h.version & 0xff));
  // xloadflags exists from 2.12; without XLF_KERNEL_64 there is no 64-bit entry point.
  if (h.version < 0x20c || !(h.xloadflags & XLF_KERNEL_64))
    return bad(
        fmt::format("bzImage (boot protocol {}.{:02}) has no 64-bit entry point "
                    "(XLF_KERNEL_64 not set in xloadflags): airlock boots 64-bit kernels only",
                    h.version >> 8, h.version & 0xff));
  if (!(h.loadflags & LOADED_HIGH))
    return bad("bzImage is not loadable at 1 MiB (LOADED_HIGH clear)");
  uint64_t setup_sects = h.setup_sects == 0 ? 4 : h.setup_sects;
  uint64_t payload_off = (setup_sects + 1) * 512;
  uint64_t payload_len = static_cast<uint64_t>(h.syssize) * 16;
  if (payload_off >= image.size() || payload_len == 0 || payload_len > image.size() - payload_off)
    return bad(
        fmt::format("bzImage truncated: header announces {} bytes of kernel after {} bytes "
                    "of setup, file has {} bytes",
                    payload_len, payload_off, image.size()));
  if (h.init_size == 0) return bad("bzImage has init_size 0");
  return ok_status();
}

Result<LoadedKernel> load_bzimage(const GuestMemory& mem, std::span<const uint8_t> image,
                                  uint64_t ram_end, const ImageCopy& copy) {
  AIRLOCK_RETURN_IF_ERROR(validate_bzimage(image));
  setup_header h = read_header(image);
  uint64_t setup_sects = h.setup_sects == 0 ? 4 : h.setup_sects;
  uint64_t payload_off = (setup_sects + 1) * 512;
  uint64_t payload_len = image.size() - payload_off;
  // The decompressor runs in place when loaded at or above pref_address, else it moves its
  // output up to pref_address; either way it needs init_size bytes there.
  uint64_t load = kHighMemStart;
  uint64_t end =
      std::max(load + payload_len, std::max<uint64_t>(load, h.pref_address) + h.init_size);
  if (end > ram_end)
    return Status(Errc::resource_exhausted,
                  fmt::format("kernel needs memory up to {} MiB but the guest has {} MiB below "
                              "the MMIO hole: give the machine more memory",
                              (end + (1 << 20) - 1) >> 20, ram_end >> 20));
  AIRLOCK_RETURN_IF_ERROR(copy_image(copy, mem, load, image.data() + payload_off, payload_len));
  LoadedKernel k;
  k.format = KernelFormat::bzimage;
  k.load_addr = load;
  k.entry = load + 0x200;  // 64-bit entry: startup_64 is 512 bytes into the protected-mode code
  k.end = end;
  k.header = h;
  return k;
}

Result<LoadedKernel> load_elf(const GuestMemory& mem, std::span<const uint8_t> image,
                              uint64_t ram_end, const ImageCopy& copy, bool ram_is_zero) {
  if (image.size() < sizeof(Elf64_Ehdr))
    return bad(fmt::format("ELF kernel truncated: {} bytes", image.size()));
  Elf64_Ehdr eh;
  std::memcpy(&eh, image.data(), sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return bad("not an ELF file");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_ident[EI_DATA] != ELFDATA2LSB)
    return bad("ELF kernel is not a 64-bit little-endian image");
  if (eh.e_machine != EM_X86_64)
    return bad(fmt::format("ELF kernel is for machine {} (e_machine), not x86_64 ({})",
                           eh.e_machine, EM_X86_64));
  if (eh.e_type != ET_EXEC) return bad("ELF kernel is not an executable (e_type != ET_EXEC)");
  if (eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum == 0 || eh.e_phnum > 64)
    return bad("ELF kernel has a malformed program header table");
  uint64_t ph_end = eh.e_phoff + uint64_t{eh.e_phnum} * sizeof(Elf64_Phdr);
  if (eh.e_phoff > image.size() || ph_end > image.size())
    return bad("ELF kernel truncated: program headers lie past the end of the file");

  SkipRanges skip;
  if (ram_is_zero) skip = nobits_ranges(image, eh);

  LoadedKernel k;
  k.format = KernelFormat::elf;
  k.load_addr = UINT64_MAX;
  bool entry_found = false;
  for (unsigned i = 0; i < eh.e_phnum; ++i) {
    Elf64_Phdr ph;
    std::memcpy(&ph, image.data() + eh.e_phoff + i * sizeof(Elf64_Phdr), sizeof ph);
    if (ph.p_type != PT_LOAD) continue;
    if (ph.p_filesz > ph.p_memsz) return bad(fmt::format("ELF segment {}: filesz > memsz", i));
    if (ph.p_offset > image.size() || ph.p_filesz > image.size() - ph.p_offset)
      return bad(fmt::format("ELF kernel truncated: segment {} lies past the end of the file", i));
    if (ph.p_paddr < kHighMemStart || ph.p_memsz > ram_end || ph.p_paddr > ram_end - ph.p_memsz)
      return Status(Errc::resource_exhausted,
                    fmt::format("ELF segment {} at {:#x}+{:#x} does not fit in guest RAM below "
                                "{:#x}: give the machine more memory",
                                i, ph.p_paddr, ph.p_memsz, ram_end));
    AIRLOCK_RETURN_IF_ERROR(copy_segment(copy, mem, image, ph, skip));
    if (ph.p_memsz > ph.p_filesz && !ram_is_zero) {
      uint8_t* bss = mem.host_ptr(ph.p_paddr + ph.p_filesz, ph.p_memsz - ph.p_filesz);
      if (!bss) return Status(Errc::internal, "ELF bss outside guest memory");
      std::memset(bss, 0, ph.p_memsz - ph.p_filesz);
    }
    k.load_addr = std::min(k.load_addr, ph.p_paddr);
    k.end = std::max(k.end, ph.p_paddr + ph.p_memsz);
    // e_entry is physical for vmlinux (ENTRY(phys_startup_64)); accept a virtual one too.
    if (eh.e_entry >= ph.p_paddr && eh.e_entry - ph.p_paddr < ph.p_memsz) {
      k.entry = eh.e_entry;
      entry_found = true;
    } else if (eh.e_entry >= ph.p_vaddr && eh.e_entry - ph.p_vaddr < ph.p_memsz && !entry_found) {
      k.entry = ph.p_paddr + (eh.e_entry - ph.p_vaddr);
      entry_found = true;
    }
  }
  if (k.end == 0) return bad("ELF kernel has no PT_LOAD segment");
  if (!entry_found) return bad("ELF kernel entry point lies outside its loaded segments");

  // The kernel reads a few setup header fields from boot_params; fill what a bzImage would have.
  setup_header& h = k.header;
  h.boot_flag = 0xAA55;
  h.header = kHdrSMagic;
  h.version = 0x20f;
  h.loadflags = LOADED_HIGH;
  h.xloadflags = XLF_KERNEL_64;
  h.kernel_alignment = 0x1000000;
  h.initrd_addr_max = 0x7fffffff;
  h.cmdline_size = 2047;
  return k;
}

Result<LoadedKernel> load_kernel(const GuestMemory& mem, std::span<const uint8_t> image,
                                 uint64_t ram_end, const ImageCopy& copy, bool ram_is_zero) {
  if (is_elf(image)) return load_elf(mem, image, ram_end, copy, ram_is_zero);
  return load_bzimage(mem, image, ram_end, copy);
}

}  // namespace airlock::x86
