// Thin wrappers over the KVM ioctls of <linux/kvm.h>: Kvm (/dev/kvm) -> VmFd -> VcpuFd, one
// method per ioctl, every failure a Status (never abort). No policy lives here; the machine
// (src/vmm) decides what to create and in which order.
//
// Threads: Kvm and VmFd methods may be called from any thread (the kernel serialises them).
// A VcpuFd's run/get/set methods belong to the thread that runs that vCPU, except
// set_immediate_exit(), which any thread may call to kick the vCPU out of KVM_RUN.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "airlock/status.hpp"
#include "base/fd.h"

namespace airlock::kvm {

class VmFd;
class VcpuFd;

// Capabilities airlock cannot work without; Kvm::open() checks each.
struct RequiredCap {
  int cap;
  const char* name;
};
extern const RequiredCap kRequiredCaps[];
extern const size_t kNumRequiredCaps;

class Kvm {
 public:
  // Opens /dev/kvm (or `path`), checks the API version (12) and the required capabilities.
  // Missing device -> Errc::unavailable, no access -> Errc::permission_denied.
  static Result<Kvm> open(const char* path = "/dev/kvm");

  int api_version() const;
  // KVM_CHECK_EXTENSION: <= 0 means unsupported.
  int check_extension(int cap) const;
  Result<int> vcpu_mmap_size() const;
  // KVM_GET_SUPPORTED_CPUID: every leaf KVM can expose.
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  Result<VmFd> create_vm() const;

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

class VmFd {
 public:
  explicit VmFd(UniqueFd fd, int vcpu_mmap_size) : fd_(std::move(fd)), mmap_size_(vcpu_mmap_size) {}

  Status set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size, void* host,
                                uint32_t flags = 0) const;
  Status set_tss_addr(uint64_t addr) const;
  Status set_identity_map_addr(uint64_t addr) const;
  Status create_irqchip() const;
  Status create_pit2(uint32_t flags = 0) const;
  // KVM_IRQ_LINE: level 1/0 on GSI `irq` (both the PIC and the IOAPIC pin).
  Status irq_line(uint32_t irq, bool level) const;
  // KVM_IRQFD: a write to `event_fd` raises `gsi` (edge).
  Status irqfd(int event_fd, uint32_t gsi, bool deassign = false) const;
  // KVM_IOEVENTFD on an MMIO address, matching a `len`-byte write of `datamatch` if given.
  Status ioeventfd(int event_fd, uint64_t addr, uint32_t len, const uint64_t* datamatch,
                   bool deassign = false) const;
  Result<VcpuFd> create_vcpu(unsigned id) const;

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  int mmap_size_ = 0;
};

class VcpuFd {
 public:
  VcpuFd(UniqueFd fd, kvm_run* run, size_t run_size)
      : fd_(std::move(fd)), run_(run), run_size_(run_size) {}
  VcpuFd(VcpuFd&& o) noexcept;
  VcpuFd& operator=(VcpuFd&& o) noexcept;
  VcpuFd(const VcpuFd&) = delete;
  VcpuFd& operator=(const VcpuFd&) = delete;
  ~VcpuFd();

  // KVM_RUN. Returns ok on a normal exit (read run()->exit_reason); Errc::cancelled when
  // interrupted by a signal or immediate_exit (EINTR/EAGAIN), so the caller can check its stop
  // flag.
  Status run() const;
  kvm_run* run_struct() const { return run_; }
  // Makes the next (or current, together with a signal) KVM_RUN return at once.
  void set_immediate_exit(bool on) const;

  Result<kvm_regs> get_regs() const;
  Status set_regs(const kvm_regs& regs) const;
  Result<kvm_sregs> get_sregs() const;
  Status set_sregs(const kvm_sregs& sregs) const;
  Result<kvm_fpu> get_fpu() const;
  Status set_fpu(const kvm_fpu& fpu) const;
  // Sets every (index, value) pair; an MSR KVM refuses is an error naming it.
  Status set_msrs(const std::vector<kvm_msr_entry>& msrs) const;
  // Reads the values of the given indices.
  Result<std::vector<kvm_msr_entry>> get_msrs(const std::vector<uint32_t>& indices) const;
  Status set_cpuid2(const std::vector<kvm_cpuid_entry2>& entries) const;
  Result<kvm_lapic_state> get_lapic() const;
  Status set_lapic(const kvm_lapic_state& lapic) const;

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
};

}  // namespace airlock::kvm
