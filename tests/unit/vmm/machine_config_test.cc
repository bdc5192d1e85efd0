// Machine::create() checks its configuration and files before it touches KVM, so these run
// anywhere.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "vmm/defaults.h"
#include "vmm/machine.h"

using namespace airlock;
using namespace airlock::vmm;

namespace {
std::string temp_file(const std::string& contents) {
  char path[] = "/tmp/airlock-vmm-test-XXXXXX";
  int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, contents.data(), contents.size()) == static_cast<ssize_t>(contents.size()));
  ::close(fd);
  return path;
}

Status create_status(MachineConfig c) {
  auto m = Machine::create(std::move(c));
  return m.ok() ? Status() : m.status();
}
}  // namespace

TEST_CASE("too little memory, bad vCPU counts and no kernel are clear errors") {
  std::string kernel = temp_file(std::string(5000, 'x'));
  MachineConfig c;
  c.kernel_path = kernel;
  c.memory_bytes = 16 << 20;
  Status st = create_status(c);
  CHECK(st.code() == Errc::invalid_argument);
  CHECK(st.message().find("too small") != std::string::npos);

  c.memory_bytes = 512 << 20;
  c.vcpus = 0;
  CHECK(create_status(c).code() == Errc::invalid_argument);
  c.vcpus = 65;
  CHECK(create_status(c).message().find("1..64") != std::string::npos);

  c.vcpus = 2;
  c.kernel_path = "";
  CHECK(create_status(c).code() == Errc::invalid_argument);
  ::unlink(kernel.c_str());
}

TEST_CASE("missing kernel or initramfs files and non-kernels are reported with their path") {
  MachineConfig c;
  c.kernel_path = "/nonexistent/vmlinuz";
  Status st = create_status(c);
  CHECK(st.code() == Errc::not_found);
  CHECK(st.message().find("/nonexistent/vmlinuz") != std::string::npos);

  std::string junk = temp_file(std::string(100000, 'j'));
  c.kernel_path = junk;
  st = create_status(c);
  CHECK(st.code() == Errc::bad_image);
  CHECK(st.message().find("not a bzImage") != std::string::npos);

  std::string empty = temp_file("");
  c.kernel_path = empty;
  CHECK(create_status(c).code() == Errc::bad_image);

  c.kernel_path = junk;
  c.initramfs_path = "/nonexistent/initrd.gz";
  st = create_status(c);
  CHECK(st.code() == Errc::not_found);
  CHECK(st.message().find("initramfs") != std::string::npos);
  ::unlink(junk.c_str());
  ::unlink(empty.c_str());
}

TEST_CASE("default command line and exit reason names") {
  std::string cmd = default_cmdline(true);
  CHECK(cmd.find("console=ttyS0") != std::string::npos);
  CHECK(cmd.find("reboot=k") != std::string::npos);
  CHECK(cmd.find("panic=-1") != std::string::npos);
  CHECK(cmd.find("cryptomgr.notests") != std::string::npos);
  CHECK(cmd.find("quiet") != std::string::npos);
  CHECK(default_cmdline(false).find("quiet") == std::string::npos);
  CHECK(std::string(exit_reason_name(ExitInfo::Reason::reboot)) == "reboot");
  CHECK(std::string(exit_reason_name(ExitInfo::Reason::stopped)) == "stopped");
}

TEST_CASE("default kernel and initramfs come from AIRLOCK_CACHE_DIR") {
  char dir[] = "/tmp/airlock-cache-XXXXXX";
  REQUIRE(::mkdtemp(dir));
  std::string root = dir;
  ::setenv("AIRLOCK_CACHE_DIR", dir, 1);
  CHECK(cache_dir() == root);
  auto k = default_kernel_path();
  CHECK(k.status().code() == Errc::unavailable);
  CHECK(k.status().message().find("scripts/fetch-kernel.sh") != std::string::npos);
  CHECK(default_initramfs_path().status().message().find("scripts/build-initramfs.sh") !=
        std::string::npos);

  REQUIRE(::system(("mkdir -p " + root + "/kernel/current " + root + "/initramfs").c_str()) == 0);
  std::ofstream(root + "/kernel/current/vmlinuz") << "z";
  CHECK(*default_kernel_path() == root + "/kernel/current/vmlinuz");
  std::ofstream(root + "/kernel/current/vmlinux") << "x";
  CHECK(*default_kernel_path() == root + "/kernel/current/vmlinux");  // uncompressed preferred
  std::ofstream(root + "/initramfs/test.cpio.gz") << "i";
  CHECK(*default_initramfs_path() == root + "/initramfs/test.cpio.gz");
  ::unsetenv("AIRLOCK_CACHE_DIR");
  REQUIRE(::system(("rm -rf " + root).c_str()) == 0);
}
