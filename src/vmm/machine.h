// A microVM: guest memory, KVM vCPUs (one thread each), the console UART, the i8042 reset line,
// and virtio-mmio devices announced to the guest through ACPI.
//
// Lifecycle:  create(config) -> add_virtio_device()* -> start() -> wait()/stop()/kill()
//   create()   validates everything (memory, vCPUs, kernel and initramfs files) and loads the
//              kernel and initramfs; each problem is a clear error.
//   start()    returns once the vCPU threads run.
//   wait()     blocks until the guest ends (reboot, power-off, triple fault, error) or timeout.
//   stop()/kill() end a running guest at once (vCPUs are kicked out of KVM_RUN) and join its
//              threads; the exit reason is then `stopped`. There is no graceful guest shutdown
//              at this layer (the agent asks the guest for that); both are idempotent.
// After the end, exit_info() and console_output() stay available.
//
// Threads: every public method may be called from any host thread. The console callback runs
// on a vCPU thread: it must not block for long, and it must not call wait()/stop()/kill()
// expecting them to join (from a vCPU thread they only request the stop).
// The library sends the signal kick_signal() (SIGRTMIN) to vCPU threads to interrupt KVM_RUN
// and installs an empty handler for it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "airlock/status.hpp"
#include "memory/guest_memory.h"
#include "virtio/device.h"

namespace airlock::vmm {

struct MachineConfig {
  std::string kernel_path;     // bzImage or uncompressed ELF vmlinux (faster)
  std::string initramfs_path;  // empty: none
  std::string cmdline_extra;   // appended to the defaults (see default_cmdline())
  uint64_t memory_bytes = 512ull << 20;
  unsigned vcpus = 2;
  // Console bytes as the guest writes them (on a vCPU thread). May be empty.
  std::function<void(std::string_view)> on_console;
  // console_output() keeps at most this many of the most recent bytes.
  size_t console_buffer_limit = 1 << 20;
  // Pass "quiet" to the kernel (fewer console exits: faster boot).
  bool quiet = true;
};

constexpr uint64_t kMinMemoryBytes = 64ull << 20;
constexpr uint64_t kMaxMemoryBytes = 256ull << 30;
constexpr unsigned kMaxVcpus = 64;

struct ExitInfo {
  enum class Reason {
    reboot,    // the guest rebooted (i8042 reset, KVM_SYSTEM_EVENT_RESET)
    shutdown,  // the guest powered off (KVM_SYSTEM_EVENT_SHUTDOWN) or triple-faulted
    stopped,   // the host called stop()/kill()
    error,     // the VMM could not continue; `status` says why
  };
  Reason reason = Reason::error;
  std::string message;
  Status status;  // non-ok only for Reason::error
};
const char* exit_reason_name(ExitInfo::Reason reason);

// The kernel command line airlock always passes (before the caller's extra).
std::string default_cmdline(bool quiet);

class Machine {
 public:
  static Result<std::unique_ptr<Machine>> create(MachineConfig config);
  ~Machine();  // kills a running guest and joins its threads
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  // Before start(): attaches `device` at the next virtio-mmio window
  // (0xd0000000 + i * 0x1000, IRQ 5 + i). Returns i.
  Result<int> add_virtio_device(std::shared_ptr<virtio::Device> device);

  Status start();
  // Errc::timeout if the guest still runs after `timeout`; Errc::invalid_argument before start().
  Result<ExitInfo> wait(std::chrono::milliseconds timeout);
  void stop();
  void kill();
  bool running() const;
  std::optional<ExitInfo> exit_info() const;

  std::string console_output() const;
  // Console input: queued for the UART's receiver (bounded; Errc::resource_exhausted when full).
  Status write_console(std::string_view bytes);

  const GuestMemory& memory() const;
  // The full kernel command line (final after start()).
  std::string cmdline() const;
  unsigned vcpu_count() const;
  // CPU time the vCPU threads used so far (also after they ended); zero before start().
  std::chrono::nanoseconds vcpu_cpu_time() const;

  static int kick_signal();

  struct Impl;

 private:
  explicit Machine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::vmm
