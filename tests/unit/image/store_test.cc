#include <doctest/doctest.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "base/fd.h"
#include "image/store.h"
#include "test_util.h"

namespace airlock::image {
namespace {

using testing::TempDir;

constexpr uint64_t kVolumeSize = 16ull << 20;

struct StoreFixture {
  TempDir dir;
  ImageStore store = ImageStore::open(dir.file("cache")).value();
};

// What BlkDevice does when a sandbox attaches a volume read-write.
UniqueFd attach_writer(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  REQUIRE(fd);
  REQUIRE(::flock(fd.get(), LOCK_EX | LOCK_NB) == 0);
  return fd;
}

}  // namespace

TEST_CASE("store: the default directory follows AIRLOCK_CACHE_DIR, then HOME") {
  const char* old = std::getenv("AIRLOCK_CACHE_DIR");
  const std::string saved = old ? old : "";
  ::setenv("AIRLOCK_CACHE_DIR", "/tmp/airlock-test-cache", 1);
  CHECK(ImageStore::default_root().value() == "/tmp/airlock-test-cache");
  ::unsetenv("AIRLOCK_CACHE_DIR");
  if (const char* home = std::getenv("HOME"))
    CHECK(ImageStore::default_root().value() == std::string(home) + "/.cache/airlock");
  if (old) ::setenv("AIRLOCK_CACHE_DIR", saved.c_str(), 1);
}

TEST_CASE("store: names are checked") {
  CHECK(ImageStore::valid_name("data"));
  CHECK(ImageStore::valid_name("py-3.11_deps"));
  CHECK(!ImageStore::valid_name(""));
  CHECK(!ImageStore::valid_name(".hidden"));
  CHECK(!ImageStore::valid_name("-x"));
  CHECK(!ImageStore::valid_name("../etc"));
  CHECK(!ImageStore::valid_name("a/b"));
  CHECK(!ImageStore::valid_name("a b"));
  CHECK(!ImageStore::valid_name(std::string(65, 'a')));
  StoreFixture f;
  CHECK(f.store.create_volume("../escape", kVolumeSize).status().code() == Errc::invalid_argument);
}

TEST_CASE("store: volumes are created sparse, listed and deleted") {
  StoreFixture f;
  auto v = f.store.create_volume("data", kVolumeSize);
  REQUIRE_MESSAGE(v.ok(), v.status().to_string());
  CHECK(v->path == f.store.volume_path("data"));
  CHECK(v->size_bytes == kVolumeSize);
  CHECK(v->allocated_bytes < kVolumeSize / 2);
  CHECK(!v->in_use);
  auto info = inspect(v->path);
  REQUIRE(info.ok());
  CHECK(info->label == "data");

  // Rounded up to whole MiB, never below the minimum.
  CHECK(f.store.create_volume("odd", kVolumeSize + 1).value().size_bytes ==
        kVolumeSize + (1 << 20));
  CHECK(f.store.create_volume("tiny", 1).value().size_bytes == ImageStore::kMinVolumeBytes);
  CHECK(f.store.create_volume("data", kVolumeSize).status().code() == Errc::invalid_argument);

  auto list = f.store.list_volumes();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 3);
  CHECK((*list)[0].name == "data");
  CHECK((*list)[1].name == "odd");
  CHECK((*list)[2].name == "tiny");

  CHECK(f.store.delete_volume("odd").ok());
  CHECK(f.store.delete_volume("odd").code() == Errc::not_found);
  CHECK(f.store.volume("odd").status().code() == Errc::not_found);
  CHECK(f.store.list_volumes()->size() == 2);
}

TEST_CASE("store: a volume attached read-write cannot be deleted or snapshotted") {
  StoreFixture f;
  auto v = f.store.create_volume("data", kVolumeSize);
  REQUIRE(v.ok());
  {
    UniqueFd writer = attach_writer(v->path);
    CHECK(f.store.volume("data")->in_use);
    Status del = f.store.delete_volume("data");
    CHECK(del.code() == Errc::unavailable);
    CHECK(del.message() == "volume data is in use by another sandbox");
    auto snap = f.store.snapshot_volume("data", "s");
    CHECK(snap.status().code() == Errc::unavailable);
    CHECK(f.store.snapshot("s").status().code() == Errc::not_found);
  }
  CHECK(!f.store.volume("data")->in_use);
  CHECK(f.store.delete_volume("data").ok());
}

TEST_CASE("store: a snapshot is a read-only copy, a new volume starts from it") {
  StoreFixture f;
  auto v = f.store.create_volume("data", kVolumeSize);
  REQUIRE(v.ok());
  testing::put_file(v->path, "hello.txt", "written in sandbox one\n", f.dir.path);
  REQUIRE(testing::get_file(v->path, "hello.txt") == "written in sandbox one\n");

  auto snap = f.store.snapshot_volume("data", "data-v1");
  REQUIRE_MESSAGE(snap.ok(), snap.status().to_string());
  CHECK(!snap->is_root);
  CHECK(snap->size_bytes == kVolumeSize);
  CHECK(snap->allocated_bytes < kVolumeSize / 2);
  struct stat st {};
  REQUIRE(::stat(snap->path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0444);
  CHECK(inspect(snap->path).ok());
  CHECK(f.store.snapshot_volume("data", "data-v1").status().code() == Errc::invalid_argument);

  // Later changes to the volume do not reach the snapshot.
  testing::put_file(v->path, "later.txt", "after the snapshot\n", f.dir.path);
  CHECK(testing::get_file(snap->path, "later.txt").empty());
  CHECK(testing::get_file(snap->path, "hello.txt") == "written in sandbox one\n");

  auto copy = f.store.volume_from_snapshot("data-v1", "data2");
  REQUIRE_MESSAGE(copy.ok(), copy.status().to_string());
  CHECK(testing::get_file(copy->path, "hello.txt") == "written in sandbox one\n");
  REQUIRE(::stat(copy->path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
  CHECK(f.store.volume_from_snapshot("missing", "x").status().code() == Errc::not_found);
  CHECK(f.store.volume_from_snapshot("data-v1", "data2").status().code() == Errc::invalid_argument);

  auto snaps = f.store.list_snapshots();
  REQUIRE(snaps.ok());
  REQUIRE(snaps->size() == 1);
  CHECK(f.store.delete_snapshot("data-v1").ok());
  CHECK(f.store.list_snapshots()->empty());
}

TEST_CASE("store: snapshotting a corrupt volume fails and leaves nothing") {
  StoreFixture f;
  auto v = f.store.create_volume("data", kVolumeSize);
  REQUIRE(v.ok());
  REQUIRE(::truncate(v->path.c_str(), kVolumeSize / 2) == 0);
  auto snap = f.store.snapshot_volume("data", "broken");
  CHECK(snap.status().code() == Errc::bad_image);
  CHECK(f.store.list_snapshots()->empty());
  CHECK(testing::shell_output("ls -A " + f.dir.file("cache/snapshots")).empty());
}

TEST_CASE("store: root snapshots stack layers on a base, and layers in use stay") {
  StoreFixture f;
  const std::string base = f.dir.file("rootfs.ext4");
  REQUIRE(make_ext4(base, kVolumeSize).ok());
  auto upper1 = f.store.create_volume("upper1", kVolumeSize);
  auto upper2 = f.store.create_volume("upper2", kVolumeSize);
  REQUIRE(upper1.ok());
  REQUIRE(upper2.ok());
  testing::put_file(upper1->path, "pkg", "installed\n", f.dir.path);

  // The sandbox holds its upper read-write (and locked) while snapshotting.
  UniqueFd writer1 = attach_writer(upper1->path);
  auto s1 = f.store.snapshot_root(writer1.get(), RootImage{base, {}}, "with-pkg");
  REQUIRE_MESSAGE(s1.ok(), s1.status().to_string());
  CHECK(s1->is_root);
  CHECK(s1->root.base == base);
  REQUIRE(s1->root.layers.size() == 1);
  CHECK(s1->root.layers[0] == f.store.snapshot_path("with-pkg"));
  CHECK(testing::get_file(s1->path, "pkg") == "installed\n");

  // A sandbox booted from with-pkg snapshots again: the layers stack.
  UniqueFd writer2 = attach_writer(upper2->path);
  auto s2 = f.store.snapshot_root(writer2.get(), s1->root, "with-more");
  REQUIRE(s2.ok());
  REQUIRE(s2->root.layers.size() == 2);
  CHECK(s2->root.layers[0] == s1->path);
  CHECK(s2->root.layers[1] == s2->path);
  CHECK(f.store.snapshot("with-more")->root.layers == s2->root.layers);

  Status del = f.store.delete_snapshot("with-pkg");
  CHECK(del.code() == Errc::unavailable);
  CHECK(del.message().find("with-more") != std::string::npos);
  // A sandbox booted from with-more holds a shared lock on its image.
  {
    UniqueFd reader(::open(s2->path.c_str(), O_RDONLY));
    REQUIRE(::flock(reader.get(), LOCK_SH | LOCK_NB) == 0);
    CHECK(f.store.delete_snapshot("with-more").code() == Errc::unavailable);
  }
  CHECK(f.store.delete_snapshot("with-more").ok());
  CHECK(f.store.delete_snapshot("with-pkg").ok());

  // A missing base is refused.
  auto bad = f.store.snapshot_root(writer1.get(), RootImage{f.dir.file("nope.ext4"), {}}, "x");
  CHECK(bad.status().code() == Errc::not_found);
  CHECK(f.store.list_snapshots()->empty());
}

}  // namespace airlock::image

namespace airlock::image {

TEST_CASE("store: a snapshot of a volume with a pending journal is replayed in the copy only") {
  StoreFixture f;
  auto v = f.store.create_volume("data", kVolumeSize);
  REQUIRE(v.ok());
  testing::put_file(v->path, "kept.txt", "kept\n", f.dir.path);
  // What a sandbox killed mid-write leaves behind (debugfs keeps the superblock checksum right).
  testing::shell_output(testing::debugfs() + " -w -R 'feature needs_recovery' " + v->path +
                        " 2>&1");
  REQUIRE(inspect(v->path)->needs_recovery);
  auto snap = f.store.snapshot_volume("data", "s");
  REQUIRE_MESSAGE(snap.ok(), snap.status().to_string());
  auto info = inspect(snap->path);
  REQUIRE(info.ok());
  CHECK(!info->needs_recovery);
  CHECK(testing::get_file(snap->path, "kept.txt") == "kept\n");
  CHECK(inspect(v->path)->needs_recovery);  // the volume itself is not touched
}

}  // namespace airlock::image
