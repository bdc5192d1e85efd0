// Boots Debian's kernel with the test initramfs on real KVM. Needs a usable /dev/kvm (CI runs
// this through scripts/kvm-run) and the cached kernel + initramfs (scripts/fetch-kernel.sh,
// scripts/build-initramfs.sh). Missing either is a test FAILURE with a message, never a skip.
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "devices/rng.h"
#include "kvm/kvm.h"
#include "vmm/defaults.h"
#include "vmm/machine.h"

using namespace airlock;
using namespace airlock::vmm;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// Nested KVM (TCG outer guest) is 10-50x slower than hardware: generous deadlines.
constexpr auto kBootTimeout = 240s;

bool exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

void require_kvm() {
  auto kvm = kvm::Kvm::open();
  if (!kvm.ok())
    FAIL("KVM is not usable here (" << kvm.status().to_string()
                                    << "); run the KVM tests through scripts/kvm-run");
  if (exists("/sys/module/kvm_pvm"))
    FAIL(
        "/dev/kvm is PVM (kvm_pvm), which cannot run Debian's stock kernel at a usable speed; "
        "run the KVM tests through scripts/kvm-run (nested runner)");
}

std::string kernel_path(const char* name) {
  std::string path = cache_dir() + "/kernel/current/" + name;
  if (!exists(path)) FAIL("no " << path << ": run scripts/fetch-kernel.sh");
  return path;
}

std::string initramfs_path() {
  auto p = default_initramfs_path();
  if (!p.ok()) FAIL(p.status().to_string() << " (run scripts/build-initramfs.sh)");
  return *p;
}

MachineConfig config_for(const std::string& test, const char* kernel = "vmlinux") {
  require_kvm();
  MachineConfig c;
  c.kernel_path = kernel_path(kernel);
  c.initramfs_path = initramfs_path();
  c.cmdline_extra = "airlock_test=" + test;
  return c;
}

// Polls the console until `marker` shows up; false if the machine ended or time ran out.
bool wait_for_console(Machine& m, const std::string& marker, std::chrono::seconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    if (m.console_output().find(marker) != std::string::npos) return true;
    if (!m.running()) return m.console_output().find(marker) != std::string::npos;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

ExitInfo wait_exit(Machine& m) {
  auto r = m.wait(kBootTimeout);
  if (!r.ok()) {
    m.kill();
    FAIL("guest did not end: " << r.status().to_string() << "\nconsole:\n" << m.console_output());
  }
  return *r;
}

}  // namespace

TEST_CASE("ELF vmlinux boots to userspace, sees 2 CPUs, and its reboot ends the machine") {
  auto c = config_for("cpus");
  auto t0 = Clock::now();
  auto m = Machine::create(c);
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  REQUIRE((*m)->start().ok());
  ExitInfo exit = wait_exit(**m);
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::string out = (*m)->console_output();
  INFO("console:\n" << out);
  CHECK(out.find("AIRLOCK_USERSPACE_READY") != std::string::npos);
  CHECK(out.find("AIRLOCK_CPUS=2") != std::string::npos);
  CHECK(exit.reason == ExitInfo::Reason::reboot);
  MESSAGE("vmlinux boot to reboot: " << secs << " s");
}

TEST_CASE("bzImage boots to userspace and reboots") {
  auto c = config_for("reboot", "vmlinuz");
  c.vcpus = 1;
  auto m = Machine::create(c);
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  REQUIRE((*m)->start().ok());
  ExitInfo exit = wait_exit(**m);
  std::string out = (*m)->console_output();
  INFO("console:\n" << out);
  CHECK(out.find("AIRLOCK_USERSPACE_READY") != std::string::npos);
  CHECK(exit.reason == ExitInfo::Reason::reboot);
}

TEST_CASE("the guest reads /dev/hwrng from virtio-rng") {
  auto c = config_for("hwrng");
  auto m = Machine::create(c);
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  auto rng = std::make_shared<devices::RngDevice>();
  auto index = (*m)->add_virtio_device(rng);
  REQUIRE(index.ok());
  CHECK(*index == 0);
  REQUIRE((*m)->start().ok());
  CHECK(!(*m)->add_virtio_device(std::make_shared<devices::RngDevice>()).ok());  // too late
  ExitInfo exit = wait_exit(**m);
  std::string out = (*m)->console_output();
  INFO("console:\n" << out);
  CHECK(out.find("AIRLOCK_HWRNG_OK") != std::string::npos);
  CHECK(rng->requests_served() > 0);
  CHECK(exit.reason == ExitInfo::Reason::reboot);
}

TEST_CASE("console input reaches the guest and stop() ends an idle guest promptly") {
  auto c = config_for("echo");
  std::string streamed;
  std::mutex mu;
  c.on_console = [&](std::string_view s) {
    std::lock_guard lock(mu);
    streamed.append(s);
  };
  auto m = Machine::create(c);
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  Machine& machine = **m;
  REQUIRE(machine.start().ok());
  REQUIRE_MESSAGE(wait_for_console(machine, "AIRLOCK_USERSPACE_READY", kBootTimeout),
                  machine.console_output());
  REQUIRE(machine.write_console("hello airlock\n").ok());
  CHECK_MESSAGE(wait_for_console(machine, "AIRLOCK_ECHO=hello airlock", 120s),
                machine.console_output());
  ExitInfo exit = wait_exit(machine);
  CHECK(exit.reason == ExitInfo::Reason::reboot);
  {
    std::lock_guard lock(mu);
    CHECK(streamed == machine.console_output());  // the callback saw every byte
  }

  // Now an idle guest: wait() times out, then stop() from another thread ends it.
  auto idle = Machine::create(config_for("idle"));
  REQUIRE(idle.ok());
  REQUIRE((*idle)->start().ok());
  REQUIRE_MESSAGE(wait_for_console(**idle, "AIRLOCK_USERSPACE_READY", kBootTimeout),
                  (*idle)->console_output());
  auto early = (*idle)->wait(200ms);
  CHECK(early.status().code() == Errc::timeout);
  CHECK((*idle)->running());
  auto t0 = Clock::now();
  std::thread stopper([&] { (*idle)->stop(); });
  auto r = (*idle)->wait(30s);
  stopper.join();
  double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  REQUIRE(r.ok());
  CHECK(r->reason == ExitInfo::Reason::stopped);
  CHECK(secs < 2.0);
  CHECK(!(*idle)->running());
  MESSAGE("stop() of an idle guest took " << secs * 1000 << " ms");
  (*idle)->kill();  // idempotent
}

TEST_CASE("bad kernels, a missing initramfs and too little memory are clear errors") {
  require_kvm();
  std::string good_kernel = kernel_path("vmlinuz");
  std::string initrd = initramfs_path();
  char dir[] = "/tmp/airlock-bad-XXXXXX";
  REQUIRE(::mkdtemp(dir));
  std::string truncated = std::string(dir) + "/truncated";
  {
    std::ifstream in(good_kernel, std::ios::binary);
    std::string head(100000, '\0');
    in.read(head.data(), static_cast<std::streamsize>(head.size()));
    std::ofstream(truncated, std::ios::binary) << head;
  }
  std::string text = std::string(dir) + "/text";
  {
    std::ofstream out(text);
    for (int i = 0; i < 1000; ++i) out << "this is not a kernel\n";
  }

  auto status_of = [](MachineConfig c) {
    auto m = Machine::create(std::move(c));
    return m.ok() ? Status() : m.status();
  };
  MachineConfig c;
  c.initramfs_path = initrd;
  c.kernel_path = truncated;
  Status st = status_of(c);
  CHECK(st.code() == Errc::bad_image);
  CHECK(st.message().find("truncated") != std::string::npos);
  c.kernel_path = text;
  st = status_of(c);
  CHECK(st.code() == Errc::bad_image);
  CHECK(st.message().find("not a bzImage") != std::string::npos);
  c.kernel_path = good_kernel;
  c.initramfs_path = std::string(dir) + "/missing.cpio.gz";
  st = status_of(c);
  CHECK(st.code() == Errc::not_found);
  CHECK(st.message().find("missing.cpio.gz") != std::string::npos);
  c.initramfs_path = initrd;
  c.memory_bytes = 32 << 20;
  st = status_of(c);
  CHECK(st.code() == Errc::invalid_argument);
  CHECK(st.message().find("too small") != std::string::npos);
  // Enough for the minimum but not for this kernel's decompression area + initramfs.
  c.memory_bytes = 64 << 20;
  st = status_of(c);
  INFO(st.to_string());
  CHECK(st.code() == Errc::resource_exhausted);

  // The process is still healthy: a good machine starts and stops.
  c.memory_bytes = 256 << 20;
  auto m = Machine::create(c);
  REQUIRE_MESSAGE(m.ok(), m.status().to_string());
  REQUIRE((*m)->start().ok());
  std::this_thread::sleep_for(100ms);
  (*m)->stop();
  auto r = (*m)->wait(5s);
  REQUIRE(r.ok());
  CHECK(r->reason == ExitInfo::Reason::stopped);
  REQUIRE(::system((std::string("rm -rf ") + dir).c_str()) == 0);
}
