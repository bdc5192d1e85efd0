#include <doctest/doctest.h>
#include <unistd.h>

#include "image/disks.h"
#include "test_util.h"

namespace airlock::image {

TEST_CASE("disks: base, layers, upper, volumes in order with their serials") {
  testing::TempDir dir;
  ImageStore store = ImageStore::open(dir.file("cache")).value();
  const std::string base = dir.file("rootfs.ext4");
  REQUIRE(make_ext4(base, 16 << 20).ok());
  REQUIRE(make_ext4(dir.file("layer1.ext4"), 16 << 20).ok());
  REQUIRE(make_ext4(dir.file("upper.ext4"), 16 << 20).ok());
  auto data = store.create_volume("data", 16 << 20);
  auto cache = store.create_volume("cache", 16 << 20);
  REQUIRE(data.ok());
  REQUIRE(cache.ok());

  auto disks = plan_disks({base, {dir.file("layer1.ext4")}}, dir.file("upper.ext4"),
                          {{"data", data->path, false}, {"cache", cache->path, true}});
  REQUIRE_MESSAGE(disks.ok(), disks.status().to_string());
  REQUIRE(disks->size() == 5);
  CHECK((*disks)[0].serial == "airlock-root");
  CHECK((*disks)[0].read_only);
  CHECK((*disks)[0].path == base);
  CHECK((*disks)[1].serial == "airlock-layer1");
  CHECK((*disks)[1].read_only);
  CHECK((*disks)[2].serial == "airlock-upper");
  CHECK(!(*disks)[2].read_only);
  CHECK((*disks)[3].serial == "airlock-vol0");
  CHECK((*disks)[3].display_name == "volume data");
  CHECK(!(*disks)[3].read_only);
  CHECK((*disks)[4].serial == "airlock-vol1");
  CHECK((*disks)[4].read_only);
  for (const auto& d : *disks) CHECK(d.serial.size() <= 20);
  CHECK(layer_serial(kMaxLayers - 1).size() <= 20);
  CHECK(volume_serial(kMaxVolumes - 1).size() <= 20);

  // Without upper and volumes: just the base.
  auto plain = plan_disks({base, {}}, "", {});
  REQUIRE(plain.ok());
  CHECK(plain->size() == 1);
}

TEST_CASE("disks: a bad image is named before anything boots") {
  testing::TempDir dir;
  const std::string base = dir.file("rootfs.ext4");
  REQUIRE(make_ext4(base, 16 << 20).ok());
  const std::string vol = dir.file("vol.ext4");
  REQUIRE(make_ext4(vol, 16 << 20).ok());
  REQUIRE(::truncate(vol.c_str(), 8 << 20) == 0);
  auto r = plan_disks({base, {}}, "", {{"data", vol, false}});
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::bad_image);
  CHECK(r.status().message().rfind("volume data: ", 0) == 0);
  CHECK(r.status().message().find("truncated") != std::string::npos);

  r = plan_disks({dir.file("missing.ext4"), {}}, "", {});
  CHECK(r.status().code() == Errc::not_found);
  CHECK(r.status().message().rfind("root base image: ", 0) == 0);
  CHECK(plan_disks({"", {}}, "", {}).status().code() == Errc::invalid_argument);
  std::vector<VolumeAttachment> too_many(kMaxVolumes + 1, {"v", base, true});
  CHECK(plan_disks({base, {}}, "", too_many).status().code() == Errc::invalid_argument);
}

}  // namespace airlock::image
