#include "vmm/machine.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <span>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "arch/x86_64/acpi.h"
#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/cpu_state.h"
#include "arch/x86_64/cpuid.h"
#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "arch/x86_64/page_tables.h"
#include "arch/x86_64/segments.h"
#include "base/fd.h"
#include "base/log.h"
#include "devices/i8042.h"
#include "devices/serial.h"
#include "kvm/kvm.h"
#include "virtio/mmio.h"
#include "vmm/vcpu_exit.h"

namespace airlock::vmm {

namespace {

constexpr const char* kLog = "vmm";
constexpr uint64_t kMaxKernelBytes = 512ull << 20;
constexpr uint64_t kMaxInitramfsBytes = 1ull << 30;
constexpr uint64_t kVirtioMmioQueueNotify = 0x50;  // VIRTIO_MMIO_QUEUE_NOTIFY

// A kernel or initramfs file: a read-only private mapping of the whole file, from which the
// loader reads the headers it validates, plus the open descriptor, through which the bulk of
// the image goes into guest memory (read_into()).
class ImageFile {
 public:
  static Result<ImageFile> open(const std::string& path, const char* what, uint64_t max_bytes) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      int err = errno;
      Status st = errno_status(err, fmt::format("{} {}", what, path));
      return st;
    }
    ImageFile f;
    f.fd_ = UniqueFd(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) return errno_status(fmt::format("stat {} {}", what, path));
    if (!S_ISREG(st.st_mode))
      return Status(Errc::invalid_argument, fmt::format("{} {} is not a regular file", what, path));
    if (st.st_size == 0) return Status(Errc::bad_image, fmt::format("{} {} is empty", what, path));
    if (static_cast<uint64_t>(st.st_size) > max_bytes)
      return Status(Errc::bad_image,
                    fmt::format("{} {} is too large ({} MiB)", what, path, st.st_size >> 20));
    void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) return errno_status(fmt::format("mmap {} {}", what, path));
    f.data_ = static_cast<uint8_t*>(p);
    f.size_ = static_cast<size_t>(st.st_size);
    f.what_ = what;
    return f;
  }
  ImageFile() = default;
  ImageFile(ImageFile&& o) noexcept
      : fd_(std::move(o.fd_)),
        data_(std::exchange(o.data_, nullptr)),
        size_(std::exchange(o.size_, 0)),
        what_(o.what_) {}
  ImageFile& operator=(ImageFile&&) = delete;
  ~ImageFile() {
    if (data_) ::munmap(data_, size_);
  }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

  // Puts the image bytes [src, src + len) (a range of bytes()) at guest-physical `gpa`.
  // pread() straight into guest RAM rather than a copy out of the mapping: the kernel copies
  // from the page cache (or, on a 9p share, from the transport) once, and the file's pages
  // never enter our page tables, so neither our RSS nor a fault per page grows with the
  // image (measured in the nested runner: 58 MB of vmlinux in ~130 ms instead of ~450-700 ms
  // for fault-in plus memcpy). A file that shrank since it was validated is an error here,
  // not a SIGBUS.
  Status read_into(const GuestMemory& mem, uint64_t gpa, const uint8_t* src, size_t len) const {
    if (src < data_ || static_cast<size_t>(src - data_) > size_ ||
        len > size_ - static_cast<size_t>(src - data_))
      return Status(Errc::internal, fmt::format("{} range outside the file", what_));
    uint8_t* dst = mem.host_ptr(gpa, len);
    if (!dst)
      return Status(Errc::invalid_argument,
                    fmt::format("{} bytes at {:#x}+{:#x} lie outside guest RAM", what_, gpa, len));
    auto offset = static_cast<off_t>(src - data_);
    while (len > 0) {
      ssize_t n = ::pread(fd_.get(), dst, std::min<size_t>(len, 1u << 30), offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        return errno_status(fmt::format("reading the {}", what_));
      }
      if (n == 0)
        return Status(Errc::bad_image, fmt::format("the {} file shrank while loading", what_));
      dst += n;
      offset += n;
      len -= static_cast<size_t>(n);
    }
    return ok_status();
  }

 private:
  UniqueFd fd_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  const char* what_ = "";
};

// A short-lived helper thread with a small stack. A std::thread gets the default 8 MiB
// stack; made right after the guest RAM mapping, it lands just below it, so its top is 2 MiB
// aligned and a transparent huge page backs it on first touch: 2 MiB of VMM RSS for a few
// KiB of stack (measured: VMM overhead 6.3 instead of 4.2 MiB). 256 KiB cannot hold a huge
// page. The function must not allocate much either (a first malloc() gives the thread an
// arena).
class HelperThread {
 public:
  HelperThread() = default;
  HelperThread(const HelperThread&) = delete;
  HelperThread& operator=(const HelperThread&) = delete;
  ~HelperThread() { join(); }

  // False if no thread could be made (the caller then runs `fn` itself).
  bool start(std::function<void()> fn) {
    fn_ = std::move(fn);
    pthread_attr_t attr;
    if (::pthread_attr_init(&attr) != 0) return false;
    bool ok = ::pthread_attr_setstacksize(&attr, 256 << 10) == 0 &&
              ::pthread_create(&thread_, &attr, &HelperThread::trampoline, this) == 0;
    ::pthread_attr_destroy(&attr);
    running_ = ok;
    return ok;
  }
  void join() {
    if (running_) ::pthread_join(thread_, nullptr);
    running_ = false;
  }

 private:
  static void* trampoline(void* self) {
    static_cast<HelperThread*>(self)->fn_();
    return nullptr;
  }
  std::function<void()> fn_;
  pthread_t thread_{};
  bool running_ = false;
};

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = [](int) {};  // only to make KVM_RUN return EINTR
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART
    ::sigaction(Machine::kick_signal(), &sa, nullptr);
  });
}

struct VirtioSlot {
  std::unique_ptr<virtio::MmioTransport> transport;
  uint64_t base = 0;
  uint32_t irq = 0;
  UniqueFd irq_fd;
  std::vector<UniqueFd> queue_fds;
};

}  // namespace

const char* exit_reason_name(ExitInfo::Reason reason) {
  switch (reason) {
    case ExitInfo::Reason::reboot:
      return "reboot";
    case ExitInfo::Reason::shutdown:
      return "shutdown";
    case ExitInfo::Reason::stopped:
      return "stopped";
    case ExitInfo::Reason::error:
      return "error";
  }
  return "unknown";
}

std::string default_cmdline(bool quiet) {
  // reboot=k: reboot through the i8042 (ends the machine); panic=-1: reboot at once on panic;
  // 8250.nr_uarts=1 and pci=off skip probing hardware that is not there.
  // cryptomgr.notests skips the crypto API's boot-time self-tests of every algorithm the kernel
  // registers (they check the kernel's own implementations against test vectors, not anything
  // the VMM provides): measured in the nested runner they cost ~2 s of a ~10 s boot, the same
  // under QEMU (crypto_algapi_init 0.6-0.9 s, load_system_certificate_list 0.6-0.75 s,
  // crypto_kdf108_init halved). A guest booted with fips=1 still runs them.
  std::string s =
      "console=ttyS0 reboot=k panic=-1 8250.nr_uarts=1 pci=off i8042.noaux i8042.nomux "
      "cryptomgr.notests";
  if (quiet) s += " quiet";
  return s;
}

int Machine::kick_signal() {
  return SIGRTMIN;
}

struct Machine::Impl {
  MachineConfig config;
  kvm::Kvm kvm;
  std::optional<kvm::VmFd> vm;
  GuestMemory memory;
  std::vector<kvm::VcpuFd> vcpus;
  x86::LoadedKernel kernel;
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;
  std::string cmdline;

  std::unique_ptr<devices::Serial> serial;
  std::unique_ptr<devices::I8042> i8042;
  std::vector<VirtioSlot> virtio;

  // Lifecycle.
  mutable std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  std::optional<ExitInfo> exit;
  std::atomic<bool> stop_requested{false};
  std::vector<std::thread> vcpu_threads;
  std::vector<pthread_t> vcpu_handles;
  // CPU time of each vCPU thread, recorded (under mu) as it ends; until then its clock is read.
  std::vector<std::optional<uint64_t>> vcpu_final_cpu_ns;
  std::thread event_thread;
  UniqueFd stop_fd;
  std::mutex join_mu;

  // Console.
  mutable std::mutex console_mu;
  std::string console;

  ~Impl() {
    finish(ExitInfo{ExitInfo::Reason::stopped, "machine destroyed", {}});
    join_all();
    for (auto& slot : virtio)
      if (slot.transport) slot.transport->shutdown();
  }

  // Set on each vCPU thread to its machine, so a console callback calling stop() does not
  // try to join itself.
  static thread_local const Impl* current_vcpu_owner;
  bool on_vcpu_thread() const { return current_vcpu_owner == this; }

  // Records the first end of the machine and tells every thread to stop. The kick happens
  // under `mu` together with recording the exit, so join_all() (which runs only once an exit
  // is recorded, and takes the handles away under `mu`) never joins an unkicked vCPU and we
  // never signal a thread that was already joined.
  void finish(ExitInfo info) {
    {
      std::lock_guard lock(mu);
      if (!exit) {
        if (info.reason == ExitInfo::Reason::error)
          AIRLOCK_LOG_WARN(kLog, "machine ends with error: {}", info.status.to_string());
        exit = std::move(info);
      }
      stop_requested.store(true);
      // immediate_exit covers a vCPU that is about to enter KVM_RUN; the signal one inside it.
      for (auto& v : vcpus) v.set_immediate_exit(true);
      for (auto& h : vcpu_handles) ::pthread_kill(h, kick_signal());
    }
    signal_eventfd(stop_fd.get());
    cv.notify_all();
  }

  void join_all() {
    if (on_vcpu_thread()) return;  // a vCPU cannot join itself; the owner joins later
    std::lock_guard join_lock(join_mu);
    {
      std::lock_guard lock(mu);
      vcpu_handles.clear();
    }
    for (auto& t : vcpu_threads)
      if (t.joinable()) t.join();
    if (event_thread.joinable()) event_thread.join();
  }

  void console_bytes(std::string_view bytes) {
    {
      std::lock_guard lock(console_mu);
      console.append(bytes);
      // Trim in batches (amortised O(1) per byte): keep at most `limit` + limit/4 bytes, and
      // cut back to the most recent `limit` when over.
      size_t limit = config.console_buffer_limit;
      if (console.size() > limit + limit / 4) console.erase(0, console.size() - limit);
    }
    if (config.on_console) config.on_console(bytes);
  }

  // ---- buses ----

  void io_in(uint16_t port, uint8_t* data, uint32_t size) {
    if (port >= devices::Serial::kCom1Base && port < devices::Serial::kCom1Base + 8 && size == 1) {
      data[0] = serial->read(static_cast<uint16_t>(port - devices::Serial::kCom1Base));
      return;
    }
    if ((port == devices::I8042::kDataPort || port == devices::I8042::kCommandPort) && size == 1) {
      data[0] = i8042->read(port);
      return;
    }
    std::memset(data, 0xff, size);  // nothing there: the bus floats high
  }

  void io_out(uint16_t port, const uint8_t* data, uint32_t size) {
    if (port >= devices::Serial::kCom1Base && port < devices::Serial::kCom1Base + 8 && size == 1) {
      serial->write(static_cast<uint16_t>(port - devices::Serial::kCom1Base), data[0]);
      return;
    }
    if ((port == devices::I8042::kDataPort || port == devices::I8042::kCommandPort) && size == 1) {
      i8042->write(port, data[0]);
      return;
    }
  }

  VirtioSlot* mmio_slot(uint64_t addr, uint32_t len) {
    if (addr < x86::kVirtioMmioBase) return nullptr;
    uint64_t index = (addr - x86::kVirtioMmioBase) / x86::kVirtioMmioSize;
    if (index >= virtio.size()) return nullptr;
    VirtioSlot& s = virtio[index];
    if (addr + len > s.base + x86::kVirtioMmioSize) return nullptr;
    return &s;
  }

  // Debug aid: where a vCPU was when its thread ended.
  void log_vcpu_state(size_t index) {
    if (!log_enabled(LogLevel::debug)) return;
    auto regs = vcpus[index].get_regs();
    auto sregs = vcpus[index].get_sregs();
    if (!regs.ok() || !sregs.ok()) return;
    AIRLOCK_LOG_DEBUG(kLog,
                      "vCPU {} ends at rip={:#x} rsp={:#x} rcx={:#x} rdi={:#x} cr0={:#x} cr3={:#x} "
                      "cr4={:#x} efer={:#x}",
                      index, regs->rip, regs->rsp, regs->rcx, regs->rdi, sregs->cr0, sregs->cr3,
                      sregs->cr4, sregs->efer);
  }

  void run_vcpu(size_t index) {
    current_vcpu_owner = this;
    std::map<uint64_t, uint64_t> exits;
    run_vcpu_loop(index, log_enabled(LogLevel::debug) ? &exits : nullptr);
    log_vcpu_state(index);
    // Debug aid: which ports / MMIO pages this vCPU exited for most (exits are what a VMM
    // costs a booting guest).
    std::vector<std::pair<uint64_t, uint64_t>> top(exits.begin(), exits.end());
    std::sort(top.begin(), top.end(), [](auto& a, auto& b) { return a.second > b.second; });
    if (top.size() > 6) top.resize(6);
    for (auto& [where, count] : top)
      AIRLOCK_LOG_DEBUG(kLog, "vCPU {}: {} exits at {:#x}", index, count, where);
  }

  void run_vcpu_loop(size_t index, std::map<uint64_t, uint64_t>* exit_counts) {
    kvm::VcpuFd& vcpu = vcpus[index];
    kvm_run* run = vcpu.run_struct();
    size_t run_size = static_cast<size_t>(kvm.vcpu_mmap_size().value_or(sizeof(kvm_run)));
    while (!stop_requested.load()) {
      Status st = vcpu.run();
      if (!st.ok()) {
        if (st.code() == Errc::cancelled) continue;  // kicked, or a stray signal
        finish(ExitInfo{ExitInfo::Reason::error, st.message(), st});
        return;
      }
      VcpuExit e = decode_exit(run, run_size);
      using K = VcpuExit::Kind;
      if (exit_counts && e.kind >= K::io_in && e.kind <= K::mmio_write)
        ++(*exit_counts)[e.kind <= K::io_out ? e.address : (e.address & ~0xfffull)];
      switch (e.kind) {
        case K::io_in:
          for (uint32_t i = 0; i < e.count; ++i)
            io_in(static_cast<uint16_t>(e.address), e.data + i * e.size, e.size);
          break;
        case K::io_out:
          for (uint32_t i = 0; i < e.count; ++i)
            io_out(static_cast<uint16_t>(e.address), e.data + i * e.size, e.size);
          break;
        case K::mmio_read:
          if (VirtioSlot* s = mmio_slot(e.address, e.size))
            s->transport->read(e.address - s->base, e.data, e.size);
          else
            std::memset(e.data, 0xff, e.size);
          break;
        case K::mmio_write:
          if (VirtioSlot* s = mmio_slot(e.address, e.size))
            s->transport->write(e.address - s->base, e.data, e.size);
          break;
        case K::reset:
          finish(ExitInfo{ExitInfo::Reason::reboot, "guest reset the machine", {}});
          return;
        case K::shutdown:
          finish(ExitInfo{ExitInfo::Reason::shutdown, e.message, {}});
          return;
        case K::error: {
          Status err(Errc::protocol, fmt::format("vCPU {}: {}", index, e.message));
          finish(ExitInfo{ExitInfo::Reason::error, err.message(), err});
          return;
        }
        case K::hlt:
        case K::interrupted:
        case K::ignore:
          break;
      }
    }
  }

  void run_events(int epfd) {
    UniqueFd ep(epfd);
    epoll_event events[16];
    while (!stop_requested.load()) {
      int n = ::epoll_wait(ep.get(), events, 16, -1);
      if (n < 0) {
        if (errno == EINTR) continue;
        Status st = errno_status("epoll_wait");
        finish(ExitInfo{ExitInfo::Reason::error, st.message(), st});
        return;
      }
      for (int i = 0; i < n; ++i) {
        uint64_t tag = events[i].data.u64;
        if (tag == UINT64_MAX) return;  // stop eventfd
        size_t dev = tag >> 32;
        uint32_t queue = static_cast<uint32_t>(tag);
        if (dev >= virtio.size() || queue >= virtio[dev].queue_fds.size()) continue;
        drain_eventfd(virtio[dev].queue_fds[queue].get());
        virtio[dev].transport->notify(queue);
      }
    }
  }

  Status setup_vm() {
    AIRLOCK_ASSIGN_OR_RETURN(kvm::VmFd created, kvm.create_vm());
    vm.emplace(std::move(created));
    AIRLOCK_RETURN_IF_ERROR(vm->set_identity_map_addr(x86::kKvmIdentityMapAddr));
    AIRLOCK_RETURN_IF_ERROR(vm->set_tss_addr(x86::kKvmTssAddr));
    AIRLOCK_RETURN_IF_ERROR(vm->create_irqchip());
    AIRLOCK_RETURN_IF_ERROR(vm->create_pit2(KVM_PIT_SPEAKER_DUMMY));
    uint32_t slot = 0;
    for (const auto& r : memory.regions())
      AIRLOCK_RETURN_IF_ERROR(vm->set_user_memory_region(slot++, r.guest_addr, r.size, r.host));
    return ok_status();
  }

  // Entry registers, once the kernel (hence its entry point) is loaded.
  Status set_boot_regs() {
    for (auto& vcpu : vcpus)
      AIRLOCK_RETURN_IF_ERROR(vcpu.set_regs(x86::boot_regs(kernel.entry, x86::kZeroPageAddr)));
    return ok_status();
  }

  // Creates and configures every vCPU except its entry registers (set_boot_regs()). Writes
  // guest memory below 1 MiB only (page tables, GDT): it runs while the images load above.
  Status setup_vcpus() {
    AIRLOCK_ASSIGN_OR_RETURN(auto supported, kvm.supported_cpuid());
    AIRLOCK_ASSIGN_OR_RETURN(uint64_t cr3, x86::write_identity_page_tables(memory));
    AIRLOCK_RETURN_IF_ERROR(x86::write_gdt(memory));
    bool tsc_deadline = kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    for (unsigned i = 0; i < config.vcpus; ++i) {
      AIRLOCK_ASSIGN_OR_RETURN(kvm::VcpuFd vcpu, vm->create_vcpu(i));
      auto cpuid = x86::normalize_cpuid(supported, {i, config.vcpus, tsc_deadline});
      AIRLOCK_RETURN_IF_ERROR(vcpu.set_cpuid2(cpuid));
      AIRLOCK_RETURN_IF_ERROR(vcpu.set_msrs(x86::boot_msrs()));
      AIRLOCK_RETURN_IF_ERROR(vcpu.set_fpu(x86::boot_fpu()));
      AIRLOCK_ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu.get_sregs());
      x86::setup_long_mode_sregs(sregs, cr3);
      AIRLOCK_RETURN_IF_ERROR(vcpu.set_sregs(sregs));
      AIRLOCK_ASSIGN_OR_RETURN(kvm_lapic_state lapic, vcpu.get_lapic());
      x86::configure_lapic_lint(lapic);
      AIRLOCK_RETURN_IF_ERROR(vcpu.set_lapic(lapic));
      vcpus.push_back(std::move(vcpu));
    }
    return ok_status();
  }
};

thread_local const Machine::Impl* Machine::Impl::current_vcpu_owner = nullptr;

Machine::Machine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Machine::~Machine() = default;

Result<std::unique_ptr<Machine>> Machine::create(MachineConfig config) {
  if (config.memory_bytes < kMinMemoryBytes)
    return Status(Errc::invalid_argument,
                  fmt::format("guest memory of {} MiB is too small: at least {} MiB needed",
                              config.memory_bytes >> 20, kMinMemoryBytes >> 20));
  if (config.memory_bytes > kMaxMemoryBytes)
    return Status(Errc::invalid_argument,
                  fmt::format("guest memory of {} MiB is above the {} GiB limit",
                              config.memory_bytes >> 20, kMaxMemoryBytes >> 30));
  if (config.memory_bytes % x86::kPageSize != 0)
    return Status(Errc::invalid_argument, "guest memory size must be a multiple of 4 KiB");
  if (config.vcpus < 1 || config.vcpus > kMaxVcpus)
    return Status(Errc::invalid_argument,
                  fmt::format("{} vCPUs requested: must be 1..{}", config.vcpus, kMaxVcpus));
  if (config.kernel_path.empty()) return Status(Errc::invalid_argument, "no kernel path given");
  if (config.console_buffer_limit == 0) config.console_buffer_limit = 1;

  // Files first: a missing file or a bad bzImage header fails before any KVM work.
  AIRLOCK_ASSIGN_OR_RETURN(ImageFile kernel_file,
                           ImageFile::open(config.kernel_path, "kernel", kMaxKernelBytes));
  std::optional<ImageFile> initrd_file;
  if (!config.initramfs_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(
        ImageFile f, ImageFile::open(config.initramfs_path, "initramfs", kMaxInitramfsBytes));
    initrd_file.emplace(std::move(f));
  }
  auto image = kernel_file.bytes();
  if (!(image.size() >= 4 && std::memcmp(image.data(),
                                         "\x7f"
                                         "ELF",
                                         4) == 0)) {
    Status st = x86::validate_bzimage(image);
    if (!st.ok()) return st.prefix("kernel " + config.kernel_path);
  }

  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  MachineConfig& cfg = impl->config;
  AIRLOCK_ASSIGN_OR_RETURN(impl->kvm, kvm::Kvm::open());
  AIRLOCK_ASSIGN_OR_RETURN(impl->memory,
                           GuestMemory::create(cfg.memory_bytes, x86::kMmioHoleStart));
  const uint64_t ram_end = x86::low_ram_end(cfg.memory_bytes);

  // Reading the images into guest RAM is the slowest step of create() (tens of MB through the
  // page cache or, in the nested runner, a 9p share), and the KVM objects do not depend on it:
  // a loader thread fills RAM from 1 MiB up (kernel, initramfs) while this thread creates the
  // VM and vCPUs, which write only below 1 MiB (page tables, GDT). Errors keep their order:
  // an image error wins over a KVM one, as if the images had been loaded first.
  Impl& m = *impl;
  auto load_images = [&]() -> Status {
    auto loaded = x86::load_kernel(
        m.memory, image, ram_end,
        [&kernel_file](const GuestMemory& mem, uint64_t gpa, const uint8_t* src, size_t len) {
          return kernel_file.read_into(mem, gpa, src, len);
        },
        /*ram_is_zero=*/true);  // m.memory was just mapped, and nothing else writes there
    if (!loaded.ok()) return loaded.status().prefix("kernel " + m.config.kernel_path);
    m.kernel = std::move(loaded).value();
    if (initrd_file) {
      auto bytes = initrd_file->bytes();
      auto at = x86::place_initrd(m.kernel, bytes.size(), ram_end);
      if (!at.ok()) return at.status().prefix("initramfs " + m.config.initramfs_path);
      AIRLOCK_RETURN_IF_ERROR(initrd_file->read_into(m.memory, *at, bytes.data(), bytes.size()));
      m.initrd_addr = *at;
      m.initrd_size = bytes.size();
    }
    return ok_status();
  };
  Status load_status;
  // Declared after `impl`: joined (destructor) on every path out before *impl goes away.
  HelperThread loader;
  if (!loader.start([&] { load_status = load_images(); }))
    load_status = load_images();  // no thread to spare: load on this one

  Status st;
  if (auto fd = make_eventfd(true); fd.ok())
    impl->stop_fd = std::move(fd).value();
  else
    st = fd.status();
  if (st.ok()) st = impl->setup_vm();
  if (st.ok()) st = impl->setup_vcpus();
  loader.join();
  if (!load_status.ok()) return load_status;
  if (st.ok()) st = impl->set_boot_regs();
  if (!st.ok()) return st.prefix("setting up the VM");

  Impl* raw = impl.get();
  impl->serial = std::make_unique<devices::Serial>(
      [raw](uint8_t byte) {
        char c = static_cast<char>(byte);
        raw->console_bytes(std::string_view(&c, 1));
      },
      [raw](bool level) {
        Status s = raw->vm->irq_line(devices::Serial::kCom1Irq, level);
        if (!s.ok()) AIRLOCK_LOG_WARN(kLog, "serial interrupt: {}", s.to_string());
      });
  impl->i8042 = std::make_unique<devices::I8042>([raw] {
    raw->finish(ExitInfo{ExitInfo::Reason::reboot, "guest rebooted (i8042 reset)", {}});
  });
  impl->cmdline = default_cmdline(cfg.quiet);
  return std::unique_ptr<Machine>(new Machine(std::move(impl)));
}

Result<int> Machine::add_virtio_device(std::shared_ptr<virtio::Device> device) {
  Impl& m = *impl_;
  if (!device) return Status(Errc::invalid_argument, "add_virtio_device: null device");
  {
    std::lock_guard lock(m.mu);
    if (m.started) return Status(Errc::invalid_argument, "add_virtio_device after start()");
  }
  size_t index = m.virtio.size();
  uint64_t base = x86::kVirtioMmioBase + index * x86::kVirtioMmioSize;
  uint32_t irq = x86::kVirtioFirstIrq + static_cast<uint32_t>(index);
  // IOAPIC pins 0..23; 4 is the UART.
  if (irq >= 24) return Status(Errc::resource_exhausted, "too many virtio devices (no IRQ left)");
  VirtioSlot slot;
  slot.base = base;
  slot.irq = irq;
  slot.transport = std::make_unique<virtio::MmioTransport>(device, m.memory);
  AIRLOCK_ASSIGN_OR_RETURN(slot.irq_fd, make_eventfd(true));
  AIRLOCK_RETURN_IF_ERROR(m.vm->irqfd(slot.irq_fd.get(), irq));
  int irq_fd = slot.irq_fd.get();
  slot.transport->set_interrupt_trigger([irq_fd] { signal_eventfd(irq_fd); });
  for (size_t q = 0; q < slot.transport->num_queues(); ++q) {
    AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd, make_eventfd(true));
    uint64_t match = q;
    AIRLOCK_RETURN_IF_ERROR(m.vm->ioeventfd(fd.get(), base + kVirtioMmioQueueNotify, 4, &match));
    slot.queue_fds.push_back(std::move(fd));
  }
  m.virtio.push_back(std::move(slot));
  return static_cast<int>(index);
}

Status Machine::start() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.started) return Status(Errc::invalid_argument, "machine already started");
    if (m.exit) return Status(Errc::cancelled, "machine was stopped before it started");
    m.started = true;
  }
  std::vector<x86::MmioDeviceInfo> infos;
  for (auto& s : m.virtio) infos.push_back({s.base, x86::kVirtioMmioSize, s.irq});
  std::string cmdline = m.cmdline;
  if (!m.config.cmdline_extra.empty()) cmdline += " " + m.config.cmdline_extra;
  AIRLOCK_ASSIGN_OR_RETURN(uint64_t rsdp, x86::write_acpi_tables(m.memory, m.config.vcpus, infos));
  x86::BootParamsInput bp;
  bp.kernel = &m.kernel;
  bp.cmdline = cmdline;
  bp.initrd_addr = m.initrd_addr;
  bp.initrd_size = m.initrd_size;
  bp.memory_bytes = m.config.memory_bytes;
  bp.acpi_rsdp_addr = rsdp;
  AIRLOCK_RETURN_IF_ERROR(x86::write_boot_params(m.memory, bp));
  {
    std::lock_guard lock(m.mu);
    m.cmdline = cmdline;
  }

  install_kick_handler();
  int epfd = ::epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return errno_status("epoll_create1");
  auto add = [epfd](int fd, uint64_t tag) -> Status {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) return errno_status("epoll_ctl");
    return ok_status();
  };
  Status st = add(m.stop_fd.get(), UINT64_MAX);
  for (size_t d = 0; st.ok() && d < m.virtio.size(); ++d)
    for (size_t q = 0; st.ok() && q < m.virtio[d].queue_fds.size(); ++q)
      st = add(m.virtio[d].queue_fds[q].get(), (uint64_t{d} << 32) | q);
  if (!st.ok()) {
    ::close(epfd);
    return st;
  }
  // std::thread reports failure (no threads left) by exception: turn it into a Status.
  try {
    m.event_thread = std::thread([&m, epfd] { m.run_events(epfd); });
  } catch (const std::exception& e) {
    ::close(epfd);
    Status err(Errc::resource_exhausted, std::string("cannot start the event thread: ") + e.what());
    m.finish(ExitInfo{ExitInfo::Reason::error, err.message(), err});
    return err;
  }
  try {
    // Hold mu so finish() (which kicks through vcpu_handles) sees a consistent list.
    std::lock_guard lock(m.mu);
    m.vcpu_threads.reserve(m.vcpus.size());  // so only thread creation itself can throw
    m.vcpu_handles.reserve(m.vcpus.size());
    m.vcpu_final_cpu_ns.assign(m.vcpus.size(), std::nullopt);
    for (size_t i = 0; i < m.vcpus.size(); ++i) {
      m.vcpu_threads.emplace_back([&m, i] {
        m.run_vcpu(i);
        // Record this thread's CPU time while it still exists (its clock dies with it).
        struct timespec ts {};
        ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
        std::lock_guard lock(m.mu);
        m.vcpu_final_cpu_ns[i] =
            static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
      });
      m.vcpu_handles.push_back(m.vcpu_threads.back().native_handle());
    }
  } catch (const std::exception& e) {
    Status err(Errc::resource_exhausted, std::string("cannot start vCPU threads: ") + e.what());
    m.finish(ExitInfo{ExitInfo::Reason::error, err.message(), err});
    m.join_all();
    return err;
  }
  AIRLOCK_LOG_DEBUG(kLog, "started {} vCPUs, cmdline: {}", m.vcpus.size(), cmdline);
  return ok_status();
}

Result<ExitInfo> Machine::wait(std::chrono::milliseconds timeout) {
  Impl& m = *impl_;
  {
    std::unique_lock lock(m.mu);
    if (!m.started) return Status(Errc::invalid_argument, "wait() before start()");
    if (!m.cv.wait_for(lock, timeout, [&] { return m.exit.has_value(); }))
      return Status(Errc::timeout, fmt::format("guest still running after {} ms", timeout.count()));
  }
  m.join_all();
  std::lock_guard lock(m.mu);
  return *m.exit;
}

void Machine::stop() {
  impl_->finish(ExitInfo{ExitInfo::Reason::stopped, "stopped by the host", {}});
  impl_->join_all();
}

void Machine::kill() {
  stop();
}

bool Machine::running() const {
  std::lock_guard lock(impl_->mu);
  return impl_->started && !impl_->exit;
}

std::optional<ExitInfo> Machine::exit_info() const {
  std::lock_guard lock(impl_->mu);
  return impl_->exit;
}

std::string Machine::console_output() const {
  std::lock_guard lock(impl_->console_mu);
  const std::string& c = impl_->console;
  size_t limit = impl_->config.console_buffer_limit;
  return c.size() > limit ? c.substr(c.size() - limit) : c;
}

Status Machine::write_console(std::string_view bytes) {
  size_t n = impl_->serial->push_input(bytes);
  if (n < bytes.size())
    return Status(Errc::resource_exhausted,
                  fmt::format("console input buffer full: {} of {} bytes queued", n, bytes.size()));
  return ok_status();
}

const GuestMemory& Machine::memory() const {
  return impl_->memory;
}

std::string Machine::cmdline() const {
  std::lock_guard lock(impl_->mu);
  return impl_->cmdline;
}

unsigned Machine::vcpu_count() const {
  return impl_->config.vcpus;
}

std::chrono::nanoseconds Machine::vcpu_cpu_time() const {
  Impl& m = *impl_;
  // Under mu a running vCPU thread cannot finish its lambda, so it is not joined yet and its
  // handle (hence its CPU clock) stays valid while we read it.
  std::lock_guard lock(m.mu);
  uint64_t total = 0;
  for (size_t i = 0; i < m.vcpu_final_cpu_ns.size() && i < m.vcpu_threads.size(); ++i) {
    if (m.vcpu_final_cpu_ns[i]) {
      total += *m.vcpu_final_cpu_ns[i];
      continue;
    }
    clockid_t clock;
    struct timespec ts {};
    if (::pthread_getcpuclockid(m.vcpu_threads[i].native_handle(), &clock) == 0 &&
        ::clock_gettime(clock, &ts) == 0)
      total += static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
  }
  return std::chrono::nanoseconds(total);
}

}  // namespace airlock::vmm
