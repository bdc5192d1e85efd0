// Decoding of a vCPU exit (struct kvm_run after KVM_RUN returned) into what the machine must
// do. A plain function over the struct, so every exit path is unit-tested with synthetic
// kvm_run contents; the guest controls most of these fields, so sizes and counts are checked
// here, before anything indexes a buffer with them.
// Threads: any (pure).
#pragma once

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <string>

namespace airlock::vmm {

struct VcpuExit {
  enum class Kind {
    io_in,        // port read: fill `data` (size*count bytes) inside kvm_run
    io_out,       // port write: `data` holds size*count bytes
    mmio_read,    // fill `data` (len bytes)
    mmio_write,   // `data` holds len bytes
    hlt,          // only without an in-kernel LAPIC: treat as idle
    reset,        // KVM_SYSTEM_EVENT_RESET
    shutdown,     // KVM_EXIT_SHUTDOWN (triple fault) or KVM_SYSTEM_EVENT_SHUTDOWN
    interrupted,  // KVM_EXIT_INTR: a signal or immediate_exit; check the stop flag
    error,        // the guest cannot continue (internal error, failed entry, crash, bad exit)
    ignore,       // nothing to do (e.g. an exit we don't care about)
  };
  Kind kind = Kind::ignore;
  uint64_t address = 0;  // port or guest-physical address
  uint32_t size = 0;     // access size in bytes (1/2/4 for I/O, 1..8 for MMIO)
  uint32_t count = 0;    // repetitions (string I/O), 1 for MMIO
  uint8_t* data = nullptr;
  std::string message;  // for error
};

// `run_size` is the size of the mmap'd kvm_run area (KVM_GET_VCPU_MMAP_SIZE): I/O data lives at
// run + io.data_offset and must lie inside it.
VcpuExit decode_exit(kvm_run* run, size_t run_size);

}  // namespace airlock::vmm
