// bench/disk host side for airlock: boots KERNEL + INITRAMFS with IMAGE as a virtio-blk disk
// (serial "bench"), copies the guest console to stdout and exits when the guest ends (the
// benchmark initramfs reboots after /tests/diskbench). run.sh runs the same guest under QEMU.
//
//   bench_disk KERNEL INITRAMFS IMAGE CMDLINE_EXTRA [TIMEOUT_S]
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "devices/blk.h"
#include "vmm/machine.h"

using namespace airlock;

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: bench_disk KERNEL INITRAMFS IMAGE CMDLINE_EXTRA [TIMEOUT_S]\n");
    return 2;
  }
  vmm::MachineConfig config;
  config.kernel_path = argv[1];
  config.initramfs_path = argv[2];
  config.cmdline_extra = argv[4];
  config.memory_bytes = 512ull << 20;
  config.vcpus = 1;
  config.on_console = [](std::string_view s) { (void)!::write(1, s.data(), s.size()); };
  const long timeout_s = argc > 5 ? std::atol(argv[5]) : 900;
  auto machine = vmm::Machine::create(config);
  if (!machine.ok()) {
    std::fprintf(stderr, "bench_disk: %s\n", machine.status().to_string().c_str());
    return 1;
  }
  auto disk = devices::BlkDevice::open({.path = argv[3], .serial = "bench"});
  if (!disk.ok()) {
    std::fprintf(stderr, "bench_disk: %s\n", disk.status().to_string().c_str());
    return 1;
  }
  if (auto r = (*machine)->add_virtio_device(*disk); !r.ok()) {
    std::fprintf(stderr, "bench_disk: %s\n", r.status().to_string().c_str());
    return 1;
  }
  if (Status s = (*machine)->start(); !s.ok()) {
    std::fprintf(stderr, "bench_disk: %s\n", s.to_string().c_str());
    return 1;
  }
  auto end = (*machine)->wait(std::chrono::seconds(timeout_s));
  (*machine)->kill();
  const auto stats = (*disk)->stats();
  std::fprintf(stderr, "bench_disk: %llu requests, %llu bytes read, %llu written, %llu errors\n",
               static_cast<unsigned long long>(stats.requests),
               static_cast<unsigned long long>(stats.bytes_read),
               static_cast<unsigned long long>(stats.bytes_written),
               static_cast<unsigned long long>(stats.errors));
  if (!end.ok()) {
    std::fprintf(stderr, "bench_disk: %s\n", end.status().to_string().c_str());
    return 1;
  }
  return 0;
}
