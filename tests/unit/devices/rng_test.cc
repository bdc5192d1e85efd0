// virtio-rng end to end without KVM: a MockDriver brings the device up through the real
// virtio-mmio transport in a real GuestMemory, posts buffers and kicks, as Linux would.
#include <doctest/doctest.h>

#include <linux/virtio_ids.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "../virtio/mock_driver.h"
#include "devices/rng.h"
#include "virtio/mmio.h"

namespace airlock::devices {
namespace {

using virtio::MmioTransport;
using virtio::testing::feature;
using virtio::testing::MockDriver;
using virtio::testing::reg_read;
using virtio::testing::reg_write;

constexpr uint64_t kData = 0x40000;

struct RngFixture {
  GuestMemory mem = GuestMemory::create(4 << 20).value();
  std::shared_ptr<RngDevice> rng = std::make_shared<RngDevice>();
  MmioTransport transport{rng, mem};
  MockDriver drv{mem, 16};
  int interrupts = 0;

  explicit RngFixture(uint64_t extra_features = 0) {
    transport.set_interrupt_trigger([this] { ++interrupts; });
    virtio::testing::negotiate(transport, feature(VIRTIO_F_VERSION_1) | extra_features);
    virtio::testing::setup_queue(transport, 0, drv);
    virtio::testing::driver_ok(transport);
  }
  uint32_t status() { return reg_read(transport, VIRTIO_MMIO_STATUS); }
};

bool all_zero(const std::vector<uint8_t>& v) {
  for (uint8_t b : v)
    if (b != 0) return false;
  return true;
}

}  // namespace

TEST_CASE("rng: identifies as VIRTIO_ID_RNG with one queue") {
  RngFixture f;
  CHECK(reg_read(f.transport, VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_RNG);
  CHECK(f.transport.num_queues() == 1);
  CHECK(f.status() == virtio::testing::kStatusRunning);
}

TEST_CASE("rng: a kick fills the writable buffer with random bytes and raises the interrupt") {
  RngFixture f;
  const uint16_t head = f.drv.add_and_publish({{kData, 64, true}});
  f.transport.notify(0);

  CHECK(f.drv.used_idx() == 1);
  CHECK(f.drv.used_elem(0).id == head);
  CHECK(f.drv.used_elem(0).len == 64);
  std::vector<uint8_t> bytes(64);
  REQUIRE(f.mem.read(kData, bytes.data(), bytes.size()).ok());
  CHECK_FALSE(all_zero(bytes));  // 2^-512 chance of a false failure
  CHECK(f.interrupts == 1);
  CHECK((reg_read(f.transport, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING) != 0);
  reg_write(f.transport, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
  CHECK(reg_read(f.transport, VIRTIO_MMIO_INTERRUPT_STATUS) == 0);
  CHECK(f.rng->requests_served() == 1);
}

TEST_CASE("rng: several chains in one kick, split buffers, and a write to QueueNotify") {
  RngFixture f;
  f.drv.add_and_publish({{kData, 10, true}});
  f.drv.add_and_publish({{kData + 0x100, 7, true}, {kData + 0x200, 9, true}});
  reg_write(f.transport, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
  CHECK(f.drv.used_idx() == 2);
  CHECK(f.drv.used_elem(0).len == 10);
  CHECK(f.drv.used_elem(1).len == 16);
  CHECK(f.interrupts == 1);  // one interrupt for the batch
}

TEST_CASE("rng: a request queued and kicked before DRIVER_OK is served at DRIVER_OK") {
  GuestMemory mem = GuestMemory::create(1 << 20).value();
  auto rng = std::make_shared<RngDevice>();
  MmioTransport transport(rng, mem);
  int interrupts = 0;
  transport.set_interrupt_trigger([&] { ++interrupts; });
  MockDriver drv(mem, 16);
  virtio::testing::negotiate(transport, feature(VIRTIO_F_VERSION_1));
  virtio::testing::setup_queue(transport, 0, drv);
  drv.add_and_publish({{kData, 32, true}});
  reg_write(transport, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
  CHECK(drv.used_idx() == 0);  // the device may not run before DRIVER_OK
  virtio::testing::driver_ok(transport);
  CHECK(drv.used_idx() == 1);
  CHECK(drv.used_elem(0).len == 32);
  CHECK(interrupts == 1);
}

TEST_CASE("rng: a chain with no writable part comes back with 0 bytes") {
  RngFixture f;
  std::vector<uint8_t> before(32, 0xab);
  REQUIRE(f.mem.write(kData, before.data(), before.size()).ok());
  f.drv.add_and_publish({{kData, 32, false}});
  f.transport.notify(0);
  CHECK(f.drv.used_idx() == 1);
  CHECK(f.drv.used_elem(0).len == 0);
  std::vector<uint8_t> after(32);
  REQUIRE(f.mem.read(kData, after.data(), after.size()).ok());
  CHECK(after == before);  // a driver-readable buffer is never written
}

TEST_CASE("rng: a huge buffer gets at most kMaxBytesPerRequest") {
  RngFixture f;
  f.drv.add_and_publish({{kData, 1 << 20, true}});
  f.transport.notify(0);
  CHECK(f.drv.used_elem(0).len == RngDevice::kMaxBytesPerRequest);
}

TEST_CASE("rng: with EVENT_IDX the driver's used_event suppresses interrupts") {
  RngFixture f(feature(VIRTIO_RING_F_EVENT_IDX));
  f.drv.set_used_event(0);
  f.drv.add_and_publish({{kData, 8, true}});
  f.transport.notify(0);
  CHECK(f.interrupts == 1);
  // The driver asks to be interrupted only once used idx passes 3.
  f.drv.set_used_event(3);
  f.drv.add_and_publish({{kData, 8, true}});
  f.transport.notify(0);
  CHECK(f.drv.used_idx() == 2);
  CHECK(f.interrupts == 1);
  f.drv.add_and_publish({{kData, 8, true}});
  f.drv.add_and_publish({{kData, 8, true}});
  f.transport.notify(0);
  CHECK(f.drv.used_idx() == 4);
  CHECK(f.interrupts == 2);
  // The device tells the driver where to kick next: right after what it consumed.
  CHECK(f.drv.avail_event() == 4);
}

TEST_CASE("rng: a broken queue marks the device as needing reset and stops it") {
  RngFixture f;
  f.drv.add_and_publish({{kData, 8, true}});
  f.drv.set_desc(1, kData, 8, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);  // loops on itself
  f.drv.publish(1);
  f.transport.notify(0);
  // The good chain before the broken one is still completed.
  CHECK(f.drv.used_idx() == 1);
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
  CHECK((reg_read(f.transport, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG) != 0);
  const int interrupts = f.interrupts;

  f.drv.add_and_publish({{kData, 8, true}});
  f.transport.notify(0);
  CHECK(f.drv.used_idx() == 1);  // nothing more until reset
  CHECK(f.interrupts == interrupts);

  // After a reset and a fresh bring-up the device works again.
  MockDriver fresh(f.mem, 16, 0x80000);
  virtio::testing::negotiate(f.transport, feature(VIRTIO_F_VERSION_1));
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) == 0);
  virtio::testing::setup_queue(f.transport, 0, fresh);
  virtio::testing::driver_ok(f.transport);
  fresh.add_and_publish({{kData, 8, true}});
  f.transport.notify(0);
  CHECK(fresh.used_idx() == 1);
  CHECK(fresh.used_elem(0).len == 8);
}

}  // namespace airlock::devices

namespace airlock::devices {

// The vCPU thread resets and re-initialises the device while the event thread keeps kicking:
// the transport's locks must keep the device from running on queues being torn down, and must
// not deadlock.
TEST_CASE("rng: resets on a vCPU thread race kicks from the event thread safely") {
  GuestMemory mem = GuestMemory::create(4 << 20).value();
  auto rng = std::make_shared<RngDevice>();
  MmioTransport transport(rng, mem);
  std::atomic<int> interrupts{0};
  transport.set_interrupt_trigger([&] { ++interrupts; });
  std::atomic<bool> stop{false};
  std::thread event_thread([&] {
    while (!stop.load()) transport.notify(0);
  });

  int served_rounds = 0;
  for (int round = 0; round < 300; ++round) {
    MockDriver drv(mem, 16, 0x1000 + (round % 4) * 0x10000);
    // A fresh driver zeroes its rings before handing them over.
    std::vector<uint8_t> zeros(0x10000, 0);
    REQUIRE(mem.write(drv.desc, zeros.data(), zeros.size()).ok());
    virtio::testing::negotiate(transport, feature(VIRTIO_F_VERSION_1));
    virtio::testing::setup_queue(transport, 0, drv);
    virtio::testing::driver_ok(transport);
    drv.add_and_publish({{kData + round * 64u, 64, true}});
    reg_write(transport, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    if (drv.used_idx() == 1 && drv.used_elem(0).len == 64) ++served_rounds;
    reg_write(transport, VIRTIO_MMIO_STATUS, 0);
  }
  stop = true;
  event_thread.join();
  CHECK(served_rounds == 300);
  CHECK(rng->requests_served() == 300);
  CHECK(interrupts.load() >= 300);
}

}  // namespace airlock::devices
