#include "vmm/vcpu_exit.h"

#include <fmt/format.h>

namespace airlock::vmm {

VcpuExit decode_exit(kvm_run* run, size_t run_size) {
  VcpuExit e;
  using K = VcpuExit::Kind;
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      uint32_t size = run->io.size;
      uint32_t count = run->io.count;
      if ((size != 1 && size != 2 && size != 4) || count == 0) {
        e.kind = K::error;
        e.message = fmt::format("I/O exit with bad size {} / count {}", size, count);
        return e;
      }
      uint64_t bytes = uint64_t{size} * count;
      if (run->io.data_offset > run_size || bytes > run_size - run->io.data_offset) {
        e.kind = K::error;
        e.message = fmt::format("I/O exit data ({} bytes at {}) outside kvm_run", bytes,
                                static_cast<uint64_t>(run->io.data_offset));
        return e;
      }
      e.kind = run->io.direction == KVM_EXIT_IO_OUT ? K::io_out : K::io_in;
      e.address = run->io.port;
      e.size = size;
      e.count = count;
      e.data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      return e;
    }
    case KVM_EXIT_MMIO: {
      uint32_t len = run->mmio.len;
      if (len == 0 || len > sizeof(run->mmio.data)) {
        e.kind = K::error;
        e.message = fmt::format("MMIO exit with bad length {}", len);
        return e;
      }
      e.kind = run->mmio.is_write ? K::mmio_write : K::mmio_read;
      e.address = run->mmio.phys_addr;
      e.size = len;
      e.count = 1;
      e.data = run->mmio.data;
      return e;
    }
    case KVM_EXIT_HLT:
      e.kind = K::hlt;
      return e;
    case KVM_EXIT_SHUTDOWN:
      e.kind = K::shutdown;
      e.message = "guest triple fault or shutdown";
      return e;
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_RESET:
          e.kind = K::reset;
          return e;
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          e.kind = K::shutdown;
          e.message = "guest powered off";
          return e;
        case KVM_SYSTEM_EVENT_CRASH:
          e.kind = K::error;
          e.message = "guest crashed (KVM_SYSTEM_EVENT_CRASH)";
          return e;
        default:
          e.kind = K::error;
          e.message = fmt::format("unknown system event {}", run->system_event.type);
          return e;
      }
    case KVM_EXIT_INTR:
      e.kind = K::interrupted;
      return e;
    case KVM_EXIT_FAIL_ENTRY:
      e.kind = K::error;
      e.message = fmt::format("KVM_EXIT_FAIL_ENTRY, hardware reason {:#x}",
                              static_cast<uint64_t>(run->fail_entry.hardware_entry_failure_reason));
      return e;
    case KVM_EXIT_INTERNAL_ERROR:
      e.kind = K::error;
      e.message = fmt::format("KVM internal error, suberror {}", run->internal.suberror);
      return e;
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_UNKNOWN:
    default:
      if (run->exit_reason == KVM_EXIT_IRQ_WINDOW_OPEN) {
        e.kind = K::ignore;
        return e;
      }
      e.kind = K::error;
      e.message = fmt::format("unexpected vCPU exit reason {}", run->exit_reason);
      return e;
  }
}

}  // namespace airlock::vmm
