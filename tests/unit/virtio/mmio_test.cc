// The virtio-mmio register file and its state machine, driven through read()/write() the way
// a guest's MMIO accesses arrive. ProbeDevice is a minimal Device that records what the
// transport asks of it, so the transport's side of the contract can be checked.
#include <doctest/doctest.h>

#include <linux/virtio_ids.h>

#include <cstring>
#include <memory>
#include <vector>

#include "mock_driver.h"
#include "virtio/mmio.h"

namespace airlock::virtio {
namespace {

using testing::feature;
using testing::kStatusRunning;
using testing::kStatusUpToFeaturesOk;
using testing::MockDriver;
using testing::reg_read;
using testing::reg_write;

constexpr uint32_t kAck = VIRTIO_CONFIG_S_ACKNOWLEDGE;
constexpr uint32_t kDriver = VIRTIO_CONFIG_S_DRIVER;
constexpr uint64_t kDeviceFeatures = feature(1) | feature(50);

class ProbeDevice : public Device {
 public:
  uint32_t device_id() const override { return VIRTIO_ID_CONSOLE; }
  const char* name() const override { return "probe"; }
  uint64_t device_features() const override { return kDeviceFeatures; }
  size_t num_queues() const override { return 2; }
  uint16_t queue_max_size(size_t index) const override { return index == 0 ? 64 : 128; }

  void read_config(uint64_t offset, uint8_t* data, size_t len) override {
    for (size_t i = 0; i < len; ++i)
      data[i] = offset < config.size() && i < config.size() - offset ? config[offset + i] : 0;
  }
  void write_config(uint64_t offset, const uint8_t* data, size_t len) override {
    for (size_t i = 0; i < len && offset < config.size() && i < config.size() - offset; ++i)
      config[offset + i] = data[i];
  }

  Status activate(const ActivateContext& ctx) override {
    ++activations;
    last = ctx;
    queue_copies.clear();
    for (Queue* q : ctx.queues) queue_copies.push_back(*q);
    return activate_result;
  }
  void queue_notify(size_t index) override { notified.push_back(index); }
  void reset() override { ++resets; }

  std::vector<uint8_t> config{0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17,
                              0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f};
  Status activate_result;
  int activations = 0;
  int resets = 0;
  ActivateContext last;
  std::vector<Queue> queue_copies;
  std::vector<size_t> notified;
};

struct Fixture {
  GuestMemory mem = GuestMemory::create(1 << 20).value();
  std::shared_ptr<ProbeDevice> dev = std::make_shared<ProbeDevice>();
  MmioTransport t{dev, mem};
  MockDriver q0{mem, 64, 0x1000};
  MockDriver q1{mem, 128, 0x10000};
  int interrupts = 0;

  Fixture() {
    t.set_interrupt_trigger([this] { ++interrupts; });
  }
  uint32_t status() { return reg_read(t, VIRTIO_MMIO_STATUS); }
  void bring_up(uint64_t features = feature(VIRTIO_F_VERSION_1)) {
    testing::negotiate(t, features);
    testing::setup_queue(t, 0, q0);
    testing::setup_queue(t, 1, q1);
    testing::driver_ok(t);
  }
};

uint64_t read_features(MmioTransport& t) {
  reg_write(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
  uint64_t f = reg_read(t, VIRTIO_MMIO_DEVICE_FEATURES);
  reg_write(t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
  return f | uint64_t{reg_read(t, VIRTIO_MMIO_DEVICE_FEATURES)} << 32;
}

}  // namespace

TEST_CASE("mmio: identification registers") {
  Fixture f;
  CHECK(reg_read(f.t, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976);  // "virt"
  CHECK(reg_read(f.t, VIRTIO_MMIO_VERSION) == 2);
  CHECK(reg_read(f.t, VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_CONSOLE);
  CHECK(reg_read(f.t, VIRTIO_MMIO_VENDOR_ID) == MmioTransport::kVendorId);
  CHECK(f.t.num_queues() == 2);
  CHECK(&f.t.device() == f.dev.get());
  // Read-only registers ignore writes.
  reg_write(f.t, VIRTIO_MMIO_MAGIC_VALUE, 0);
  reg_write(f.t, VIRTIO_MMIO_VERSION, 1);
  CHECK(reg_read(f.t, VIRTIO_MMIO_MAGIC_VALUE) == 0x74726976);
  CHECK(reg_read(f.t, VIRTIO_MMIO_VERSION) == 2);
}

TEST_CASE("mmio: device features are offered in 32-bit pages") {
  Fixture f;
  const uint64_t offered = read_features(f.t);
  CHECK(offered == (kDeviceFeatures | feature(VIRTIO_F_VERSION_1) |
                    feature(VIRTIO_RING_F_EVENT_IDX) | feature(VIRTIO_RING_F_INDIRECT_DESC)));
  CHECK(offered == f.t.offered_features());
  reg_write(f.t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 2);
  CHECK(reg_read(f.t, VIRTIO_MMIO_DEVICE_FEATURES) == 0);
  reg_write(f.t, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0xffffffff);
  CHECK(reg_read(f.t, VIRTIO_MMIO_DEVICE_FEATURES) == 0);
}

TEST_CASE("mmio: FEATURES_OK is granted for a subset of the offer that includes VERSION_1") {
  Fixture f;
  const uint64_t acked = feature(VIRTIO_F_VERSION_1) | feature(1) | feature(50) |
                         feature(VIRTIO_RING_F_EVENT_IDX) | feature(VIRTIO_RING_F_INDIRECT_DESC);
  f.bring_up(acked);
  CHECK(f.status() == kStatusRunning);
  REQUIRE(f.dev->activations == 1);
  CHECK(f.dev->last.acked_features == acked);
  CHECK(f.dev->last.memory == &f.mem);
  CHECK(f.dev->last.interrupt == &f.t);
  REQUIRE(f.dev->queue_copies.size() == 2);
  CHECK(f.dev->queue_copies[0].event_idx);
  CHECK(f.dev->queue_copies[0].indirect_desc);
}

TEST_CASE("mmio: FEATURES_OK is refused for features not offered or without VERSION_1") {
  Fixture f;
  SUBCASE("a bit the device did not offer") {
    testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1) | feature(2));
  }
  SUBCASE("a transport bit not offered (packed ring)") {
    testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1) | feature(VIRTIO_F_RING_PACKED));
  }
  SUBCASE("a legacy driver without VERSION_1") {
    testing::negotiate(f.t, feature(1));
  }
  CHECK(f.status() == (kAck | kDriver));
  // Without FEATURES_OK, DRIVER_OK cannot be reached.
  testing::setup_queue(f.t, 0, f.q0);
  testing::driver_ok(f.t);
  CHECK((f.status() & VIRTIO_CONFIG_S_DRIVER_OK) == 0);
  CHECK(f.dev->activations == 0);
  // The driver gives up.
  reg_write(f.t, VIRTIO_MMIO_STATUS, kAck | kDriver | VIRTIO_CONFIG_S_FAILED);
  CHECK(f.status() == (kAck | kDriver | VIRTIO_CONFIG_S_FAILED));
}

TEST_CASE("mmio: driver features are writable only between DRIVER and FEATURES_OK") {
  Fixture f;
  reg_write(f.t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  reg_write(f.t, VIRTIO_MMIO_DRIVER_FEATURES, 0xffffffff);  // before DRIVER: ignored
  testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1));     // resets, then acks VERSION_1
  CHECK(f.status() == kStatusUpToFeaturesOk);
  reg_write(f.t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
  reg_write(f.t, VIRTIO_MMIO_DRIVER_FEATURES, 1u << 1);  // after FEATURES_OK: ignored
  reg_write(f.t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 2);
  reg_write(f.t, VIRTIO_MMIO_DRIVER_FEATURES, 1);  // no such page
  testing::setup_queue(f.t, 0, f.q0);
  testing::driver_ok(f.t);
  REQUIRE(f.dev->activations == 1);
  CHECK(f.dev->last.acked_features == feature(VIRTIO_F_VERSION_1));
  CHECK_FALSE(f.dev->queue_copies[0].event_idx);
}

TEST_CASE("mmio: status bits must be set in order and cannot be cleared except by reset") {
  Fixture f;
  reg_write(f.t, VIRTIO_MMIO_STATUS, kDriver);  // DRIVER without ACKNOWLEDGE
  CHECK(f.status() == 0);
  reg_write(f.t, VIRTIO_MMIO_STATUS, kAck);
  CHECK(f.status() == kAck);
  reg_write(f.t, VIRTIO_MMIO_STATUS, kAck | VIRTIO_CONFIG_S_FEATURES_OK);  // skips DRIVER
  CHECK(f.status() == kAck);
  reg_write(f.t, VIRTIO_MMIO_STATUS, kAck | kDriver);
  CHECK(f.status() == (kAck | kDriver));
  reg_write(f.t, VIRTIO_MMIO_STATUS, kDriver);  // clears ACKNOWLEDGE
  CHECK(f.status() == (kAck | kDriver));
  reg_write(f.t, VIRTIO_MMIO_STATUS, kAck | kDriver | VIRTIO_CONFIG_S_DRIVER_OK);  // skips one
  CHECK(f.status() == (kAck | kDriver));
  // NEEDS_RESET is the device's to set, never the driver's.
  reg_write(f.t, VIRTIO_MMIO_STATUS, kAck | kDriver | VIRTIO_CONFIG_S_NEEDS_RESET);
  CHECK(f.status() == (kAck | kDriver));
  CHECK(f.dev->activations == 0);
}

TEST_CASE("mmio: queue setup, QueueNumMax, QueueReady and when queue registers are writable") {
  Fixture f;
  reg_write(f.t, VIRTIO_MMIO_QUEUE_SEL, 0);
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_NUM_MAX) == 64);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_SEL, 1);
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_NUM_MAX) == 128);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_SEL, 2);  // no such queue
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_NUM_MAX) == 0);
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_READY) == 0);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_READY, 1);  // ignored, nothing to crash on
  reg_write(f.t, VIRTIO_MMIO_QUEUE_NUM, 16);

  testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1));
  testing::setup_queue(f.t, 0, f.q0);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_SEL, 0);
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_READY) == 1);
  // A ready queue's registers are frozen.
  reg_write(f.t, VIRTIO_MMIO_QUEUE_DESC_LOW, 0x5000);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_NUM, 8);
  // Queue 1 is left off: the device decides whether it needs it.
  testing::driver_ok(f.t);
  CHECK(f.status() == kStatusRunning);
  REQUIRE(f.dev->activations == 1);
  REQUIRE(f.dev->last.queues.size() == 2);
  const Queue& q = f.dev->queue_copies[0];
  CHECK(q.ready);
  CHECK(q.size == 64);
  CHECK(q.max_size == 64);
  CHECK(q.desc_table == f.q0.desc);
  CHECK(q.avail_ring == f.q0.avail);
  CHECK(q.used_ring == f.q0.used);
  CHECK_FALSE(f.dev->queue_copies[1].ready);

  // After DRIVER_OK even a queue that is off stays as it is.
  reg_write(f.t, VIRTIO_MMIO_QUEUE_SEL, 1);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_NUM, 16);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_READY, 1);
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_READY) == 0);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_SEL, 0);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_READY, 0);
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_READY) == 1);
}

TEST_CASE("mmio: 64-bit ring addresses are assembled from both halves") {
  GuestMemory mem = GuestMemory::create(5ull << 30, 3ull << 30).value();  // RAM above 4 GiB
  auto dev = std::make_shared<ProbeDevice>();
  MmioTransport t(dev, mem);
  MockDriver high(mem, 64, 0x100000000ull + 0x2000);
  testing::negotiate(t, feature(VIRTIO_F_VERSION_1));
  testing::setup_queue(t, 0, high);
  testing::driver_ok(t);
  REQUIRE(dev->activations == 1);
  CHECK(dev->queue_copies[0].desc_table == high.desc);
  CHECK(dev->queue_copies[0].used_ring == high.used);
  CHECK(high.desc > 0xffffffffull);
}

TEST_CASE("mmio: DRIVER_OK with a broken queue sets NEEDS_RESET and tells the driver") {
  Fixture f;
  testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1));
  SUBCASE("size not a power of 2") {
    testing::setup_queue(f.t, 0, f.q0);
    // rewrite the size: the queue is ready, so first turn it off
    reg_write(f.t, VIRTIO_MMIO_QUEUE_READY, 0);
    reg_write(f.t, VIRTIO_MMIO_QUEUE_NUM, 48);
    reg_write(f.t, VIRTIO_MMIO_QUEUE_READY, 1);
  }
  SUBCASE("size above QueueNumMax") {
    MockDriver big(f.mem, 128, 0x1000);
    testing::setup_queue(f.t, 0, big);
  }
  SUBCASE("size too big for 16 bits") {
    testing::setup_queue(f.t, 0, f.q0);
    reg_write(f.t, VIRTIO_MMIO_QUEUE_READY, 0);
    reg_write(f.t, VIRTIO_MMIO_QUEUE_NUM, 0x10040);
    reg_write(f.t, VIRTIO_MMIO_QUEUE_READY, 1);
  }
  SUBCASE("rings outside RAM") {
    MockDriver outside(f.mem, 64, 0x7fff0000);
    testing::setup_queue(f.t, 0, outside);
  }
  testing::driver_ok(f.t);
  CHECK(f.dev->activations == 0);
  CHECK(f.status() == (kStatusRunning | VIRTIO_CONFIG_S_NEEDS_RESET));
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) == VIRTIO_MMIO_INT_CONFIG);
  CHECK(f.interrupts == 1);
  f.t.notify(0);
  CHECK(f.dev->notified.empty());
}

TEST_CASE("mmio: a device that fails to activate needs reset") {
  Fixture f;
  f.dev->activate_result = Status(Errc::protocol, "probe: refuses");
  f.bring_up();
  CHECK(f.dev->activations == 1);
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
  CHECK(f.interrupts == 1);
  f.t.notify(0);
  CHECK(f.dev->notified.empty());
}

TEST_CASE("mmio: notifications reach the device only when it runs and the queue is ready") {
  Fixture f;
  f.t.notify(0);  // before anything
  testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1));
  testing::setup_queue(f.t, 0, f.q0);
  f.t.notify(0);  // before DRIVER_OK
  reg_write(f.t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
  CHECK(f.dev->notified.empty());
  testing::driver_ok(f.t);
  f.t.notify(0);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
  f.t.notify(1);  // queue 1 was never made ready
  f.t.notify(2);  // no such queue
  f.t.notify(0xffffffff);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_NOTIFY, 7);
  CHECK(f.dev->notified == std::vector<size_t>{0, 0});
  // Once the device asked for a reset it gets no more work.
  f.t.signal_needs_reset();
  f.t.notify(0);
  CHECK(f.dev->notified.size() == 2);
}

TEST_CASE("mmio: buffers queued before DRIVER_OK are handed to the device at DRIVER_OK") {
  Fixture f;
  testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1));
  testing::setup_queue(f.t, 0, f.q0);
  testing::setup_queue(f.t, 1, f.q1);
  f.q1.add_and_publish({{0x40000, 8, true}});
  f.t.notify(1);  // too early: ignored
  CHECK(f.dev->notified.empty());
  testing::driver_ok(f.t);
  // Only the queue with pending buffers is looked at.
  CHECK(f.dev->notified == std::vector<size_t>{1});
}

TEST_CASE("mmio: writing 0 to Status resets the device and the transport") {
  Fixture f;
  reg_write(f.t, VIRTIO_MMIO_STATUS, 0);  // Linux's reset before probing: nothing to stop
  CHECK(f.dev->resets == 0);
  f.bring_up();
  f.t.signal_used_queue();
  f.t.signal_needs_reset();
  REQUIRE(f.status() == (kStatusRunning | VIRTIO_CONFIG_S_NEEDS_RESET));

  reg_write(f.t, VIRTIO_MMIO_STATUS, 0);
  CHECK(f.dev->resets == 1);
  CHECK(f.status() == 0);
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) == 0);
  reg_write(f.t, VIRTIO_MMIO_QUEUE_SEL, 0);
  CHECK(reg_read(f.t, VIRTIO_MMIO_QUEUE_READY) == 0);
  f.t.notify(0);
  CHECK(f.dev->notified.empty());

  // The device can be brought up again from scratch.
  f.bring_up();
  CHECK(f.status() == kStatusRunning);
  CHECK(f.dev->activations == 2);
  f.t.notify(0);
  CHECK(f.dev->notified.size() == 1);
}

TEST_CASE("mmio: shutdown and destruction stop a running device") {
  Fixture f;
  f.bring_up();
  f.t.shutdown();
  CHECK(f.dev->resets == 1);
  f.bring_up();
  {
    GuestMemory mem = GuestMemory::create(1 << 20).value();
    auto dev = std::make_shared<ProbeDevice>();
    {
      MmioTransport t(dev, mem);
      MockDriver d(mem, 64);
      testing::negotiate(t, feature(VIRTIO_F_VERSION_1));
      testing::setup_queue(t, 0, d);
      testing::driver_ok(t);
    }
    CHECK(dev->resets == 1);
  }
}

TEST_CASE("mmio: bad offsets and access sizes read as zero and are ignored on write") {
  Fixture f;
  uint8_t buf[8];
  auto read_bytes = [&](uint64_t offset, size_t len) {
    std::memset(buf, 0xee, sizeof buf);
    f.t.read(offset, buf, len);
    for (size_t i = 0; i < len; ++i)
      if (buf[i] != 0) return false;
    return true;
  };
  CHECK(read_bytes(VIRTIO_MMIO_MAGIC_VALUE, 1));
  CHECK(read_bytes(VIRTIO_MMIO_MAGIC_VALUE, 2));
  CHECK(read_bytes(VIRTIO_MMIO_MAGIC_VALUE, 8));
  CHECK(read_bytes(VIRTIO_MMIO_MAGIC_VALUE + 1, 4));  // misaligned
  CHECK(read_bytes(VIRTIO_MMIO_VERSION + 2, 4));
  CHECK(read_bytes(0x0f0, 4));                        // reserved
  CHECK(read_bytes(VIRTIO_MMIO_GUEST_PAGE_SIZE, 4));  // legacy-only registers
  CHECK(read_bytes(VIRTIO_MMIO_QUEUE_PFN, 4));
  CHECK(read_bytes(VIRTIO_MMIO_QUEUE_NOTIFY, 4));  // write-only
  CHECK(read_bytes(VIRTIO_MMIO_DRIVER_FEATURES, 4));
  CHECK(read_bytes(VIRTIO_MMIO_CONFIG, 3));  // config space takes 1, 2, 4 or 8
  CHECK(read_bytes(VIRTIO_MMIO_CONFIG, 0));
  CHECK(read_bytes(~0ull, 4));  // far past the config space
  CHECK(read_bytes(~0ull - 3, 8));

  const uint8_t ack[4] = {kAck, 0, 0, 0};
  f.t.write(VIRTIO_MMIO_STATUS, ack, 2);
  f.t.write(VIRTIO_MMIO_STATUS + 1, ack, 4);
  f.t.write(VIRTIO_MMIO_STATUS, ack, 1);
  f.t.write(VIRTIO_MMIO_STATUS, nullptr, 4);
  f.t.read(VIRTIO_MMIO_STATUS, nullptr, 4);
  CHECK(f.status() == 0);
  f.t.write(VIRTIO_MMIO_STATUS, ack, 4);
  CHECK(f.status() == kAck);
  f.t.write(~0ull, ack, 4);
  f.t.write(VIRTIO_MMIO_CONFIG, ack, 3);
  CHECK(f.dev->config[0] == 0x10);
}

TEST_CASE("mmio: config space is forwarded to the device with 1, 2, 4 and 8 byte accesses") {
  Fixture f;
  uint8_t b = 0;
  f.t.read(VIRTIO_MMIO_CONFIG + 3, &b, 1);
  CHECK(b == 0x13);
  uint16_t h = 0;
  f.t.read(VIRTIO_MMIO_CONFIG + 4, reinterpret_cast<uint8_t*>(&h), 2);
  CHECK(h == 0x1514);
  uint32_t w = 0;
  f.t.read(VIRTIO_MMIO_CONFIG + 8, reinterpret_cast<uint8_t*>(&w), 4);
  CHECK(w == 0x1b1a1918);
  uint64_t q = 0;
  f.t.read(VIRTIO_MMIO_CONFIG, reinterpret_cast<uint8_t*>(&q), 8);
  CHECK(q == 0x1716151413121110ull);
  // Past the device's config: zeros.
  f.t.read(VIRTIO_MMIO_CONFIG + 14, reinterpret_cast<uint8_t*>(&w), 4);
  CHECK(w == 0x1f1e);
  f.t.read(VIRTIO_MMIO_CONFIG + 0x100, reinterpret_cast<uint8_t*>(&w), 4);
  CHECK(w == 0);

  const uint16_t v = 0xbeef;
  f.t.write(VIRTIO_MMIO_CONFIG + 2, reinterpret_cast<const uint8_t*>(&v), 2);
  CHECK(f.dev->config[2] == 0xef);
  CHECK(f.dev->config[3] == 0xbe);
}

TEST_CASE("mmio: interrupt status, acknowledgement, config generation and SHM registers") {
  Fixture f;
  f.bring_up();
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) == 0);
  const uint32_t generation = reg_read(f.t, VIRTIO_MMIO_CONFIG_GENERATION);

  f.dev->last.interrupt->signal_used_queue();
  CHECK(f.interrupts == 1);
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) == VIRTIO_MMIO_INT_VRING);
  f.t.signal_config_change();
  CHECK(f.interrupts == 2);
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) ==
        (VIRTIO_MMIO_INT_VRING | VIRTIO_MMIO_INT_CONFIG));
  CHECK(reg_read(f.t, VIRTIO_MMIO_CONFIG_GENERATION) != generation);

  reg_write(f.t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) == VIRTIO_MMIO_INT_CONFIG);
  reg_write(f.t, VIRTIO_MMIO_INTERRUPT_STATUS, 0);  // read-only
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) == VIRTIO_MMIO_INT_CONFIG);
  reg_write(f.t, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
  CHECK(reg_read(f.t, VIRTIO_MMIO_INTERRUPT_STATUS) == 0);

  // No shared memory regions: every region reads as length and base -1.
  reg_write(f.t, VIRTIO_MMIO_SHM_SEL, 0);
  CHECK(reg_read(f.t, VIRTIO_MMIO_SHM_LEN_LOW) == 0xffffffff);
  CHECK(reg_read(f.t, VIRTIO_MMIO_SHM_LEN_HIGH) == 0xffffffff);
  CHECK(reg_read(f.t, VIRTIO_MMIO_SHM_BASE_LOW) == 0xffffffff);
  CHECK(reg_read(f.t, VIRTIO_MMIO_SHM_BASE_HIGH) == 0xffffffff);
}

TEST_CASE("mmio: NEEDS_RESET before DRIVER_OK raises no interrupt") {
  Fixture f;
  testing::negotiate(f.t, feature(VIRTIO_F_VERSION_1));
  f.t.signal_needs_reset();
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
  CHECK(f.interrupts == 0);
}

}  // namespace airlock::virtio
