// Persistence end to end: sandboxes booting the Debian root image (scripts/build-rootfs.sh)
// through the sandbox initramfs (scripts/build-sandbox-image.sh), volumes that outlive their
// sandbox, one writer per volume, root snapshots with a package installed by dpkg, and images
// that are truncated or corrupt. Each boot costs 10-20 s on nested runners, so cases group
// checks: 5 boots in all.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "../host_tools.h"
#include "airlock/airlock.hpp"
#include "airlock/storage.hpp"
#include "image/ext4.h"

using namespace airlock;

namespace {

// A fresh store in $TMPDIR or /tmp, where the test and its VMs run: in the nested runner that
// is the runner's own tmpfs (sparse files and SEEK_DATA work there; the shared 9p directories
// would make every snapshot copy the whole disk size).
struct TestStore {
  std::string dir;
  TestStore() {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = std::string(tmp && *tmp ? tmp : "/tmp") + "/airlock-kvm-persist-XXXXXX";
    REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    dir = tmpl;
  }
  ~TestStore() { std::filesystem::remove_all(dir); }
  Storage open() const {
    auto s = Storage::open(dir);
    REQUIRE_MESSAGE(s.ok(), s.status().to_string());
    return std::move(s).value();
  }
};

struct Booted {
  std::unique_ptr<Sandbox> sb;
  double seconds = 0;
};

Result<std::unique_ptr<Sandbox>> try_boot(SandboxOptions options) {
  options.boot_timeout = Millis(240000);  // nested TCG runners are slow
  if (std::getenv("AIRLOCK_TEST_CONSOLE"))
    options.on_console = [](std::string_view s) { (void)!fwrite(s.data(), 1, s.size(), stderr); };
  return Sandbox::create(std::move(options));
}

Booted boot(SandboxOptions options) {
  auto start = std::chrono::steady_clock::now();
  auto sb = try_boot(std::move(options));
  REQUIRE_MESSAGE(sb.ok(), sb.status().to_string());
  Booted b;
  b.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  b.sb = std::move(sb).value();
  return b;
}

// Every command is bounded, so a stuck guest fails the test with the console instead of hanging.
ExecOptions bounded() {
  ExecOptions o;
  o.timeout = Millis(120000);
  return o;
}

ExecResult must(Result<ExecResult> r) {
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

using test::debugfs;
using test::shell_output;

}  // namespace

TEST_CASE("persist: root image runs Debian tools and a volume outlives its sandbox") {
  TestStore ts;
  Storage store = ts.open();
  auto vol = store.create_volume("data", 64ull << 20);
  REQUIRE_MESSAGE(vol.ok(), vol.status().to_string());

  SandboxOptions o;
  o.storage_dir = ts.dir;
  o.root_image = "default";
  o.volumes = {{"data", "/data", false}};
  Booted first = boot(o);
  MESSAGE("boot with the root image and a volume: " << first.seconds << " s");
  Sandbox& sb = *first.sb;

  // The Debian root, not the initramfs: its python3 and curl run.
  auto py = must(
      sb.exec({"python3", "-c", "import sys, ssl; print(sys.version_info[0] * 14)"}, bounded()));
  CHECK_MESSAGE(py.success(), py.stderr);
  CHECK(py.text() == "42");
  auto curl = must(sb.sh("curl --version", bounded()));
  CHECK_MESSAGE(curl.success(), curl.stderr);
  CHECK(curl.stdout.rfind("curl ", 0) == 0);
  CHECK(must(sb.sh("grep -c '^ID=debian' /etc/os-release", bounded())).text() == "1");
  // The root is an overlay (writable in memory); the volume is ext4 at its path.
  CHECK(must(sb.sh("awk '$2 == \"/\" {print $3}' /proc/mounts", bounded())).text() == "overlay");
  CHECK(must(sb.sh("awk '$2 == \"/data\" {print $3}' /proc/mounts", bounded())).text() == "ext4");
  CHECK(must(sb.sh("echo scratch > /etc/scratch && cat /etc/scratch", bounded())).text() ==
        "scratch");
  REQUIRE(sb.fs().write("/data/hello.txt", "written by the first sandbox").ok());

  // A second writer is refused before anything boots, naming the volume.
  {
    SandboxOptions second;
    second.storage_dir = ts.dir;
    second.volumes = {{"data", "/mnt/data", false}};
    auto refused = try_boot(second);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.status().code() == Errc::unavailable);
    CHECK_MESSAGE(refused.status().message().find("volume data") != std::string::npos,
                  refused.status().to_string());
    auto listed = store.volume("data");
    REQUIRE(listed.ok());
    CHECK(listed->in_use);
    // Nor can it be snapshotted or deleted while attached.
    CHECK(store.snapshot_volume("data", "too-early").status().code() == Errc::unavailable);
    CHECK(store.remove_volume("data").code() == Errc::unavailable);
  }
  first.sb->close();

  // The next sandbox (initramfs root this time) finds the file.
  SandboxOptions next;
  next.storage_dir = ts.dir;
  next.volumes = {{"data", "/srv/my data", false}};  // a path with a space travels escaped
  Booted second = boot(next);
  MESSAGE("boot with the initramfs and a volume: " << second.seconds << " s");
  auto read = second.sb->fs().read("/srv/my data/hello.txt");
  REQUIRE_MESSAGE(read.ok(), read.status().to_string());
  CHECK(*read == "written by the first sandbox");
  // The initramfs root is unchanged: no Debian here.
  CHECK_FALSE(must(second.sb->sh("test -e /etc/os-release", bounded())).success());
  second.sb->close();

  // Volume snapshot -> new volume, checked on the host with debugfs.
  auto snap = store.snapshot_volume("data", "data-v1");
  REQUIRE_MESSAGE(snap.ok(), snap.status().to_string());
  CHECK_FALSE(snap->is_root);
  auto copy = store.volume_from_snapshot("data-v1", "data-copy");
  REQUIRE_MESSAGE(copy.ok(), copy.status().to_string());
  const std::string copy_path = ts.dir + "/volumes/data-copy.ext4";
  CHECK(shell_output(debugfs() + " -R 'cat /hello.txt' '" + copy_path + "' 2>/dev/null") ==
        "written by the first sandbox");
  auto vols = store.list_volumes();
  REQUIRE(vols.ok());
  CHECK(vols->size() == 2);
  CHECK(store.remove_snapshot("data-v1").ok());
  CHECK(store.remove_volume("data-copy").ok());
  CHECK(store.volume("data-copy").status().code() == Errc::not_found);
}

TEST_CASE("persist: a package installed with dpkg survives a root snapshot") {
  TestStore ts;
  Storage store = ts.open();
  // A tiny .deb built here with dpkg-deb.
  const std::string pkg = ts.dir + "/pkg";
  std::filesystem::create_directories(pkg + "/DEBIAN");
  std::filesystem::create_directories(pkg + "/usr/bin");
  std::ofstream(pkg + "/DEBIAN/control")
      << "Package: airlock-hello\nVersion: 1.0\nArchitecture: all\nMaintainer: airlock tests "
         "<tests@localhost>\nDescription: test package\n";
  std::ofstream(pkg + "/usr/bin/airlock-hello") << "#!/bin/sh\necho hello from a package\n";
  ::chmod((pkg + "/usr/bin/airlock-hello").c_str(), 0755);
  const std::string deb = ts.dir + "/airlock-hello.deb";
  shell_output("dpkg-deb --root-owner-group -b '" + pkg + "' '" + deb + "' >/dev/null 2>&1");
  REQUIRE(std::filesystem::exists(deb));

  SandboxOptions o;
  o.storage_dir = ts.dir;
  o.root_image = "default";
  o.snapshottable_root = true;
  o.root_upper_bytes = 1ull << 30;
  Booted first = boot(o);
  MESSAGE("boot with the root image and a disk upper: " << first.seconds << " s");
  Sandbox& sb = *first.sb;
  REQUIRE(sb.fs().upload(deb, "/root/airlock-hello.deb").ok());
  auto installed =
      must(sb.sh("dpkg -i /root/airlock-hello.deb && rm /root/airlock-hello.deb", bounded()));
  REQUIRE_MESSAGE(installed.success(), (installed.stdout + installed.stderr));
  CHECK(must(sb.sh("airlock-hello", bounded())).text() == "hello from a package");
  auto snap = sb.snapshot("with-hello");
  REQUIRE_MESSAGE(snap.ok(), snap.status().to_string());
  CHECK(snap->is_root);
  // The guest filesystem is thawed again: writing works after the snapshot.
  CHECK(must(sb.sh("echo after > /root/after && cat /root/after", bounded())).text() == "after");
  CHECK(sb.snapshot("with-hello").status().code() == Errc::invalid_argument);  // exists
  first.sb->close();

  o.root_image.clear();
  o.snapshottable_root = false;
  o.root_snapshot = "with-hello";
  Booted second = boot(o);
  MESSAGE("boot from a root snapshot: " << second.seconds << " s");
  CHECK(must(second.sb->sh("airlock-hello", bounded())).text() == "hello from a package");
  CHECK(must(second.sb->sh("dpkg-query -W -f '${Status}' airlock-hello", bounded())).text() ==
        "install ok installed");
  // Taken before these were written or removed.
  CHECK_FALSE(must(second.sb->sh("test -e /root/after", bounded())).success());
  CHECK_FALSE(must(second.sb->sh("test -e /root/airlock-hello.deb", bounded())).success());
  // While a sandbox boots from it, the snapshot cannot be removed.
  CHECK(store.remove_snapshot("with-hello").code() == Errc::unavailable);
  // Without a disk upper there is nothing to snapshot.
  CHECK(second.sb->snapshot("again").status().code() == Errc::invalid_argument);
  second.sb->close();
  CHECK(store.remove_snapshot("with-hello").ok());
}

TEST_CASE("persist: truncated and corrupt images are clear errors") {
  TestStore ts;
  Storage store = ts.open();
  const std::string good = ts.dir + "/good.ext4";
  REQUIRE(image::make_ext4(good, 16ull << 20).ok());

  SandboxOptions o;
  o.storage_dir = ts.dir;

  // Truncated base image: refused before boot.
  const std::string truncated = ts.dir + "/truncated.ext4";
  std::filesystem::copy_file(good, truncated);
  REQUIRE(::truncate(truncated.c_str(), 8ull << 20) == 0);
  o.root_image = truncated;
  auto r = try_boot(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::bad_image);
  CHECK_MESSAGE(r.status().message().find("root base image") != std::string::npos,
                r.status().to_string());

  // Not ext4 at all.
  const std::string garbage = ts.dir + "/garbage.ext4";
  std::ofstream(garbage) << std::string(1 << 20, 'x');
  o.root_image = garbage;
  r = try_boot(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::bad_image);

  // Missing image and missing snapshot.
  o.root_image = ts.dir + "/absent.ext4";
  CHECK(try_boot(o).status().code() == Errc::not_found);
  o.root_image.clear();
  o.root_snapshot = "absent";
  CHECK(try_boot(o).status().code() == Errc::not_found);
  o.root_snapshot.clear();

  // A corrupt volume (its superblock overwritten) names the volume.
  REQUIRE(store.create_volume("broken", 16ull << 20).ok());
  {
    int fd = ::open((ts.dir + "/volumes/broken.ext4").c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    std::string junk(4096, '\x5a');
    REQUIRE(::pwrite(fd, junk.data(), junk.size(), 0) == 4096);
    ::close(fd);
  }
  o.volumes = {{"broken", "/data", false}};
  r = try_boot(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::bad_image);
  CHECK_MESSAGE(r.status().message().find("volume broken") != std::string::npos,
                r.status().to_string());
  o.volumes = {{"no-such-volume", "/data", false}};
  CHECK(try_boot(o).status().code() == Errc::not_found);
  o.volumes = {{"broken", "relative/path", false}};
  CHECK(try_boot(o).status().code() == Errc::invalid_argument);
  o.volumes.clear();
  o.snapshottable_root = true;  // without a root image
  CHECK(try_boot(o).status().code() == Errc::invalid_argument);
}

TEST_CASE(
    "persist: an image whose superblock passes but whose metadata is corrupt fails the boot "
    "clearly") {
  TestStore ts;
  const std::string bad = ts.dir + "/bad-groups.ext4";
  REQUIRE(image::make_ext4(bad, 16ull << 20).ok());
  {
    // The group descriptor block (block 1 of a 4 KiB-block filesystem) zeroed: the superblock
    // check on the host passes, the guest's mount fails.
    int fd = ::open(bad.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    std::string zeros(4096, '\0');
    REQUIRE(::pwrite(fd, zeros.data(), zeros.size(), 4096) == 4096);
    ::close(fd);
  }
  SandboxOptions o;
  o.storage_dir = ts.dir;
  o.root_image = bad;
  auto r = try_boot(o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::unavailable);
  CHECK_MESSAGE(r.status().message().find("mount /dev/vd") != std::string::npos,
                r.status().to_string());
}
