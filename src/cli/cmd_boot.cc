// airlock boot: boots a kernel + initramfs, streams the serial console to stdout and stdin
// (when it is a terminal or a pipe) to the console input. Exit code 0 when the guest reboots or
// powers off, 1 on error, 2 on bad usage, 130 when interrupted.
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "base/fd.h"
#include "base/log.h"
#include "cli/commands.h"
#include "devices/rng.h"
#include "vmm/defaults.h"
#include "vmm/machine.h"

#include "cli/util.h"

namespace airlock::cli {

namespace {

void boot_usage(FILE* out) {
  std::fprintf(out,
               "usage: airlock boot [--kernel PATH] [--initramfs PATH] [--memory MiB] [--cpus N]\n"
               "                    [--cmdline EXTRA] [--rng] [--verbose] [--debug]\n"
               "  --kernel     bzImage or ELF vmlinux (default: the cached kernel, see\n"
               "               scripts/fetch-kernel.sh)\n"
               "  --initramfs  initramfs (default: the cached test initramfs)\n"
               "  --memory     guest memory in MiB (default 512)\n"
               "  --cpus       vCPUs (default 2)\n"
               "  --cmdline    appended to the kernel command line\n"
               "  --rng        attach a virtio-rng device (guest /dev/hwrng)\n"
               "  --verbose    do not pass 'quiet' to the kernel\n"
               "  --debug      airlock debug logging on stderr\n");
}

bool stdin_forwardable() {
  struct stat st;
  if (::fstat(0, &st) != 0) return false;
  return ::isatty(0) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
}

}  // namespace

int cmd_boot(int argc, char** argv) {
  vmm::MachineConfig config;
  bool with_rng = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    unsigned long long n = 0;
    if (a == "--help" || a == "-h") {
      boot_usage(stdout);
      return 0;
    } else if (a == "--kernel") {
      const char* v = value();
      if (!v) return boot_usage(stderr), 2;
      config.kernel_path = v;
    } else if (a == "--initramfs") {
      const char* v = value();
      if (!v) return boot_usage(stderr), 2;
      config.initramfs_path = v;
    } else if (a == "--memory") {
      if (!parse_uint(value(), n) || n == 0 || n > (1ull << 20))
        return std::fprintf(stderr, "airlock boot: --memory takes a size in MiB\n"), 2;
      config.memory_bytes = n << 20;
    } else if (a == "--cpus") {
      if (!parse_uint(value(), n) || n > 1024)
        return std::fprintf(stderr, "airlock boot: --cpus takes a number\n"), 2;
      config.vcpus = static_cast<unsigned>(n);
    } else if (a == "--cmdline") {
      const char* v = value();
      if (!v) return boot_usage(stderr), 2;
      config.cmdline_extra = v;
    } else if (a == "--rng") {
      with_rng = true;
    } else if (a == "--verbose") {
      config.quiet = false;
    } else if (a == "--debug") {
      set_log_level(LogLevel::debug);
    } else {
      std::fprintf(stderr, "airlock boot: unknown option '%s'\n", a.c_str());
      boot_usage(stderr);
      return 2;
    }
  }
  if (config.kernel_path.empty()) {
    auto k = vmm::default_kernel_path();
    if (!k.ok())
      return std::fprintf(stderr, "airlock boot: %s\n", k.status().to_string().c_str()), 1;
    config.kernel_path = *k;
  }
  if (config.initramfs_path.empty()) {
    auto r = vmm::default_initramfs_path();
    if (!r.ok())
      return std::fprintf(stderr, "airlock boot: %s\n", r.status().to_string().c_str()), 1;
    config.initramfs_path = *r;
  }
  config.on_console = [](std::string_view bytes) { write_all(1, bytes); };

  // SIGINT/SIGTERM stop the guest; handled synchronously by a watcher thread.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  auto machine = vmm::Machine::create(std::move(config));
  if (!machine.ok()) {
    std::fprintf(stderr, "airlock boot: %s\n", machine.status().to_string().c_str());
    return 1;
  }
  vmm::Machine& m = **machine;
  if (with_rng) {
    auto added = m.add_virtio_device(std::make_shared<devices::RngDevice>());
    if (!added.ok()) {
      std::fprintf(stderr, "airlock boot: %s\n", added.status().to_string().c_str());
      return 1;
    }
  }
  if (Status st = m.start(); !st.ok()) {
    std::fprintf(stderr, "airlock boot: %s\n", st.to_string().c_str());
    return 1;
  }

  std::atomic<bool> done{false};
  std::atomic<bool> interrupted{false};
  std::thread signals([&] {
    timespec tick{0, 200 * 1000 * 1000};
    while (!done.load()) {
      if (::sigtimedwait(&stop_signals, nullptr, &tick) > 0) {
        interrupted.store(true);
        m.stop();
        return;
      }
    }
  });
  std::thread input;
  if (stdin_forwardable()) {
    input = std::thread([&] {
      char buf[4096];
      while (!done.load()) {
        pollfd p{0, POLLIN, 0};
        int r = ::poll(&p, 1, 200);
        if (r <= 0) continue;
        ssize_t n = ::read(0, buf, sizeof buf);
        if (n <= 0) return;  // EOF or error: stop forwarding
        (void)m.write_console(std::string_view(buf, static_cast<size_t>(n)));
      }
    });
  }

  Result<vmm::ExitInfo> exit = Status(Errc::timeout, "");
  while (!(exit = m.wait(std::chrono::milliseconds(1000))).ok() &&
         exit.status().code() == Errc::timeout) {
  }
  done.store(true);
  signals.join();
  if (input.joinable()) input.join();
  if (!exit.ok()) {
    std::fprintf(stderr, "airlock boot: %s\n", exit.status().to_string().c_str());
    return 1;
  }
  std::fprintf(stderr, "\nairlock boot: guest %s%s%s\n", vmm::exit_reason_name(exit->reason),
               exit->message.empty() ? "" : ": ", exit->message.c_str());
  if (interrupted.load()) return 130;
  switch (exit->reason) {
    case vmm::ExitInfo::Reason::reboot:
    case vmm::ExitInfo::Reason::shutdown:
      return 0;
    default:
      return 1;
  }
}

}  // namespace airlock::cli
