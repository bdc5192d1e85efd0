#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "image/ext4.h"
#include "image/tool.h"
#include "test_util.h"

namespace airlock::image {
namespace {

using testing::TempDir;

constexpr uint64_t kSize = 32ull << 20;

void patch(const std::string& path, uint64_t offset, const void* bytes, size_t len) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(len));
}

}  // namespace

TEST_CASE("image: make_ext4 makes a sparse image that inspect accepts") {
  TempDir dir;
  const std::string path = dir.file("v.ext4");
  REQUIRE(make_ext4(path, kSize, {.label = "data"}).ok());
  auto info = inspect(path);
  REQUIRE_MESSAGE(info.ok(), info.status().to_string());
  CHECK(info->size_bytes == kSize);
  CHECK(info->block_size * info->block_count == kSize);
  CHECK(info->label == "data");
  CHECK(info->uuid.size() == 36);
  CHECK(info->clean);
  CHECK(!info->needs_recovery);
  // Sparse: mkfs writes metadata only.
  CHECK(info->allocated_bytes < kSize / 2);
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0644);
}

TEST_CASE("image: make_ext4 refuses bad arguments and leaves nothing behind") {
  TempDir dir;
  const std::string path = dir.file("v.ext4");
  CHECK(make_ext4(path, 1000).code() == Errc::invalid_argument);
  CHECK(make_ext4(path, 0).code() == Errc::invalid_argument);
  CHECK(make_ext4(path, kSize, {.label = std::string(17, 'x')}).code() == Errc::invalid_argument);
  CHECK(::access(path.c_str(), F_OK) != 0);
  REQUIRE(make_ext4(path, kSize).ok());
  CHECK(!make_ext4(path, kSize).ok());  // exists
  // mkfs itself failing (a source directory that does not exist): the error carries its output.
  const std::string other = dir.file("w.ext4");
  Status s = make_ext4(other, kSize, {.source_dir = dir.file("missing")});
  CHECK(s.code() == Errc::io);
  CHECK(s.message().find("mkfs.ext4") != std::string::npos);
  CHECK(::access(other.c_str(), F_OK) != 0);
}

TEST_CASE("image: make_ext4 with a source directory copies its files") {
  TempDir dir;
  std::filesystem::create_directories(dir.file("src/etc"));
  testing::write_text(dir.file("src/etc/hostname"), "airlock\n");
  const std::string path = dir.file("root.ext4");
  REQUIRE(make_ext4(path, kSize, {.source_dir = dir.file("src")}).ok());
  CHECK(testing::get_file(path, "etc/hostname") == "airlock\n");
}

TEST_CASE("image: inspect names what is wrong with a bad image") {
  TempDir dir;
  const std::string path = dir.file("bad.ext4");
  auto r = inspect(dir.file("missing.ext4"));
  CHECK(r.status().code() == Errc::not_found);

  testing::write_text(path, "");
  CHECK(inspect(path).status().code() == Errc::bad_image);

  testing::write_text(path, std::string(1000, 'x'));
  r = inspect(path);
  CHECK(r.status().code() == Errc::bad_image);
  CHECK(r.status().message().find("multiple of 512") != std::string::npos);

  testing::write_text(path, std::string(1 << 20, '\0'));
  r = inspect(path);
  CHECK(r.status().code() == Errc::bad_image);
  CHECK(r.status().message().find("magic") != std::string::npos);

  CHECK(inspect(dir.path).status().code() == Errc::bad_image);  // a directory
}

TEST_CASE("image: a truncated image is a clear bad_image error") {
  TempDir dir;
  const std::string path = dir.file("v.ext4");
  REQUIRE(make_ext4(path, kSize).ok());
  REQUIRE(::truncate(path.c_str(), kSize / 2) == 0);
  auto r = inspect(path);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::bad_image);
  CHECK(r.status().message().find("truncated") != std::string::npos);
}

TEST_CASE("image: a corrupt superblock is a clear bad_image error") {
  TempDir dir;
  const std::string path = dir.file("v.ext4");
  REQUIRE(make_ext4(path, kSize).ok());
  const uint32_t huge_log_block = 40;
  patch(path, 1024 + 0x18, &huge_log_block, sizeof huge_log_block);
  auto r = inspect(path);
  CHECK(r.status().code() == Errc::bad_image);
  const uint32_t zero = 0;
  REQUIRE(make_ext4(dir.file("w.ext4"), kSize).ok());
  patch(dir.file("w.ext4"), 1024 + 0x04, &zero, sizeof zero);
  CHECK(inspect(dir.file("w.ext4")).status().code() == Errc::bad_image);
}

TEST_CASE("image: run_tool reports a missing tool and a failing one") {
  CHECK(run_tool({"airlock-no-such-tool"}).code() == Errc::unavailable);
  Status s = run_tool({"sh", "-c", "echo something broke >&2; exit 3"});
  CHECK(s.code() == Errc::io);
  CHECK(s.message().find("exited with 3") != std::string::npos);
  CHECK(s.message().find("something broke") != std::string::npos);
  CHECK(run_tool({"sh", "-c", "exit 1"}, 1).ok());
  CHECK(run_tool({"true"}).ok());
}

}  // namespace airlock::image
