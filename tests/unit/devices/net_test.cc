// virtio-net without KVM: a MockDriver brings the device up through the real virtio-mmio
// transport in a real GuestMemory; the backend is a real SocketBackend on an AF_UNIX
// SOCK_SEQPACKET socketpair whose other end the test holds (it plays the tap).
#include <doctest/doctest.h>

#include <linux/virtio_ids.h>
#include <sys/socket.h>
#include <unistd.h>
#define class class_
#include <linux/virtio_net.h>
#undef class
#include <poll.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "../virtio/mock_driver.h"
#include "devices/net.h"
#include "devices/net_socket.h"
#include "virtio/mmio.h"

namespace airlock::devices {
namespace {

using virtio::MmioTransport;
using virtio::testing::feature;
using virtio::testing::MockDriver;
using virtio::testing::reg_read;
using virtio::testing::reg_write;
using namespace std::chrono_literals;

constexpr uint64_t kRxBuf = 0x100000;  // receive buffers, 64 KiB apart
constexpr uint64_t kTxBuf = 0x200000;  // transmit frames

bool wait_until(const std::function<bool()>& cond, std::chrono::milliseconds limit = 2000ms) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(1ms);
  }
  return cond();
}

std::vector<uint8_t> frame_bytes(size_t len, uint8_t seed) {
  std::vector<uint8_t> f(len);
  for (size_t i = 0; i < len; ++i) f[i] = static_cast<uint8_t>(seed + i * 7);
  return f;
}

// A frame with a zero (no offload) header in front.
std::vector<uint8_t> with_header(const std::vector<uint8_t>& frame) {
  std::vector<uint8_t> out(kVirtioNetHdrSize + frame.size(), 0);
  std::copy(frame.begin(), frame.end(), out.begin() + kVirtioNetHdrSize);
  return out;
}

struct NetFixture {
  GuestMemory mem = GuestMemory::create(8 << 20).value();
  UniqueFd peer;
  std::shared_ptr<NetDevice> dev;
  std::unique_ptr<MmioTransport> transport;
  std::unique_ptr<MockDriver> rx = std::make_unique<MockDriver>(mem, 16, 0x1000);
  std::unique_ptr<MockDriver> tx = std::make_unique<MockDriver>(mem, 16, 0x8000);
  std::atomic<int> interrupts{0};

  explicit NetFixture(uint64_t features, uint64_t backend_offloads = 0, bool start = true,
                      int device_sndbuf = 0) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == 0);
    if (device_sndbuf)
      ::setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &device_sndbuf, sizeof device_sndbuf);
    peer.reset(sv[1]);
    auto backend = SocketBackend::create(UniqueFd(sv[0]), backend_offloads);
    REQUIRE(backend.ok());
    dev = std::make_shared<NetDevice>(std::move(backend).value());
    transport = std::make_unique<MmioTransport>(dev, mem);
    transport->set_interrupt_trigger([this] { ++interrupts; });
    if (start) bring_up(features);
  }
  ~NetFixture() { transport.reset(); }

  void bring_up(uint64_t features) {
    virtio::testing::negotiate(*transport, feature(VIRTIO_F_VERSION_1) | features);
    virtio::testing::setup_queue(*transport, 0, *rx);
    virtio::testing::setup_queue(*transport, 1, *tx);
    virtio::testing::driver_ok(*transport);
  }
  uint32_t status() { return reg_read(*transport, VIRTIO_MMIO_STATUS); }

  // Posts one transmit frame, split over descriptors of at most `piece` bytes.
  void send(const std::vector<uint8_t>& bytes, uint64_t at, size_t piece = 4096) {
    REQUIRE(mem.write(at, bytes.data(), bytes.size()).ok());
    std::vector<virtio::testing::Buffer> bufs;
    for (size_t off = 0; off < bytes.size(); off += piece)
      bufs.push_back({at + off, static_cast<uint32_t>(std::min(piece, bytes.size() - off)), false});
    uint16_t head = 0;
    if (bufs.size() == 1)
      head = tx->add_chain({bufs[0]});
    else if (bufs.size() == 2)
      head = tx->add_chain({bufs[0], bufs[1]});
    else
      head = tx->add_chain({bufs[0], bufs[1], bufs[2]});
    tx->publish(head);
  }

  std::optional<std::vector<uint8_t>> peer_recv(std::chrono::milliseconds t = 2000ms) {
    pollfd p{peer.get(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(t.count())) != 1) return std::nullopt;
    std::vector<uint8_t> buf(70000);
    ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), 0);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

  std::vector<uint8_t> guest_read(uint64_t at, size_t len) {
    std::vector<uint8_t> b(len);
    REQUIRE(mem.read(at, b.data(), len).ok());
    return b;
  }
};

constexpr uint64_t kBasic = feature(VIRTIO_NET_F_MAC) | feature(VIRTIO_NET_F_STATUS);

}  // namespace

TEST_CASE("net: identity, features and config space") {
  NetFixture f(kBasic);
  CHECK(reg_read(*f.transport, VIRTIO_MMIO_DEVICE_ID) == VIRTIO_ID_NET);
  CHECK(f.transport->num_queues() == 2);
  CHECK(f.status() == virtio::testing::kStatusRunning);
  uint64_t offered = f.transport->offered_features();
  CHECK((offered & feature(VIRTIO_NET_F_MAC)) != 0);
  CHECK((offered & feature(VIRTIO_NET_F_STATUS)) != 0);
  CHECK((offered & feature(VIRTIO_NET_F_MRG_RXBUF)) != 0);
  CHECK((offered & feature(VIRTIO_NET_F_CSUM)) == 0);  // the socket peer declared no offloads
  CHECK((offered & feature(VIRTIO_NET_F_CTRL_VQ)) == 0);

  uint8_t cfg[10];
  for (size_t i = 0; i < sizeof cfg; ++i) f.transport->read(0x100 + i, &cfg[i], 1);
  NetDeviceOptions defaults;
  CHECK(std::equal(defaults.mac.begin(), defaults.mac.end(), cfg));
  CHECK(cfg[6] == VIRTIO_NET_S_LINK_UP);
  CHECK(cfg[7] == 0);
  CHECK(cfg[8] == 1);  // max_virtqueue_pairs
  uint8_t past = 0xff;
  f.transport->read(0x100 + 64, &past, 1);
  CHECK(past == 0);
}

TEST_CASE("net: offloads are offered only as the backend declares them, consistently") {
  // HOST_TSO4 without CSUM and GUEST_TSO6 without GUEST_CSUM must not be offered.
  NetFixture f(kBasic, feature(VIRTIO_NET_F_HOST_TSO4) | feature(VIRTIO_NET_F_GUEST_TSO6) |
                           feature(VIRTIO_NET_F_GUEST_UFO));
  uint64_t offered = f.transport->offered_features();
  CHECK((offered & feature(VIRTIO_NET_F_HOST_TSO4)) == 0);
  CHECK((offered & feature(VIRTIO_NET_F_GUEST_TSO6)) == 0);
  CHECK((offered & feature(VIRTIO_NET_F_GUEST_UFO)) == 0);

  NetFixture g(kBasic, feature(VIRTIO_NET_F_CSUM) | feature(VIRTIO_NET_F_HOST_TSO4) |
                           feature(VIRTIO_NET_F_GUEST_CSUM) | feature(VIRTIO_NET_F_GUEST_TSO4));
  offered = g.transport->offered_features();
  CHECK((offered & feature(VIRTIO_NET_F_CSUM)) != 0);
  CHECK((offered & feature(VIRTIO_NET_F_HOST_TSO4)) != 0);
  CHECK((offered & feature(VIRTIO_NET_F_GUEST_TSO4)) != 0);
  CHECK((offered & feature(VIRTIO_NET_F_HOST_ECN)) == 0);
}

TEST_CASE("net: a transmitted frame reaches the backend with its header") {
  NetFixture f(kBasic);
  auto bytes = with_header(frame_bytes(300, 1));
  f.send(bytes, kTxBuf, 110);  // header and frame spread over 3 descriptors
  reg_write(*f.transport, VIRTIO_MMIO_QUEUE_NOTIFY, 1);
  auto got = f.peer_recv();
  REQUIRE(got.has_value());
  CHECK(*got == bytes);
  REQUIRE(wait_until([&] { return f.tx->used_idx() == 1; }));
  CHECK(f.tx->used_elem(0).len == 0);
  CHECK(wait_until([&] { return f.interrupts.load() >= 1; }));
  auto st = f.dev->stats();
  CHECK(st.tx_frames == 1);
  CHECK(st.tx_bytes == 300);
}

TEST_CASE("net: a received frame lands in one buffer without mergeable buffers") {
  NetFixture f(kBasic);
  f.rx->add_and_publish({{kRxBuf, 1526, true}});
  f.transport->notify(0);
  auto frame = frame_bytes(200, 3);
  auto bytes = with_header(frame);
  bytes[10] = 0x55;  // garbage num_buffers from the peer must be overwritten
  REQUIRE(::send(f.peer.get(), bytes.data(), bytes.size(), 0) ==
          static_cast<ssize_t>(bytes.size()));
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 1; }));
  CHECK(f.rx->used_elem(0).len == bytes.size());
  auto in_guest = f.guest_read(kRxBuf, bytes.size());
  CHECK(in_guest[10] == 1);
  CHECK(in_guest[11] == 0);
  CHECK(std::equal(frame.begin(), frame.end(), in_guest.begin() + kVirtioNetHdrSize));
  CHECK(wait_until([&] { return f.interrupts.load() >= 1; }));
  CHECK(f.dev->stats().rx_frames == 1);
}

TEST_CASE("net: a frame too big for a non-mergeable buffer is dropped, the buffer kept") {
  NetFixture f(kBasic);
  f.rx->add_and_publish({{kRxBuf, 100, true}});
  f.transport->notify(0);
  auto big = with_header(frame_bytes(500, 9));
  auto small = with_header(frame_bytes(60, 4));
  ::send(f.peer.get(), big.data(), big.size(), 0);
  ::send(f.peer.get(), small.data(), small.size(), 0);
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 1; }));
  CHECK(f.rx->used_elem(0).len == small.size());
  CHECK(f.dev->stats().rx_dropped == 1);
}

TEST_CASE("net: mergeable receive buffers span a frame over several chains") {
  NetFixture f(kBasic | feature(VIRTIO_NET_F_MRG_RXBUF));
  for (int i = 0; i < 4; ++i) f.rx->add_and_publish({{kRxBuf + 0x10000ull * i, 64, true}});
  f.transport->notify(0);
  auto frame = frame_bytes(150 - kVirtioNetHdrSize, 5);
  auto bytes = with_header(frame);
  ::send(f.peer.get(), bytes.data(), bytes.size(), 0);
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 3; }));
  CHECK(f.rx->used_elem(0).len == 64);
  CHECK(f.rx->used_elem(1).len == 64);
  CHECK(f.rx->used_elem(2).len == 22);
  std::vector<uint8_t> joined;
  for (int i = 0; i < 3; ++i) {
    auto part =
        f.guest_read(kRxBuf + 0x10000ull * i, f.rx->used_elem(static_cast<uint16_t>(i)).len);
    joined.insert(joined.end(), part.begin(), part.end());
  }
  CHECK(joined[10] == 3);  // num_buffers
  CHECK(std::equal(frame.begin(), frame.end(), joined.begin() + kVirtioNetHdrSize));
  // The fourth buffer serves the next frame alone.
  auto next = with_header(frame_bytes(40, 6));
  ::send(f.peer.get(), next.data(), next.size(), 0);
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 4; }));
  CHECK(f.rx->used_elem(3).len == next.size());
  CHECK(f.guest_read(kRxBuf + 0x30000, 12)[10] == 1);
  CHECK(f.dev->stats().rx_direct == 0);  // 256 bytes of buffers: through the bounce buffer
}

TEST_CASE("net: buffers covering the largest frame are read into directly, header fixed up") {
  NetFixture f(kBasic | feature(VIRTIO_NET_F_MRG_RXBUF));
  // 16 x 8 KiB: more than a 64 KiB GSO frame needs, so no bounce buffer is used.
  for (int i = 0; i < 16; ++i) f.rx->add_and_publish({{kRxBuf + 0x2000ull * i, 0x2000, true}});
  f.transport->notify(0);
  auto frame = frame_bytes(10000 - kVirtioNetHdrSize, 8);
  auto bytes = with_header(frame);
  bytes[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;  // GUEST_CSUM was not negotiated: must not reach it
  bytes[10] = 0x55;                        // garbage num_buffers from the peer
  REQUIRE(::send(f.peer.get(), bytes.data(), bytes.size(), 0) ==
          static_cast<ssize_t>(bytes.size()));
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 2; }));
  CHECK(f.rx->used_elem(0).len == 0x2000);
  CHECK(f.rx->used_elem(1).len == 10000 - 0x2000);
  auto in_guest = f.guest_read(kRxBuf, 10000);  // the two buffers are adjacent
  CHECK(in_guest[0] == 0);
  CHECK(in_guest[10] == 2);
  CHECK(in_guest[11] == 0);
  CHECK(std::equal(frame.begin(), frame.end(), in_guest.begin() + kVirtioNetHdrSize));
  // The 14 buffers left still cover a largest frame: the next one goes in directly too.
  auto next = with_header(frame_bytes(80, 2));
  ::send(f.peer.get(), next.data(), next.size(), 0);
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 3; }));
  CHECK(f.rx->used_elem(2).len == next.size());
  auto second = f.guest_read(kRxBuf + 0x4000, next.size());
  CHECK(second[10] == 1);
  CHECK(
      std::equal(next.begin() + kVirtioNetHdrSize, next.end(), second.begin() + kVirtioNetHdrSize));
  CHECK(f.dev->stats().rx_frames == 2);
  CHECK(f.dev->stats().rx_direct == 2);
  CHECK(f.dev->stats().rx_dropped == 0);
}

TEST_CASE("net: one big non-mergeable buffer is read into directly, runts are dropped") {
  NetFixture f(kBasic);
  f.rx->add_and_publish({{kRxBuf, 70000, true}});
  f.transport->notify(0);
  const uint8_t runt[8] = {1, 2, 3, 4, 5, 6, 7, 8};  // shorter than header + Ethernet header
  ::send(f.peer.get(), runt, sizeof runt, 0);
  auto bytes = with_header(frame_bytes(1500, 4));
  ::send(f.peer.get(), bytes.data(), bytes.size(), 0);
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 1; }));
  CHECK(f.rx->used_elem(0).len == bytes.size());
  auto in_guest = f.guest_read(kRxBuf, bytes.size());
  CHECK(in_guest[10] == 1);
  CHECK(std::equal(bytes.begin() + kVirtioNetHdrSize, bytes.end(),
                   in_guest.begin() + kVirtioNetHdrSize));
  CHECK(f.dev->stats().rx_direct == 1);
  CHECK(f.dev->stats().rx_dropped == 1);
}

TEST_CASE("net: receive kicks are asked for only once the device runs out of buffers") {
  NetFixture f(kBasic);
  f.rx->add_and_publish({{kRxBuf, 1526, true}});
  f.rx->add_and_publish({{kRxBuf + 0x1000, 1526, true}});
  f.transport->notify(0);
  // Holding a buffer, with one more in the ring: a refill needs no kick.
  CHECK(wait_until([&] { return (f.rx->used_flags() & VRING_USED_F_NO_NOTIFY) != 0; }));
  for (int i = 0; i < 2; ++i) {
    auto bytes = with_header(frame_bytes(100, static_cast<uint8_t>(i)));
    ::send(f.peer.get(), bytes.data(), bytes.size(), 0);
  }
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 2; }));
  // Out of buffers: the driver must kick when it adds one, and that kick is served.
  CHECK(wait_until([&] { return (f.rx->used_flags() & VRING_USED_F_NO_NOTIFY) == 0; }));
  auto bytes = with_header(frame_bytes(100, 9));
  ::send(f.peer.get(), bytes.data(), bytes.size(), 0);
  std::this_thread::sleep_for(20ms);
  f.rx->add_and_publish({{kRxBuf + 0x2000, 1526, true}});
  f.transport->notify(0);
  REQUIRE(wait_until([&] { return f.rx->used_idx() == 3; }));
  CHECK(f.dev->stats().rx_frames == 3);
  CHECK(f.dev->stats().rx_direct == 0);
}

TEST_CASE("net: with no receive buffers the backend is not drained, frames wait, none lost") {
  NetFixture f(kBasic);
  // Fill the socket until it refuses: the device must not be reading it.
  int sent = 0;
  for (; sent < 100000; ++sent) {
    auto bytes = with_header(frame_bytes(64, static_cast<uint8_t>(sent)));
    bytes[kVirtioNetHdrSize] = static_cast<uint8_t>(sent);
    bytes[kVirtioNetHdrSize + 1] = static_cast<uint8_t>(sent >> 8);
    if (::send(f.peer.get(), bytes.data(), bytes.size(), MSG_DONTWAIT) < 0) break;
  }
  REQUIRE(sent > 0);
  CHECK(sent < 100000);  // bounded: the device buffered at most one frame
  std::this_thread::sleep_for(50ms);
  CHECK(f.dev->stats().rx_frames == 0);
  // Now hand buffers over, 16 at a time, and collect every frame in order.
  int got = 0;
  while (got < sent) {
    const int batch = std::min(16, sent - got);
    const uint16_t base = f.rx->used_idx();
    for (int i = 0; i < batch; ++i) f.rx->add_and_publish({{kRxBuf + 2048ull * i, 1526, true}});
    f.transport->notify(0);
    REQUIRE(wait_until([&] { return static_cast<uint16_t>(f.rx->used_idx() - base) == batch; }));
    for (int i = 0; i < batch; ++i, ++got) {
      auto b = f.guest_read(kRxBuf + 2048ull * i + kVirtioNetHdrSize, 2);
      CHECK((b[0] | b[1] << 8) == (got & 0xffff));
    }
  }
  CHECK(f.dev->stats().rx_frames == static_cast<uint64_t>(sent));
  CHECK(f.dev->stats().rx_dropped == 0);
}

TEST_CASE("net: when the backend is full one chain is held and retried, none lost") {
  // A small send buffer on the device's end: its writes start failing with EAGAIN.
  NetFixture f(kBasic, 0, true, 4096);
  const int total = 15;  // the ring holds 16
  for (int i = 0; i < total; ++i) {
    auto bytes = with_header(frame_bytes(1400, static_cast<uint8_t>(i)));
    bytes[kVirtioNetHdrSize] = static_cast<uint8_t>(i);
    f.send(bytes, kTxBuf + 2048ull * i, 4096);
  }
  f.transport->notify(1);
  std::this_thread::sleep_for(100ms);
  const uint16_t done_before_reading = f.tx->used_idx();
  CHECK(done_before_reading < total);  // the backend pushed back
  for (int i = 0; i < total; ++i) {
    auto got = f.peer_recv();
    REQUIRE(got.has_value());
    CHECK((*got)[kVirtioNetHdrSize] == i);
  }
  REQUIRE(wait_until([&] { return f.tx->used_idx() == total; }));
  CHECK(f.dev->stats().tx_frames == total);
  CHECK(f.dev->stats().tx_dropped == 0);
}

TEST_CASE("net: malformed transmit frames are dropped and returned, not sent") {
  NetFixture f(kBasic);
  auto tso = with_header(frame_bytes(100, 1));
  tso[1] = VIRTIO_NET_HDR_GSO_TCPV4;  // TSO was not negotiated
  tso[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  f.send(tso, kTxBuf);
  auto csum = with_header(frame_bytes(100, 1));
  csum[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;  // CSUM was not negotiated
  f.send(csum, kTxBuf + 0x1000);
  auto runt = with_header(frame_bytes(5, 1));  // shorter than an Ethernet header
  f.send(runt, kTxBuf + 0x2000);
  auto ufo = with_header(frame_bytes(100, 1));
  ufo[1] = VIRTIO_NET_HDR_GSO_UDP;
  f.send(ufo, kTxBuf + 0x3000);
  // A chain with only a device-writable buffer carries no frame at all.
  f.tx->add_and_publish({{kTxBuf + 0x4000, 100, true}});
  auto good = with_header(frame_bytes(100, 2));
  good[0] = VIRTIO_NET_HDR_F_DATA_VALID;  // meaningless on transmit: cleared, frame sent
  f.send(good, kTxBuf + 0x5000);
  f.transport->notify(1);
  auto got = f.peer_recv();
  REQUIRE(got.has_value());
  CHECK((*got)[0] == 0);
  CHECK(std::equal(good.begin() + kVirtioNetHdrSize, good.end(), got->begin() + kVirtioNetHdrSize));
  REQUIRE(wait_until([&] { return f.tx->used_idx() == 6; }));
  CHECK(!f.peer_recv(50ms).has_value());
  CHECK(f.dev->stats().tx_dropped == 5);
  CHECK(f.dev->stats().tx_frames == 1);
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) == 0);
}

TEST_CASE("net: with CSUM and HOST_TSO4 negotiated, offload headers pass through") {
  const uint64_t offloads = feature(VIRTIO_NET_F_CSUM) | feature(VIRTIO_NET_F_HOST_TSO4);
  NetFixture f(kBasic | offloads, offloads);
  auto tso = with_header(frame_bytes(3000, 1));
  tso[0] = VIRTIO_NET_HDR_F_NEEDS_CSUM;
  tso[1] = VIRTIO_NET_HDR_GSO_TCPV4;
  tso[4] = 0xb4, tso[5] = 0x05;  // gso_size 1460
  tso[6] = 34, tso[8] = 16;      // csum_start, csum_offset
  f.send(tso, kTxBuf);
  auto bad_offset = tso;
  bad_offset[6] = 0xff, bad_offset[7] = 0xff;  // checksum position past the frame
  f.send(bad_offset, kTxBuf + 0x2000);
  f.transport->notify(1);
  auto got = f.peer_recv();
  REQUIRE(got.has_value());
  CHECK(*got == tso);
  REQUIRE(wait_until([&] { return f.tx->used_idx() == 2; }));
  CHECK(f.dev->stats().tx_dropped == 1);
}

TEST_CASE("net: a broken ring means needs-reset, then reset and reactivation work") {
  NetFixture f(kBasic);
  f.tx->set_avail_idx(100);  // more than the ring holds
  f.transport->notify(1);
  REQUIRE(wait_until([&] { return (f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0; }));
  // The driver resets and starts over; traffic flows again.
  f.tx = std::make_unique<MockDriver>(f.mem, 16, 0x20000);
  f.rx = std::make_unique<MockDriver>(f.mem, 16, 0x28000);
  f.bring_up(kBasic);
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) == 0);
  auto bytes = with_header(frame_bytes(80, 7));
  f.send(bytes, kTxBuf);
  f.transport->notify(1);
  auto got = f.peer_recv();
  REQUIRE(got.has_value());
  CHECK(*got == bytes);
}

TEST_CASE("net: a descriptor outside guest RAM breaks the queue, not the host") {
  NetFixture f(kBasic);
  f.rx->add_and_publish({{(8ull << 20) - 16, 1526, true}});  // runs past the end of RAM
  f.transport->notify(0);
  REQUIRE(wait_until([&] { return (f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0; }));
  CHECK(f.rx->used_idx() == 0);
}

TEST_CASE("net: link status changes raise a config interrupt") {
  NetFixture f(kBasic);
  const int before = f.interrupts.load();
  f.dev->set_link_up(false);
  CHECK(f.interrupts.load() == before + 1);
  CHECK((reg_read(*f.transport, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG) != 0);
  uint8_t status = 0xff;
  f.transport->read(0x100 + 6, &status, 1);
  CHECK(status == 0);
  f.dev->set_link_up(false);  // no change, no interrupt
  CHECK(f.interrupts.load() == before + 1);
  f.dev->set_link_up(true);
  f.transport->read(0x100 + 6, &status, 1);
  CHECK(status == VIRTIO_NET_S_LINK_UP);
}

TEST_CASE("net: activation needs both queues") {
  NetFixture f(kBasic, 0, /*start=*/false);
  virtio::testing::negotiate(*f.transport, feature(VIRTIO_F_VERSION_1) | kBasic);
  virtio::testing::setup_queue(*f.transport, 0, *f.rx);
  virtio::testing::driver_ok(*f.transport);
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
}

TEST_CASE("net: a closed backend stops the device without touching the host") {
  NetFixture f(kBasic);
  f.rx->add_and_publish({{kRxBuf, 1526, true}});
  f.transport->notify(0);
  f.peer.reset();
  std::this_thread::sleep_for(50ms);
  auto bytes = with_header(frame_bytes(80, 7));
  f.send(bytes, kTxBuf);
  f.transport->notify(1);
  std::this_thread::sleep_for(50ms);
  CHECK(f.rx->used_idx() == 0);
  uint8_t status = 0xff;
  f.transport->read(0x100 + 6, &status, 1);
  CHECK(status == 0);  // link down
  CHECK((f.status() & VIRTIO_CONFIG_S_NEEDS_RESET) == 0);
  // Destruction joins the stopped worker.
}

}  // namespace airlock::devices

namespace airlock::devices {

TEST_CASE("net: with EVENT_IDX, every frame after the driver re-armed used_event interrupts") {
  NetFixture f(kBasic | feature(VIRTIO_NET_F_MRG_RXBUF) | feature(VIRTIO_RING_F_EVENT_IDX));
  for (int i = 0; i < 8; ++i) f.rx->add_and_publish({{kRxBuf + 0x1000ull * i, 1526, true}});
  f.transport->notify(0);
  for (int i = 0; i < 5; ++i) {
    // As Linux's NAPI does after a poll: ask for an interrupt at the next used entry.
    f.rx->set_used_event(f.rx->used_idx());
    const int before = f.interrupts.load();
    auto bytes = with_header(frame_bytes(60, static_cast<uint8_t>(i)));
    REQUIRE(::send(f.peer.get(), bytes.data(), bytes.size(), 0) > 0);
    REQUIRE(wait_until([&] { return f.rx->used_idx() == i + 1; }));
    CHECK(wait_until([&] { return f.interrupts.load() > before; }));
  }
}

}  // namespace airlock::devices

namespace airlock::devices {

TEST_CASE("net: random descriptor tables and rings never hurt the host") {
  std::mt19937 rng(4242);
  for (int round = 0; round < 150; ++round) {
    NetFixture f(kBasic | (round % 2 ? feature(VIRTIO_NET_F_MRG_RXBUF) : 0) |
                 (round % 3 ? feature(VIRTIO_RING_F_INDIRECT_DESC) : 0));
    for (MockDriver* d : {f.rx.get(), f.tx.get()}) {
      for (uint16_t i = 0; i < d->size(); ++i) {
        // Mostly inside RAM (so chains get walked), sometimes anywhere.
        uint64_t addr = rng() % 8 ? rng() % (8u << 20) : (uint64_t{rng()} << 32 | rng());
        uint32_t len = rng() % 4 ? rng() % 4096 : rng();
        uint16_t flags = static_cast<uint16_t>(rng() % 8);  // NEXT, WRITE, INDIRECT
        d->set_desc(i, addr, len, flags, static_cast<uint16_t>(rng() % 20));
      }
      const uint16_t n = static_cast<uint16_t>(rng() % 24);
      for (uint16_t i = 0; i < n; ++i) d->publish(static_cast<uint16_t>(rng() % 20));
    }
    for (int i = 0; i < 4; ++i) {
      auto bytes = with_header(frame_bytes(20 + rng() % 1500, static_cast<uint8_t>(i)));
      ::send(f.peer.get(), bytes.data(), bytes.size(), MSG_DONTWAIT);
    }
    f.transport->notify(0);
    f.transport->notify(1);
    std::this_thread::sleep_for(2ms);
    // Whatever happened, the device is either still running or asked for a reset; the
    // fixture's destruction joins its worker (a hang would time the test out).
    const uint32_t st = f.status();
    CHECK((st == virtio::testing::kStatusRunning || (st & VIRTIO_CONFIG_S_NEEDS_RESET) != 0));
  }
}

}  // namespace airlock::devices

namespace airlock::devices {

TEST_CASE("net: driver resets racing kicks and traffic neither deadlock nor crash") {
  NetFixture f(kBasic | feature(VIRTIO_NET_F_MRG_RXBUF));
  std::atomic<bool> done{false};
  // The event thread kicks both queues all the time; the peer keeps sending frames.
  std::thread kicker([&] {
    while (!done.load()) {
      f.transport->notify(0);
      f.transport->notify(1);
      auto bytes = with_header(frame_bytes(100, 1));
      ::send(f.peer.get(), bytes.data(), bytes.size(), MSG_DONTWAIT);
      std::this_thread::yield();
    }
  });
  for (int round = 0; round < 100; ++round) {
    // The "vCPU": reset, then bring the device up again with fresh rings and some buffers.
    reg_write(*f.transport, VIRTIO_MMIO_STATUS, 0);
    MockDriver rx(f.mem, 16, 0x1000), tx(f.mem, 16, 0x8000);
    (void)f.mem.write_obj<uint16_t>(rx.avail + 2, 0);
    (void)f.mem.write_obj<uint16_t>(tx.avail + 2, 0);
    virtio::testing::negotiate(
        *f.transport, feature(VIRTIO_F_VERSION_1) | kBasic | feature(VIRTIO_NET_F_MRG_RXBUF));
    virtio::testing::setup_queue(*f.transport, 0, rx);
    virtio::testing::setup_queue(*f.transport, 1, tx);
    virtio::testing::driver_ok(*f.transport);
    for (int i = 0; i < 4; ++i) rx.add_and_publish({{kRxBuf + 0x1000ull * i, 2048, true}});
    auto frame = with_header(frame_bytes(60, 2));
    REQUIRE(f.mem.write(kTxBuf, frame.data(), frame.size()).ok());
    tx.add_and_publish({{kTxBuf, static_cast<uint32_t>(frame.size()), false}});
  }
  done = true;
  kicker.join();
  CHECK(f.status() == virtio::testing::kStatusRunning);
  // The last incarnation still works: its buffers fill from what the peer queued.
  f.transport->notify(0);
  CHECK(wait_until([&] { return f.dev->stats().rx_frames > 0; }));
}

}  // namespace airlock::devices
