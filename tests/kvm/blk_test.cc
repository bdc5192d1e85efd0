// virtio-blk against Linux's own driver: boots the test initramfs with a read-write volume and
// a read-only base image, and drives them from the guest shell on the serial console: serials
// in sysfs, ext4 mount, read of a host-written file, a write that the host then finds in the
// image, refused writes to the read-only disk and past the end of the volume.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "../host_tools.h"
#include "devices/blk.h"
#include "image/ext4.h"
#include "vmm/defaults.h"
#include "vmm/machine.h"

namespace airlock {
namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-kvm-blk-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

using test::debugfs;
using test::shell_output;

void put_file(const std::string& image, const std::string& name, const std::string& content,
              const std::string& scratch) {
  const std::string host = scratch + "/put-" + name;
  std::ofstream(host) << content;
  shell_output(debugfs() + " -w -R 'write " + host + " " + name + "' " + image + " 2>&1");
}

std::string get_file(const std::string& image, const std::string& name) {
  return shell_output(debugfs() + " -R 'cat /" + name + "' " + image + " 2>/dev/null");
}

bool wait_for(const vmm::Machine& m, const std::string& marker, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (m.console_output().find(marker) != std::string::npos) return true;
    if (!m.running()) return m.console_output().find(marker) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

// The guest shell script, one command per line. Disks are found by serial, as the agent does.
const char* kGuestScript[] = {
    "for d in /sys/block/vd*; do echo \"DISK ${d##*/} $(cat $d/serial) ro=$(cat $d/ro) "
    "size=$(cat $d/size)\"; done",
    "for d in /sys/block/vd*; do case $(cat $d/serial) in airlock-vol0) V=/dev/${d##*/};; "
    "airlock-root) R=/dev/${d##*/};; esac; done",
    "mkdir -p /mnt/v /mnt/r",
    "mount -t ext4 $V /mnt/v && echo \"VOL_READ=$(cat /mnt/v/hello.txt)\"",
    "echo written-by-guest > /mnt/v/guest.txt; sync; umount /mnt/v && echo VOL_UMOUNT_OK",
    "mount -t ext4 -o ro,noload $R /mnt/r && echo \"ROOT_READ=$(cat /mnt/r/marker)\"",
    "dd if=/dev/zero of=$R bs=512 count=1 conv=notrunc 2>/dev/null; echo \"RO_WRITE_RC=$?\"",
    "S=$(cat /sys/block/${V#/dev/}/size); dd if=/dev/zero of=$V bs=512 seek=$S count=1 "
    "conv=notrunc 2>/dev/null; echo \"PAST_END_RC=$?\"",
    "dd if=$V bs=512 skip=$((S-1)) count=1 2>/dev/null | wc -c | sed 's/^/LAST_SECTOR_BYTES=/'",
    "echo BLK_SCRIPT_DONE",
};

}  // namespace

TEST_CASE("blk: Linux mounts, reads and writes a volume, read-only and past-end writes fail") {
  auto kernel = vmm::default_kernel_path();
  auto initramfs = vmm::default_initramfs_path();
  REQUIRE_MESSAGE(kernel.ok(), kernel.status().to_string());
  REQUIRE_MESSAGE(initramfs.ok(), initramfs.status().to_string());

  TempDir dir;
  const std::string volume = dir.file("vol0.ext4");
  const std::string root = dir.file("root.ext4");
  constexpr uint64_t kVolumeSize = 32ull << 20;
  REQUIRE(image::make_ext4(volume, kVolumeSize, {.label = "vol0"}).ok());
  REQUIRE(image::make_ext4(root, 16ull << 20, {.label = "root"}).ok());
  put_file(volume, "hello.txt", "hello-from-host\n", dir.path);
  put_file(root, "marker", "base-image\n", dir.path);
  const std::string root_before = shell_output("sha256sum < " + root);

  vmm::MachineConfig config;
  config.kernel_path = *kernel;
  config.initramfs_path = *initramfs;
  config.memory_bytes = 256ull << 20;
  config.vcpus = 1;
  auto machine = vmm::Machine::create(config);
  REQUIRE_MESSAGE(machine.ok(), machine.status().to_string());
  auto& m = **machine;

  auto vol = devices::BlkDevice::open({.path = volume, .serial = "airlock-vol0"});
  auto base = devices::BlkDevice::open({.path = root, .read_only = true, .serial = "airlock-root"});
  REQUIRE(vol.ok());
  REQUIRE(base.ok());
  REQUIRE(m.add_virtio_device(*vol).ok());
  REQUIRE(m.add_virtio_device(*base).ok());
  REQUIRE(m.start().ok());

  // Nested (TCG) runs are tens of times slower than hardware: generous deadlines.
  REQUIRE_MESSAGE(wait_for(m, "AIRLOCK_USERSPACE_READY", std::chrono::seconds(240)),
                  m.console_output());
  for (const char* line : kGuestScript) {
    REQUIRE(m.write_console(std::string(line) + "\n").ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  const bool done = wait_for(m, "BLK_SCRIPT_DONE\r\n", std::chrono::seconds(240)) ||
                    wait_for(m, "BLK_SCRIPT_DONE\n", std::chrono::seconds(1));
  (void)m.write_console("reboot -f\n");
  (void)m.wait(std::chrono::seconds(60));
  m.kill();
  const std::string out = m.console_output();
  INFO(out);
  REQUIRE(done);

  CHECK(out.find("airlock-vol0 ro=0 size=" + std::to_string(kVolumeSize / 512)) !=
        std::string::npos);
  CHECK(out.find("airlock-root ro=1") != std::string::npos);
  CHECK(out.find("VOL_READ=hello-from-host") != std::string::npos);
  CHECK(out.find("VOL_UMOUNT_OK") != std::string::npos);
  CHECK(out.find("ROOT_READ=base-image") != std::string::npos);
  CHECK(out.find("RO_WRITE_RC=0") == std::string::npos);
  CHECK(out.find("RO_WRITE_RC=1") != std::string::npos);
  CHECK(out.find("PAST_END_RC=0") == std::string::npos);
  CHECK(out.find("PAST_END_RC=1") != std::string::npos);
  CHECK(out.find("LAST_SECTOR_BYTES=512") != std::string::npos);

  // What the guest wrote is in the image; the read-only image and the volume's size are not
  // touched.
  CHECK(get_file(volume, "guest.txt") == "written-by-guest\n");
  CHECK(image::inspect(volume).ok());
  CHECK(std::filesystem::file_size(volume) == kVolumeSize);
  CHECK(shell_output("sha256sum < " + root) == root_before);
  CHECK((*vol)->stats().bytes_written > 0);
  CHECK((*base)->stats().bytes_written == 0);
}

}  // namespace airlock
