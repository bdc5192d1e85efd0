#include "kvm/kvm.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include <fmt/format.h>

#include "base/log.h"

namespace airlock::kvm {

const RequiredCap kRequiredCaps[] = {
    {KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
    {KVM_CAP_IRQCHIP, "KVM_CAP_IRQCHIP"},
    {KVM_CAP_PIT2, "KVM_CAP_PIT2"},
    {KVM_CAP_SET_TSS_ADDR, "KVM_CAP_SET_TSS_ADDR"},
    {KVM_CAP_SET_IDENTITY_MAP_ADDR, "KVM_CAP_SET_IDENTITY_MAP_ADDR"},
    {KVM_CAP_EXT_CPUID, "KVM_CAP_EXT_CPUID"},
    {KVM_CAP_IRQFD, "KVM_CAP_IRQFD"},
    {KVM_CAP_IOEVENTFD, "KVM_CAP_IOEVENTFD"},
    {KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"},
};
const size_t kNumRequiredCaps = sizeof(kRequiredCaps) / sizeof(kRequiredCaps[0]);

namespace {

// <linux/kvm.h> declares the variable-length structs (kvm_cpuid2, kvm_msrs) with
// __DECLARE_FLEX_ARRAY, which in C++ adds a 1-byte empty struct: sizeof and the entries' offset
// differ from C, and so do the ioctl numbers that encode sizeof. We use the C layout explicitly:
// an 8-byte header (count + padding) followed by the entries.
constexpr size_t kVarHeaderSize = 8;
constexpr unsigned long kIocGetSupportedCpuid = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, 8);
constexpr unsigned long kIocSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, 8);
constexpr unsigned long kIocGetMsrs = _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x88, 8);
constexpr unsigned long kIocSetMsrs = _IOC(_IOC_WRITE, KVMIO, 0x89, 8);
static_assert(kIocGetSupportedCpuid == 0xc008ae05ul && kIocSetCpuid2 == 0x4008ae90ul &&
              kIocGetMsrs == 0xc008ae88ul && kIocSetMsrs == 0x4008ae89ul);

// A C-layout variable-length ioctl argument: u32 count, u32 padding, then `n` entries of T.
template <class T>
struct VarBuffer {
  explicit VarBuffer(size_t n) : count(n), buf(new uint8_t[kVarHeaderSize + n * sizeof(T)]()) {
    uint32_t c = static_cast<uint32_t>(n);
    std::memcpy(buf.get(), &c, sizeof c);
  }
  void* arg() { return buf.get(); }
  uint32_t header_count() const {
    uint32_t c;
    std::memcpy(&c, buf.get(), sizeof c);
    return c;
  }
  T* entries() { return reinterpret_cast<T*>(buf.get() + kVarHeaderSize); }
  size_t count;
  std::unique_ptr<uint8_t[]> buf;
};

// ioctl retried on EINTR, for calls that are not KVM_RUN.
int xioctl(int fd, unsigned long req, const void* arg) {
  int r;
  do {
    r = ::ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

int xioctl(int fd, unsigned long req, unsigned long arg) {
  int r;
  do {
    r = ::ioctl(fd, req, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

}  // namespace

// ---- Kvm ----

Result<Kvm> Kvm::open(const char* path) {
  int fd = ::open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      return Status(Errc::unavailable,
                    fmt::format("no {}: KVM is not available here; use scripts/kvm-run", path));
    if (err == EACCES || err == EPERM)
      return Status(Errc::permission_denied,
                    fmt::format("cannot open {}: permission denied (need read/write access, "
                                "e.g. membership of the kvm group)",
                                path));
    return errno_status(err, fmt::format("open {}", path));
  }
  Kvm kvm;
  kvm.fd_.reset(fd);
  int version = kvm.api_version();
  if (version != KVM_API_VERSION)
    return Status(Errc::unavailable, fmt::format("{}: KVM API version {} (airlock needs {})", path,
                                                 version, KVM_API_VERSION));
  // PVM (Pagetable-based VM) provides /dev/kvm without hardware virtualization; ordinary
  // kernels run under it, but every access to their own memory is emulated: minutes to boot.
  if (::access("/sys/module/kvm_pvm", F_OK) == 0)
    AIRLOCK_LOG_WARN("kvm",
                     "{} is PVM (kvm_pvm): a stock Linux guest boots extremely slowly here; "
                     "prefer hardware KVM (scripts/kvm-run picks the nested runner)",
                     path);
  for (size_t i = 0; i < kNumRequiredCaps; ++i) {
    if (kvm.check_extension(kRequiredCaps[i].cap) <= 0)
      return Status(Errc::unavailable, fmt::format("{}: KVM lacks required capability {}", path,
                                                   kRequiredCaps[i].name));
  }
  return kvm;
}

int Kvm::api_version() const {
  return xioctl(fd_.get(), KVM_GET_API_VERSION, 0ul);
}

int Kvm::check_extension(int cap) const {
  return xioctl(fd_.get(), KVM_CHECK_EXTENSION, static_cast<unsigned long>(cap));
}

Result<int> Kvm::vcpu_mmap_size() const {
  int r = xioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0ul);
  if (r < 0) return errno_status("KVM_GET_VCPU_MMAP_SIZE");
  if (r < static_cast<int>(sizeof(kvm_run)))
    return Status(Errc::unavailable, "KVM_GET_VCPU_MMAP_SIZE smaller than struct kvm_run");
  return r;
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  // The ioctl fails with E2BIG until the buffer is large enough.
  for (uint32_t n = 64; n <= 4096; n *= 2) {
    VarBuffer<kvm_cpuid_entry2> b(n);
    if (xioctl(fd_.get(), kIocGetSupportedCpuid, b.arg()) == 0) {
      uint32_t got = std::min<uint32_t>(b.header_count(), n);
      return std::vector<kvm_cpuid_entry2>(b.entries(), b.entries() + got);
    }
    if (errno != E2BIG) return errno_status("KVM_GET_SUPPORTED_CPUID");
  }
  return Status(Errc::unavailable, "KVM_GET_SUPPORTED_CPUID: too many entries");
}

Result<VmFd> Kvm::create_vm() const {
  AIRLOCK_ASSIGN_OR_RETURN(int mmap_size, vcpu_mmap_size());
  int fd = xioctl(fd_.get(), KVM_CREATE_VM, 0ul);
  if (fd < 0) return errno_status("KVM_CREATE_VM");
  return VmFd(UniqueFd(fd), mmap_size);
}

// ---- VmFd ----

Status VmFd::set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size, void* host,
                                    uint32_t flags) const {
  kvm_userspace_memory_region r{};
  r.slot = slot;
  r.flags = flags;
  r.guest_phys_addr = guest_addr;
  r.memory_size = size;
  r.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (xioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &r) < 0)
    return errno_status(fmt::format("KVM_SET_USER_MEMORY_REGION slot {}", slot));
  return ok_status();
}

Status VmFd::set_tss_addr(uint64_t addr) const {
  if (xioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(addr)) < 0)
    return errno_status("KVM_SET_TSS_ADDR");
  return ok_status();
}

Status VmFd::set_identity_map_addr(uint64_t addr) const {
  uint64_t a = addr;
  if (xioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &a) < 0)
    return errno_status("KVM_SET_IDENTITY_MAP_ADDR");
  return ok_status();
}

Status VmFd::create_irqchip() const {
  if (xioctl(fd_.get(), KVM_CREATE_IRQCHIP, 0ul) < 0) return errno_status("KVM_CREATE_IRQCHIP");
  return ok_status();
}

Status VmFd::create_pit2(uint32_t flags) const {
  kvm_pit_config c{};
  c.flags = flags;
  if (xioctl(fd_.get(), KVM_CREATE_PIT2, &c) < 0) return errno_status("KVM_CREATE_PIT2");
  return ok_status();
}

Status VmFd::irq_line(uint32_t irq, bool level) const {
  kvm_irq_level l{};
  l.irq = irq;
  l.level = level ? 1 : 0;
  if (xioctl(fd_.get(), KVM_IRQ_LINE, &l) < 0) return errno_status("KVM_IRQ_LINE");
  return ok_status();
}

Status VmFd::irqfd(int event_fd, uint32_t gsi, bool deassign) const {
  kvm_irqfd f{};
  f.fd = static_cast<uint32_t>(event_fd);
  f.gsi = gsi;
  f.flags = deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0;
  if (xioctl(fd_.get(), KVM_IRQFD, &f) < 0)
    return errno_status(fmt::format("KVM_IRQFD gsi {}", gsi));
  return ok_status();
}

Status VmFd::ioeventfd(int event_fd, uint64_t addr, uint32_t len, const uint64_t* datamatch,
                       bool deassign) const {
  kvm_ioeventfd e{};
  e.addr = addr;
  e.len = len;
  e.fd = event_fd;
  if (datamatch) {
    e.datamatch = *datamatch;
    e.flags |= KVM_IOEVENTFD_FLAG_DATAMATCH;
  }
  if (deassign) e.flags |= KVM_IOEVENTFD_FLAG_DEASSIGN;
  if (xioctl(fd_.get(), KVM_IOEVENTFD, &e) < 0)
    return errno_status(fmt::format("KVM_IOEVENTFD at {:#x}", addr));
  return ok_status();
}

Result<VcpuFd> VmFd::create_vcpu(unsigned id) const {
  int fd = xioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (fd < 0) return errno_status(fmt::format("KVM_CREATE_VCPU {}", id));
  UniqueFd owned(fd);
  void* p =
      ::mmap(nullptr, static_cast<size_t>(mmap_size_), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return errno_status(fmt::format("mmap kvm_run of vCPU {}", id));
  return VcpuFd(std::move(owned), static_cast<kvm_run*>(p), static_cast<size_t>(mmap_size_));
}

// ---- VcpuFd ----

VcpuFd::VcpuFd(VcpuFd&& o) noexcept
    : fd_(std::move(o.fd_)),
      run_(std::exchange(o.run_, nullptr)),
      run_size_(std::exchange(o.run_size_, 0)) {}

VcpuFd& VcpuFd::operator=(VcpuFd&& o) noexcept {
  if (this != &o) {
    if (run_) ::munmap(run_, run_size_);
    fd_ = std::move(o.fd_);
    run_ = std::exchange(o.run_, nullptr);
    run_size_ = std::exchange(o.run_size_, 0);
  }
  return *this;
}

VcpuFd::~VcpuFd() {
  if (run_) ::munmap(run_, run_size_);
}

Status VcpuFd::run() const {
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    int err = errno;
    if (err == EINTR || err == EAGAIN) return Status(Errc::cancelled, "KVM_RUN interrupted");
    return errno_status(err, "KVM_RUN");
  }
  return ok_status();
}

void VcpuFd::set_immediate_exit(bool on) const {
  // kvm_run is shared with the kernel; a relaxed atomic store is what the ABI expects.
  __atomic_store_n(&run_->immediate_exit, on ? 1 : 0, __ATOMIC_SEQ_CST);
}

Result<kvm_regs> VcpuFd::get_regs() const {
  kvm_regs r{};
  if (xioctl(fd_.get(), KVM_GET_REGS, &r) < 0) return errno_status("KVM_GET_REGS");
  return r;
}

Status VcpuFd::set_regs(const kvm_regs& regs) const {
  if (xioctl(fd_.get(), KVM_SET_REGS, &regs) < 0) return errno_status("KVM_SET_REGS");
  return ok_status();
}

Result<kvm_sregs> VcpuFd::get_sregs() const {
  kvm_sregs s{};
  if (xioctl(fd_.get(), KVM_GET_SREGS, &s) < 0) return errno_status("KVM_GET_SREGS");
  return s;
}

Status VcpuFd::set_sregs(const kvm_sregs& sregs) const {
  if (xioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0) return errno_status("KVM_SET_SREGS");
  return ok_status();
}

Result<kvm_fpu> VcpuFd::get_fpu() const {
  kvm_fpu f{};
  if (xioctl(fd_.get(), KVM_GET_FPU, &f) < 0) return errno_status("KVM_GET_FPU");
  return f;
}

Status VcpuFd::set_fpu(const kvm_fpu& fpu) const {
  if (xioctl(fd_.get(), KVM_SET_FPU, &fpu) < 0) return errno_status("KVM_SET_FPU");
  return ok_status();
}

Status VcpuFd::set_msrs(const std::vector<kvm_msr_entry>& msrs) const {
  VarBuffer<kvm_msr_entry> b(msrs.size());
  std::memcpy(b.entries(), msrs.data(), msrs.size() * sizeof(kvm_msr_entry));
  int r = xioctl(fd_.get(), kIocSetMsrs, b.arg());
  if (r < 0) return errno_status("KVM_SET_MSRS");
  // KVM returns the number of MSRs set; it stops at the first one it refuses.
  if (static_cast<size_t>(r) != msrs.size())
    return Status(Errc::unavailable, fmt::format("KVM_SET_MSRS refused MSR {:#x}",
                                                 msrs[static_cast<size_t>(r)].index));
  return ok_status();
}

Result<std::vector<kvm_msr_entry>> VcpuFd::get_msrs(const std::vector<uint32_t>& indices) const {
  VarBuffer<kvm_msr_entry> b(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) b.entries()[i].index = indices[i];
  int r = xioctl(fd_.get(), kIocGetMsrs, b.arg());
  if (r < 0) return errno_status("KVM_GET_MSRS");
  if (static_cast<size_t>(r) != indices.size())
    return Status(Errc::unavailable,
                  fmt::format("KVM_GET_MSRS refused MSR {:#x}", indices[static_cast<size_t>(r)]));
  return std::vector<kvm_msr_entry>(b.entries(), b.entries() + indices.size());
}

Status VcpuFd::set_cpuid2(const std::vector<kvm_cpuid_entry2>& entries) const {
  VarBuffer<kvm_cpuid_entry2> b(entries.size());
  std::memcpy(b.entries(), entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (xioctl(fd_.get(), kIocSetCpuid2, b.arg()) < 0) return errno_status("KVM_SET_CPUID2");
  return ok_status();
}

Result<kvm_lapic_state> VcpuFd::get_lapic() const {
  kvm_lapic_state s{};
  if (xioctl(fd_.get(), KVM_GET_LAPIC, &s) < 0) return errno_status("KVM_GET_LAPIC");
  return s;
}

Status VcpuFd::set_lapic(const kvm_lapic_state& lapic) const {
  if (xioctl(fd_.get(), KVM_SET_LAPIC, &lapic) < 0) return errno_status("KVM_SET_LAPIC");
  return ok_status();
}

}  // namespace airlock::kvm
