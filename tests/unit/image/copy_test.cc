#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "base/fd.h"
#include "image/copy.h"
#include "test_util.h"

namespace airlock::image {

TEST_CASE("image: copy_image keeps holes and bytes") {
  testing::TempDir dir;
  const std::string src_path = dir.file("src.img");
  constexpr uint64_t kSize = 64ull << 20;
  {
    UniqueFd fd(::open(src_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644));
    REQUIRE(fd);
    REQUIRE(::ftruncate(fd.get(), kSize) == 0);
    // Three islands of data in a sea of holes, one at the very end.
    const std::string a(8192, 'a'), b(4096, 'b'), c(512, 'c');
    REQUIRE(::pwrite(fd.get(), a.data(), a.size(), 0) == static_cast<ssize_t>(a.size()));
    REQUIRE(::pwrite(fd.get(), b.data(), b.size(), 20 << 20) == static_cast<ssize_t>(b.size()));
    REQUIRE(::pwrite(fd.get(), c.data(), c.size(), kSize - 512) == static_cast<ssize_t>(c.size()));
  }
  UniqueFd src(::open(src_path.c_str(), O_RDONLY));
  REQUIRE(src);
  const std::string dst_path = dir.file("dst.img");
  auto copied = copy_image(src.get(), dst_path, 0444);
  REQUIRE_MESSAGE(copied.ok(), copied.status().to_string());
  if (!copied->reflinked) CHECK(copied->bytes_copied < (1 << 20));

  auto src_bytes = read_file(src_path, kSize);
  auto dst_bytes = read_file(dst_path, kSize);
  REQUIRE(src_bytes.ok());
  REQUIRE(dst_bytes.ok());
  CHECK(dst_bytes->size() == kSize);
  CHECK(*dst_bytes == *src_bytes);
  struct stat st {};
  REQUIRE(::stat(dst_path.c_str(), &st) == 0);
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < (2 << 20));
  CHECK((st.st_mode & 0777) == 0444);

  // Never overwrites.
  CHECK(!copy_image(src.get(), dst_path).ok());
  CHECK(read_file(dst_path, kSize).value() == *src_bytes);
}

}  // namespace airlock::image
