// virtio-blk end to end without KVM: a MockDriver brings the device up through the real
// virtio-mmio transport in a real GuestMemory and posts requests the way Linux's virtio_blk
// does (and the ways a hostile driver might), against real image files in a temp directory.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "../virtio/mock_driver.h"
#include "devices/blk.h"
#include "virtio/mmio.h"

namespace airlock::devices {
namespace {

using virtio::MmioTransport;
using virtio::testing::Buffer;
using virtio::testing::feature;
using virtio::testing::MockDriver;

constexpr uint64_t kHeader = 0x40000;
constexpr uint64_t kData = 0x50000;
constexpr uint64_t kStatus = 0x7f000;
constexpr uint64_t kImageSize = 64 * 1024;  // 128 sectors
constexpr uint8_t kUntouched = 0xee;

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-blk-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// Sector s holds bytes of value s+1, so a read at the wrong place shows.
std::vector<uint8_t> pattern(uint64_t size) {
  std::vector<uint8_t> v(size);
  for (uint64_t i = 0; i < size; ++i) v[i] = static_cast<uint8_t>(i / 512 + 1);
  return v;
}

void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

std::vector<uint8_t> read_file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

struct BlkFixture {
  TempDir dir;
  std::string image = dir.file("disk.img");
  GuestMemory mem = GuestMemory::create(1 << 20).value();
  std::atomic<int> interrupts{0};  // outlives the device's worker, which raises interrupts
  std::shared_ptr<BlkDevice> blk;
  std::unique_ptr<MmioTransport> transport;
  MockDriver drv{mem, 16};
  uint16_t completed = 0;

  explicit BlkFixture(BlkOptions options = {}, uint64_t image_size = kImageSize) {
    write_file(image, pattern(image_size));
    options.path = image;
    auto opened = BlkDevice::open(options);
    REQUIRE_MESSAGE(opened.ok(), opened.status().to_string());
    blk = opened.value();
    transport = std::make_unique<MmioTransport>(blk, mem);
    transport->set_interrupt_trigger([this] { ++interrupts; });
    virtio::testing::negotiate(*transport, feature(VIRTIO_F_VERSION_1) | blk->device_features());
    virtio::testing::setup_queue(*transport, 0, drv);
    virtio::testing::driver_ok(*transport);
  }

  void header(uint32_t type, uint64_t sector) {
    virtio_blk_outhdr h{};
    h.type = type;
    h.sector = sector;
    REQUIRE(mem.write_obj(kHeader, h).ok());
    REQUIRE(mem.write_obj<uint8_t>(kStatus, kUntouched).ok());
  }

  // Posts one chain, kicks, and waits for the device to hand it back.
  vring_used_elem submit(std::initializer_list<Buffer> buffers) {
    drv.add_and_publish(buffers);
    transport->notify(0);
    const uint16_t want = static_cast<uint16_t>(completed + 1);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (drv.used_idx() != want && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    REQUIRE(drv.used_idx() == want);
    return drv.used_elem(completed++);
  }

  uint8_t status() const { return mem.read_obj<uint8_t>(kStatus).value(); }

  // The usual Linux layout: header, data, status in three descriptors.
  vring_used_elem read(uint64_t sector, uint32_t len) {
    header(VIRTIO_BLK_T_IN, sector);
    return submit({{kHeader, 16, false}, {kData, len, true}, {kStatus, 1, true}});
  }
  vring_used_elem write(uint64_t sector, const std::vector<uint8_t>& data) {
    header(VIRTIO_BLK_T_OUT, sector);
    REQUIRE(mem.write(kData, data.data(), data.size()).ok());
    return submit({{kHeader, 16, false},
                   {kData, static_cast<uint32_t>(data.size()), false},
                   {kStatus, 1, true}});
  }
  std::vector<uint8_t> guest_data(size_t len) const {
    std::vector<uint8_t> v(len);
    REQUIRE(mem.read(kData, v.data(), len).ok());
    return v;
  }
  bool needs_reset() const { return (transport->status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0; }
};

template <class T>
T config_field(BlkDevice& blk, size_t offset) {
  T v{};
  blk.read_config(offset, reinterpret_cast<uint8_t*>(&v), sizeof v);
  return v;
}

}  // namespace

TEST_CASE("blk: config space reports capacity, segments and block size") {
  BlkFixture f;
  CHECK(f.blk->device_id() == VIRTIO_ID_BLOCK);
  CHECK(config_field<uint64_t>(*f.blk, offsetof(virtio_blk_config, capacity)) == kImageSize / 512);
  CHECK(config_field<uint32_t>(*f.blk, offsetof(virtio_blk_config, seg_max)) == BlkDevice::kSegMax);
  CHECK(config_field<uint32_t>(*f.blk, offsetof(virtio_blk_config, blk_size)) == 512);
  CHECK(config_field<uint32_t>(*f.blk, offsetof(virtio_blk_config, max_discard_seg)) == 1);
  // Past the end of the config space reads as zero.
  CHECK(config_field<uint32_t>(*f.blk, 4096) == 0);
  const uint64_t features = f.blk->device_features();
  CHECK((features & (1ull << VIRTIO_BLK_F_FLUSH)) != 0);
  CHECK((features & (1ull << VIRTIO_BLK_F_RO)) == 0);
  CHECK((features & (1ull << VIRTIO_BLK_F_DISCARD)) != 0);
}

TEST_CASE("blk: reads sectors into guest memory") {
  BlkFixture f;
  const auto used = f.read(3, 1024);
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(used.len == 1024 + 1);
  const auto expected = pattern(kImageSize);
  CHECK(f.guest_data(1024) ==
        std::vector<uint8_t>(expected.begin() + 3 * 512, expected.begin() + 5 * 512));
  CHECK(f.blk->stats().bytes_read == 1024);
  // The worker publishes the used ring first and raises the interrupt right after.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (f.interrupts.load() < 1 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  CHECK(f.interrupts.load() >= 1);
}

TEST_CASE("blk: writes reach the file and nothing else changes") {
  BlkFixture f;
  std::vector<uint8_t> data(1536, 0xab);
  f.write(10, data);
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  auto expected = pattern(kImageSize);
  std::fill(expected.begin() + 10 * 512, expected.begin() + 13 * 512, 0xab);
  CHECK(read_file_bytes(f.image) == expected);
  CHECK(f.blk->stats().bytes_written == 1536);
}

TEST_CASE("blk: header, data and status may share descriptors (any layout)") {
  BlkFixture f;
  // Write: header and data in one readable buffer.
  f.header(VIRTIO_BLK_T_OUT, 1);
  std::vector<uint8_t> data(512, 0x42);
  REQUIRE(f.mem.write(kHeader + 16, data.data(), data.size()).ok());
  f.submit({{kHeader, 16 + 512, false}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(read_file_bytes(f.image)[512] == 0x42);
  // Read: data and status in one writable buffer, data split over two descriptors.
  f.header(VIRTIO_BLK_T_IN, 1);
  f.submit({{kHeader, 16, false}, {kData, 100, true}, {kData + 100, 412 + 1, true}});
  const uint8_t status = f.mem.read_obj<uint8_t>(kData + 512).value();
  CHECK(status == VIRTIO_BLK_S_OK);
  CHECK(f.guest_data(512) == data);
}

TEST_CASE("blk: flush succeeds") {
  BlkFixture f;
  f.header(VIRTIO_BLK_T_FLUSH, 0);
  const auto used = f.submit({{kHeader, 16, false}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(used.len == 1);
}

TEST_CASE("blk: get-id returns the serial, NUL padded") {
  BlkOptions options;
  options.serial = "vol-data";
  BlkFixture f(options);
  REQUIRE(f.mem.write(kData, std::vector<uint8_t>(20, 0xff).data(), 20).ok());
  f.header(VIRTIO_BLK_T_GET_ID, 0);
  const auto used = f.submit({{kHeader, 16, false}, {kData, 20, true}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(used.len == 21);
  std::vector<uint8_t> expected(20, 0);
  std::memcpy(expected.data(), "vol-data", 8);
  CHECK(f.guest_data(20) == expected);
}

TEST_CASE("blk: a serial longer than 20 bytes is refused") {
  TempDir dir;
  write_file(dir.file("a.img"), pattern(4096));
  BlkOptions options;
  options.path = dir.file("a.img");
  options.serial = std::string(21, 'x');
  auto r = BlkDevice::open(options);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::invalid_argument);
  options.serial = std::string(20, 'x');
  CHECK(BlkDevice::open(options).ok());
}

TEST_CASE("blk: a read-only device refuses writes, discards and leaves the file alone") {
  BlkOptions options;
  options.read_only = true;
  BlkFixture f(options);
  CHECK((f.blk->device_features() & (1ull << VIRTIO_BLK_F_RO)) != 0);
  CHECK((f.blk->device_features() & (1ull << VIRTIO_BLK_F_DISCARD)) == 0);
  f.write(0, std::vector<uint8_t>(512, 0x11));
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  virtio_blk_discard_write_zeroes seg{};
  seg.sector = 0;
  seg.num_sectors = 8;
  REQUIRE(f.mem.write_obj(kData, seg).ok());
  f.header(VIRTIO_BLK_T_WRITE_ZEROES, 0);
  f.submit({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}});
  CHECK(f.status() != VIRTIO_BLK_S_OK);
  CHECK(read_file_bytes(f.image) == pattern(kImageSize));
  // Reads still work.
  f.read(0, 512);
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(f.blk->stats().bytes_written == 0);
}

TEST_CASE("blk: requests past the end fail and the image is unchanged past its end") {
  BlkFixture f;
  const uint64_t sectors = kImageSize / 512;
  // Starts inside, ends one sector past the end.
  f.write(sectors - 1, std::vector<uint8_t>(1024, 0x77));
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  // Starts past the end.
  f.write(sectors, std::vector<uint8_t>(512, 0x77));
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  // sector * 512 overflows 64 bits.
  f.write(UINT64_MAX / 512 + 1, std::vector<uint8_t>(512, 0x77));
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  f.write(UINT64_MAX, std::vector<uint8_t>(512, 0x77));
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  f.read(sectors, 512);
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  const auto bytes = read_file_bytes(f.image);
  CHECK(bytes.size() == kImageSize);
  CHECK(bytes == pattern(kImageSize));
  // The very last sector is still writable.
  f.write(sectors - 1, std::vector<uint8_t>(512, 0x77));
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(read_file_bytes(f.image).size() == kImageSize);
}

TEST_CASE("blk: malformed requests get an error status and the queue keeps working") {
  BlkFixture f;
  // Header shorter than 16 bytes.
  f.header(VIRTIO_BLK_T_IN, 0);
  f.submit({{kHeader, 8, false}, {kData, 512, true}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  // Data not a multiple of 512.
  f.read(0, 100);
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  // Unknown request type.
  f.header(0x1234, 0);
  f.submit({{kHeader, 16, false}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_UNSUPP);
  // No writable byte at all: nowhere to put a status; returned with length 0.
  f.header(VIRTIO_BLK_T_IN, 0);
  const auto used = f.submit({{kHeader, 16, false}, {kData, 512, false}});
  CHECK(used.len == 0);
  CHECK(f.status() == kUntouched);
  // A write whose "data" is writable (wrong direction) writes nothing: 0 readable data bytes.
  f.header(VIRTIO_BLK_T_OUT, 0);
  f.submit({{kHeader, 16, false}, {kData, 512, true}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(read_file_bytes(f.image) == pattern(kImageSize));
  // After all that, a good request still works.
  f.read(2, 512);
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  CHECK(f.guest_data(512) == std::vector<uint8_t>(512, 3));
  CHECK(!f.needs_reset());
  CHECK(f.blk->stats().errors == 4);
}

TEST_CASE("blk: a broken queue marks the device as needing reset, without crashing") {
  BlkFixture f;
  // A head index beyond the queue size.
  f.drv.publish(200);
  f.transport->notify(0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!f.needs_reset() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  CHECK(f.needs_reset());
}

TEST_CASE("blk: an image truncated under the device gives I/O errors, not a crash") {
  BlkFixture f;
  REQUIRE(::truncate(f.image.c_str(), kImageSize / 2) == 0);
  f.read(0, 512);
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  f.read(kImageSize / 512 - 2, 1024);
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
}

TEST_CASE("blk: images of a bad size are refused at open") {
  TempDir dir;
  BlkOptions options;
  options.path = dir.file("odd.img");
  write_file(options.path, std::vector<uint8_t>(1000, 0));
  auto r = BlkDevice::open(options);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::bad_image);
  write_file(options.path, {});
  r = BlkDevice::open(options);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::bad_image);
  options.path = dir.file("missing.img");
  r = BlkDevice::open(options);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::not_found);
}

TEST_CASE("blk: one writer at a time, readers only without a writer") {
  TempDir dir;
  const std::string path = dir.file("vol.img");
  write_file(path, pattern(8192));
  BlkOptions writer;
  writer.path = path;
  writer.display_name = "volume data";
  auto first = BlkDevice::open(writer);
  REQUIRE(first.ok());
  auto second = BlkDevice::open(writer);
  REQUIRE(!second.ok());
  CHECK(second.status().code() == Errc::unavailable);
  CHECK(second.status().message() == "volume data is in use by another sandbox");
  BlkOptions reader = writer;
  reader.read_only = true;
  CHECK(BlkDevice::open(reader).status().code() == Errc::unavailable);
  first = Status(Errc::closed, "released");  // closes the writer's file and lock
  auto r1 = BlkDevice::open(reader);
  auto r2 = BlkDevice::open(reader);
  CHECK(r1.ok());
  CHECK(r2.ok());
  CHECK(BlkDevice::open(writer).status().code() == Errc::unavailable);
}

TEST_CASE("blk: discard and write-zeroes punch holes that read back as zeros") {
  BlkFixture f;
  virtio_blk_discard_write_zeroes seg{};
  seg.sector = 8;
  seg.num_sectors = 16;
  REQUIRE(f.mem.write_obj(kData, seg).ok());
  f.header(VIRTIO_BLK_T_DISCARD, 0);
  f.submit({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  auto expected = pattern(kImageSize);
  std::fill(expected.begin() + 8 * 512, expected.begin() + 24 * 512, 0);
  CHECK(read_file_bytes(f.image) == expected);

  seg.sector = 40;
  seg.num_sectors = 3;
  seg.flags = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
  REQUIRE(f.mem.write_obj(kData, seg).ok());
  f.header(VIRTIO_BLK_T_WRITE_ZEROES, 0);
  f.submit({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_OK);
  std::fill(expected.begin() + 40 * 512, expected.begin() + 43 * 512, 0);
  CHECK(read_file_bytes(f.image) == expected);

  // The unmap flag on a discard, and unknown flags, are unsupported; past the end is an error.
  seg.sector = 0;
  REQUIRE(f.mem.write_obj(kData, seg).ok());
  f.header(VIRTIO_BLK_T_DISCARD, 0);
  f.submit({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_UNSUPP);
  seg.flags = 0;
  seg.sector = kImageSize / 512 - 1;
  seg.num_sectors = 2;
  REQUIRE(f.mem.write_obj(kData, seg).ok());
  f.header(VIRTIO_BLK_T_DISCARD, 0);
  f.submit({{kHeader, 16, false}, {kData, 16, false}, {kStatus, 1, true}});
  CHECK(f.status() == VIRTIO_BLK_S_IOERR);
  const auto bytes = read_file_bytes(f.image);
  CHECK(bytes.size() == kImageSize);
  CHECK(bytes == expected);
}

TEST_CASE("blk: many requests queued before one kick are all served") {
  BlkFixture f;
  // Five reads of one sector each (15 of the 16 descriptors), published together.
  for (uint16_t i = 0; i < 5; ++i) {
    virtio_blk_outhdr h{};
    h.type = VIRTIO_BLK_T_IN;
    h.sector = i;
    REQUIRE(f.mem.write_obj(kHeader + 16ull * i, h).ok());
    f.drv.add_and_publish({{kHeader + 16ull * i, 16, false},
                           {kData + 512ull * i, 512, true},
                           {kStatus + i, 1, true}});
  }
  f.transport->notify(0);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (f.drv.used_idx() != 5 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  REQUIRE(f.drv.used_idx() == 5);
  for (uint16_t i = 0; i < 5; ++i) {
    CHECK(f.mem.read_obj<uint8_t>(kStatus + i).value() == VIRTIO_BLK_S_OK);
    CHECK(f.mem.read_obj<uint8_t>(kData + 512ull * i).value() == i + 1);
  }
}

}  // namespace airlock::devices
