#include <doctest/doctest.h>

#include <cstring>
#include <memory>

#include "vmm/vcpu_exit.h"

using airlock::vmm::decode_exit;
using airlock::vmm::VcpuExit;
using K = VcpuExit::Kind;

namespace {
// kvm_run followed by room for I/O data, as KVM maps it.
struct RunArea {
  static constexpr size_t kSize = 8192;
  alignas(64) uint8_t bytes[kSize] = {};
  kvm_run* run() { return reinterpret_cast<kvm_run*>(bytes); }
};
}  // namespace

TEST_CASE("port I/O exits decode port, size, count and the data pointer inside kvm_run") {
  auto area = std::make_unique<RunArea>();
  kvm_run* r = area->run();
  r->exit_reason = KVM_EXIT_IO;
  r->io.direction = KVM_EXIT_IO_OUT;
  r->io.size = 1;
  r->io.port = 0x3f8;
  r->io.count = 1;
  r->io.data_offset = 4096;
  area->bytes[4096] = 'A';
  VcpuExit e = decode_exit(r, RunArea::kSize);
  CHECK(e.kind == K::io_out);
  CHECK(e.address == 0x3f8);
  CHECK(e.size == 1);
  CHECK(e.count == 1);
  REQUIRE(e.data == area->bytes + 4096);
  CHECK(*e.data == 'A');

  r->io.direction = KVM_EXIT_IO_IN;
  r->io.size = 4;
  r->io.count = 3;  // rep insl
  e = decode_exit(r, RunArea::kSize);
  CHECK(e.kind == K::io_in);
  CHECK(e.count == 3);
}

TEST_CASE("hostile I/O exits: bad size, zero count, data outside kvm_run") {
  auto area = std::make_unique<RunArea>();
  kvm_run* r = area->run();
  r->exit_reason = KVM_EXIT_IO;
  r->io.size = 3;
  r->io.count = 1;
  r->io.data_offset = 4096;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
  r->io.size = 2;
  r->io.count = 0;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
  r->io.count = 4096;  // 8 KiB from offset 4096: past the end
  VcpuExit e = decode_exit(r, RunArea::kSize);
  CHECK(e.kind == K::error);
  CHECK(e.message.find("outside") != std::string::npos);
  r->io.count = 1;
  r->io.data_offset = UINT64_MAX - 1;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
}

TEST_CASE("MMIO exits decode address, length and direction, bad lengths are errors") {
  auto area = std::make_unique<RunArea>();
  kvm_run* r = area->run();
  r->exit_reason = KVM_EXIT_MMIO;
  r->mmio.phys_addr = 0xd0000050;
  r->mmio.len = 4;
  r->mmio.is_write = 1;
  VcpuExit e = decode_exit(r, RunArea::kSize);
  CHECK(e.kind == K::mmio_write);
  CHECK(e.address == 0xd0000050);
  CHECK(e.size == 4);
  CHECK(e.data == r->mmio.data);
  r->mmio.is_write = 0;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::mmio_read);
  r->mmio.len = 9;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
  r->mmio.len = 0;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
}

TEST_CASE("system events, shutdown, interrupts and failures") {
  auto area = std::make_unique<RunArea>();
  kvm_run* r = area->run();
  r->exit_reason = KVM_EXIT_SYSTEM_EVENT;
  r->system_event.type = KVM_SYSTEM_EVENT_RESET;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::reset);
  r->system_event.type = KVM_SYSTEM_EVENT_SHUTDOWN;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::shutdown);
  r->system_event.type = KVM_SYSTEM_EVENT_CRASH;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
  r->system_event.type = 0xdead;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
  r->exit_reason = KVM_EXIT_SHUTDOWN;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::shutdown);
  r->exit_reason = KVM_EXIT_INTR;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::interrupted);
  r->exit_reason = KVM_EXIT_HLT;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::hlt);
  r->exit_reason = KVM_EXIT_FAIL_ENTRY;
  r->fail_entry.hardware_entry_failure_reason = 0x21;
  VcpuExit e = decode_exit(r, RunArea::kSize);
  CHECK(e.kind == K::error);
  CHECK(e.message.find("0x21") != std::string::npos);
  r->exit_reason = KVM_EXIT_INTERNAL_ERROR;
  CHECK(decode_exit(r, RunArea::kSize).kind == K::error);
  r->exit_reason = 12345;
  e = decode_exit(r, RunArea::kSize);
  CHECK(e.kind == K::error);
  CHECK(e.message.find("12345") != std::string::npos);
}
