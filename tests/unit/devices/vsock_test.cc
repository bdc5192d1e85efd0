// virtio-vsock without KVM: a mock guest driver brings the device up through the real
// virtio-mmio transport in a real GuestMemory, posts rx buffers, sends packets on tx, and reads
// what the device (and its worker thread) puts in the rx queue. Covers the connection state
// machine and credit accounting in both directions.
#include <doctest/doctest.h>

#include <linux/virtio_config.h>
#include <linux/virtio_ids.h>
#include <linux/virtio_vsock.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "../virtio/mock_driver.h"
#include "devices/vsock.h"
#include "virtio/mmio.h"

namespace airlock::devices {
namespace {

using namespace std::chrono_literals;
using virtio::MmioTransport;
using virtio::testing::MockDriver;

constexpr uint64_t kGuestCid = 3;
constexpr uint32_t kHdr = sizeof(virtio_vsock_hdr);
constexpr uint16_t kQueueSize = 64;
constexpr int kRxBuffers = 32;
constexpr uint64_t kRxData = 0x100000;
constexpr uint64_t kTxData = 0x200000;
constexpr uint64_t kTxSlot = kHdr + 64 * 1024;
constexpr int kTxSlots = 16;

// virtio_vsock_hdr is packed; doctest needs plain fields it can bind references to.
struct PlainHdr {
  uint64_t src_cid, dst_cid;
  uint32_t src_port, dst_port, len;
  uint16_t type, op;
  uint32_t flags, buf_alloc, fwd_cnt;
};

struct Packet {
  PlainHdr hdr{};
  std::string payload;
};

virtio_vsock_hdr make_hdr(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len = 0,
                          uint32_t buf_alloc = 1 << 20, uint32_t fwd_cnt = 0) {
  virtio_vsock_hdr h{};
  h.src_cid = kGuestCid;
  h.dst_cid = 2;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.len = len;
  h.type = VIRTIO_VSOCK_TYPE_STREAM;
  h.op = op;
  h.buf_alloc = buf_alloc;
  h.fwd_cnt = fwd_cnt;
  return h;
}

// Plays Linux's virtio_vsock driver: rx buffers are a 44-byte header descriptor followed by a
// 4 KiB data descriptor, as in Linux 6.1.
struct Guest {
  GuestMemory mem = GuestMemory::create(4 << 20).value();
  std::shared_ptr<VsockDevice> dev = VsockDevice::create(kGuestCid);
  MmioTransport transport{dev, mem};
  MockDriver rxd{mem, kQueueSize, 0x1000};
  MockDriver txd{mem, kQueueSize, 0x20000};
  MockDriver evd{mem, kQueueSize, 0x40000};
  std::atomic<int> interrupts{0};
  std::map<uint16_t, uint64_t> rx_buffer_of_head;
  uint16_t rx_seen = 0;
  uint32_t tx_sent = 0;

  explicit Guest(int rx_buffers = kRxBuffers) {
    transport.set_interrupt_trigger([this] { interrupts++; });
    virtio::testing::negotiate(transport, 1ull << VIRTIO_F_VERSION_1);
    virtio::testing::setup_queue(transport, 0, rxd);
    virtio::testing::setup_queue(transport, 1, txd);
    virtio::testing::setup_queue(transport, 2, evd);
    virtio::testing::driver_ok(transport);
    for (int i = 0; i < rx_buffers; ++i) post_rx(kRxData + i * 0x2000ull);
    transport.notify(0);
  }
  ~Guest() { transport.shutdown(); }

  void post_rx(uint64_t addr) {
    uint16_t head = rxd.add_and_publish({{addr, kHdr, true}, {addr + kHdr, 4096, true}});
    rx_buffer_of_head[head] = addr;
  }

  void send(const virtio_vsock_hdr& h, std::string_view payload = {}, bool wait = true) {
    uint64_t addr = kTxData + (tx_sent % kTxSlots) * kTxSlot;
    REQUIRE(mem.write(addr, &h, kHdr).ok());
    if (!payload.empty()) REQUIRE(mem.write(addr + kHdr, payload.data(), payload.size()).ok());
    txd.add_and_publish({{addr, static_cast<uint32_t>(kHdr + payload.size()), false}});
    ++tx_sent;
    transport.notify(1);
    if (!wait) return;
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (txd.used_idx() != static_cast<uint16_t>(tx_sent)) {
      REQUIRE(std::chrono::steady_clock::now() < deadline);
      std::this_thread::sleep_for(1ms);
    }
  }

  // Next packet the device delivered, reposting its buffer.
  std::optional<Packet> recv(std::chrono::milliseconds timeout = 2000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (rxd.used_idx() == rx_seen) {
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(200us);
    }
    auto elem = rxd.used_elem(rx_seen++);
    uint64_t addr = rx_buffer_of_head.at(static_cast<uint16_t>(elem.id));
    Packet p;
    REQUIRE(elem.len >= kHdr);
    virtio_vsock_hdr raw;
    REQUIRE(mem.read(addr, &raw, kHdr).ok());
    p.hdr = PlainHdr{raw.src_cid, raw.dst_cid, raw.src_port, raw.dst_port,  raw.len,
                     raw.type,    raw.op,      raw.flags,    raw.buf_alloc, raw.fwd_cnt};
    REQUIRE(p.hdr.len == elem.len - kHdr);
    p.payload.resize(p.hdr.len);
    if (p.hdr.len) REQUIRE(mem.read(addr + kHdr, p.payload.data(), p.hdr.len).ok());
    post_rx(addr);
    transport.notify(0);
    return p;
  }

  Packet expect(uint16_t op) {
    auto p = recv();
    REQUIRE(p.has_value());
    CHECK(p->hdr.op == op);
    CHECK(p->hdr.src_cid == 2);
    CHECK(p->hdr.dst_cid == kGuestCid);
    CHECK(p->hdr.type == VIRTIO_VSOCK_TYPE_STREAM);
    return *p;
  }

  // Guest connects from `gport` to host port `hport`; returns the accepted host stream.
  std::unique_ptr<VsockStream> connect_to_host(VsockListener& l, uint32_t gport,
                                               uint32_t buf_alloc = 1 << 20) {
    send(make_hdr(VIRTIO_VSOCK_OP_REQUEST, gport, l.port(), 0, buf_alloc));
    Packet resp = expect(VIRTIO_VSOCK_OP_RESPONSE);
    CHECK(resp.hdr.dst_port == gport);
    CHECK(resp.hdr.src_port == l.port());
    CHECK(resp.hdr.buf_alloc == VsockDevice::kRxBufferBytes);
    auto s = l.accept(1000ms);
    REQUIRE(s.ok());
    return std::move(s).value();
  }
};

std::string read_exactly(VsockStream& s, size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    auto r = s.read(out.data() + got, n - got, 2000ms);
    REQUIRE(r.ok());
    REQUIRE(r.value() > 0);
    got += r.value();
  }
  return out;
}

}  // namespace

TEST_CASE("config space holds the guest CID, and the device is vsock with 3 queues") {
  auto dev = VsockDevice::create(7);
  CHECK(dev->device_id() == VIRTIO_ID_VSOCK);
  CHECK(dev->num_queues() == 3);
  uint64_t cid = 0;
  dev->read_config(0, reinterpret_cast<uint8_t*>(&cid), 8);
  CHECK(cid == 7);
  uint32_t hi = 1;
  dev->read_config(4, reinterpret_cast<uint8_t*>(&hi), 4);
  CHECK(hi == 0);
}

TEST_CASE("a request to a port nobody listens on is answered with RST") {
  Guest g;
  g.send(make_hdr(VIRTIO_VSOCK_OP_REQUEST, 5000, 1234));
  Packet rst = g.expect(VIRTIO_VSOCK_OP_RST);
  CHECK(rst.hdr.src_port == 1234);
  CHECK(rst.hdr.dst_port == 5000);
  // Data on a connection that does not exist: RST too; an RST for one: silence.
  g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 5000, 1234, 3), "abc");
  g.expect(VIRTIO_VSOCK_OP_RST);
  g.send(make_hdr(VIRTIO_VSOCK_OP_RST, 5000, 1234));
  CHECK(!g.recv(100ms).has_value());
  CHECK(g.dev->connection_count() == 0);
}

TEST_CASE("guest connects, both sides exchange data, credit fields are right") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40000);
  CHECK(g.dev->connection_count() == 1);

  g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 40000, 1024, 5), "hello");
  CHECK(read_exactly(*s, 5) == "hello");

  REQUIRE(s->write("world", 1000ms).ok());
  Packet data = g.expect(VIRTIO_VSOCK_OP_RW);
  CHECK(data.payload == "world");
  CHECK(data.hdr.src_port == 1024);
  CHECK(data.hdr.dst_port == 40000);
  CHECK(data.hdr.fwd_cnt == 5);  // we consumed the 5 bytes of "hello"
}

TEST_CASE("host writes never exceed the guest's advertised credit") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40001, /*buf_alloc=*/1000);

  std::string big(5000, 'x');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  std::thread writer([&] { CHECK(s->write(big, 3000ms).ok()); });

  std::string received;
  uint32_t fwd = 0;
  while (received.size() < big.size()) {
    // Take everything the device sends until it runs out of credit.
    while (auto p = g.recv(150ms)) {
      REQUIRE(p->hdr.op == VIRTIO_VSOCK_OP_RW);
      received += p->payload;
      CHECK(received.size() - fwd <= 1000);  // never more in flight than buf_alloc
    }
    // The guest reader consumed it: tell the device.
    fwd = static_cast<uint32_t>(received.size());
    g.send(make_hdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 40001, 1024, 0, 1000, fwd));
  }
  writer.join();
  CHECK(received == big);
}

TEST_CASE("a stalled guest makes host writes time out instead of buffering without bound") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40002, /*buf_alloc=*/0);
  Status st = s->write(std::string(3 * VsockDevice::kTxPendingBytes, 'q'), 200ms);
  CHECK(st.code() == Errc::timeout);
  CHECK(!g.recv(50ms).has_value());
}

TEST_CASE("the host reading sends CREDIT_UPDATE, CREDIT_REQUEST is answered") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40003);
  const uint32_t quarter = VsockDevice::kRxBufferBytes / 4;
  std::string chunk(4096, 'c');
  for (uint32_t sent = 0; sent < quarter; sent += 4096)
    g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 40003, 1024, 4096), chunk);
  CHECK(!g.recv(50ms).has_value());  // nothing consumed yet: no update
  read_exactly(*s, quarter);
  Packet up = g.expect(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
  CHECK(up.hdr.fwd_cnt == quarter);
  CHECK(up.hdr.buf_alloc == VsockDevice::kRxBufferBytes);

  g.send(make_hdr(VIRTIO_VSOCK_OP_CREDIT_REQUEST, 40003, 1024));
  Packet up2 = g.expect(VIRTIO_VSOCK_OP_CREDIT_UPDATE);
  CHECK(up2.hdr.fwd_cnt == quarter);
}

TEST_CASE("a guest sending past our advertised buffer is reset") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40004);
  std::string chunk(4096, 'f');
  for (uint32_t sent = 0; sent < VsockDevice::kRxBufferBytes; sent += 4096)
    g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 40004, 1024, 4096), chunk);
  CHECK(!g.recv(50ms).has_value());
  g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 40004, 1024, 1), "!");
  g.expect(VIRTIO_VSOCK_OP_RST);
  // What arrived within the credit is still readable, then the reset shows.
  read_exactly(*s, VsockDevice::kRxBufferBytes);
  char b;
  auto r = s->read(&b, 1, 500ms);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::closed);
  CHECK(r.status().message().find("credit") != std::string::npos);
}

TEST_CASE("host connect: RESPONSE establishes, RST refuses, silence times out") {
  Guest g;
  std::thread guest([&] {
    Packet req = g.expect(VIRTIO_VSOCK_OP_REQUEST);
    CHECK(req.hdr.dst_port == 52);
    g.send(make_hdr(VIRTIO_VSOCK_OP_RESPONSE, 52, req.hdr.src_port, 0, 4096));
    Packet req2 = g.expect(VIRTIO_VSOCK_OP_REQUEST);
    g.send(make_hdr(VIRTIO_VSOCK_OP_RST, 53, req2.hdr.src_port));
  });
  auto s = g.dev->connect(52, 2000ms);
  REQUIRE(s.ok());
  auto refused = g.dev->connect(53, 2000ms);
  guest.join();
  REQUIRE(!refused.ok());
  CHECK(refused.status().code() == Errc::unavailable);

  REQUIRE((*s)->write("ping", 500ms).ok());
  CHECK(g.expect(VIRTIO_VSOCK_OP_RW).payload == "ping");

  auto silent = g.dev->connect(54, 100ms);
  CHECK(silent.status().code() == Errc::timeout);
  g.expect(VIRTIO_VSOCK_OP_REQUEST);
  g.expect(VIRTIO_VSOCK_OP_RST);  // the abandoned attempt is reset
}

TEST_CASE("guest shutdown: buffered data stays readable, then end of stream, RST answers") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40005);
  g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 40005, 1024, 4), "tail");
  g.send(make_hdr(VIRTIO_VSOCK_OP_SHUTDOWN, 40005, 1024, 0) /* flags below */);
  // Flags 0 means nothing; now the real close.
  auto h = make_hdr(VIRTIO_VSOCK_OP_SHUTDOWN, 40005, 1024);
  h.flags = VIRTIO_VSOCK_SHUTDOWN_RCV | VIRTIO_VSOCK_SHUTDOWN_SEND;
  g.send(h);
  g.expect(VIRTIO_VSOCK_OP_RST);
  CHECK(read_exactly(*s, 4) == "tail");
  char b;
  auto r = s->read(&b, 1, 500ms);
  REQUIRE(r.ok());
  CHECK(r.value() == 0);
  CHECK(g.dev->connection_count() == 0);
  CHECK(s->write("x", 100ms).code() == Errc::closed);
}

TEST_CASE("host shutdown_write sends SHUTDOWN after queued data, close sends RST") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40006);
  REQUIRE(s->write("last words", 500ms).ok());
  s->shutdown_write();
  CHECK(g.expect(VIRTIO_VSOCK_OP_RW).payload == "last words");
  Packet sd = g.expect(VIRTIO_VSOCK_OP_SHUTDOWN);
  CHECK(sd.hdr.flags == VIRTIO_VSOCK_SHUTDOWN_SEND);
  CHECK(s->write("more", 100ms).code() == Errc::closed);
  s->close();
  g.expect(VIRTIO_VSOCK_OP_RST);
  CHECK(g.dev->connection_count() == 0);
}

TEST_CASE("malformed packets are dropped without harming other connections") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40007);

  // Wrong source CID (spoofing): dropped silently.
  auto spoof = make_hdr(VIRTIO_VSOCK_OP_RW, 40007, 1024, 3);
  spoof.src_cid = 99;
  g.send(spoof, "bad");
  // Length claims more than the buffer carries: dropped, and its connection is reset.
  auto liar = make_hdr(VIRTIO_VSOCK_OP_RW, 40008, 1024, 0xffffff);
  g.send(liar, "x");
  // A packet shorter than a header.
  uint64_t addr = kTxData + (g.tx_sent % kTxSlots) * kTxSlot;
  g.txd.add_and_publish({{addr, 10, false}});
  ++g.tx_sent;
  g.transport.notify(1);
  // Unknown type: RST.
  auto seq = make_hdr(VIRTIO_VSOCK_OP_REQUEST, 40009, 1024);
  seq.type = 2;
  g.send(seq);
  g.expect(VIRTIO_VSOCK_OP_RST);  // for the liar
  g.expect(VIRTIO_VSOCK_OP_RST);  // for the seqpacket request
  CHECK(g.dev->packets_dropped() >= 3);

  // The good connection still works.
  g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 40007, 1024, 2), "ok");
  CHECK(read_exactly(*s, 2) == "ok");
}

TEST_CASE("a flood of requests with no rx buffers stops tx processing at a bound") {
  Guest g(/*rx_buffers=*/0);
  for (int i = 0; i < 60; ++i) g.send(make_hdr(VIRTIO_VSOCK_OP_REQUEST, 100 + i, 9), {}, false);
  std::this_thread::sleep_for(100ms);
  // All 60 consumed (under the bound of pending replies); the replies wait for buffers.
  CHECK(g.txd.used_idx() == 60);
  for (int i = 0; i < 8; ++i) g.post_rx(kRxData + i * 0x2000ull);
  g.transport.notify(0);
  for (int i = 0; i < 60; ++i) {
    auto p = g.recv();
    REQUIRE(p.has_value());
    CHECK(p->hdr.op == VIRTIO_VSOCK_OP_RST);
  }
}

TEST_CASE("a broken tx ring stops the device and fails host streams") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40010);
  std::thread reader([&] {
    char b;
    auto r = s->read(&b, 1, 3000ms);
    CHECK(!r.ok());
    CHECK(r.status().code() == Errc::closed);
  });
  // A descriptor pointing outside guest RAM.
  g.txd.add_and_publish({{1ull << 40, 64, false}});
  g.transport.notify(1);
  reader.join();
  CHECK((g.transport.status() & VIRTIO_CONFIG_S_NEEDS_RESET) != 0);
}

TEST_CASE("shutdown fails pending reads, accepts and later calls at once") {
  Guest g;
  auto l = g.dev->listen(1024);
  REQUIRE(l.ok());
  auto s = g.connect_to_host(**l, 40011);
  auto start = std::chrono::steady_clock::now();
  std::thread reader([&] {
    char b;
    auto r = s->read(&b, 1, 10000ms);
    REQUIRE(!r.ok());
    CHECK(r.status().message().find("sandbox died") != std::string::npos);
  });
  std::thread acceptor([&] {
    auto r = (*l)->accept(10000ms);
    CHECK(r.status().code() == Errc::closed);
  });
  std::this_thread::sleep_for(50ms);
  g.dev->shutdown("sandbox died");
  reader.join();
  acceptor.join();
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  CHECK(g.dev->connect(5, 100ms).status().code() == Errc::closed);
  CHECK(g.dev->listen(7).status().code() == Errc::closed);
}

TEST_CASE("used tx buffers alone wait for the next rx interrupt, a short delay or a batch") {
  Guest g;
  auto l = g.dev->listen(1234).value();
  auto s = g.connect_to_host(*l, 5000);
  std::this_thread::sleep_for(VsockDevice::kTxSignalDelay + 20ms);  // anything pending is out

  // Data from the guest and nothing back: no interrupt for it yet...
  int before = g.interrupts;
  auto t0 = std::chrono::steady_clock::now();
  g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 5000, 1234, 3), "abc");
  int right_after = g.interrupts;
  if (std::chrono::steady_clock::now() - t0 < VsockDevice::kTxSignalDelay)
    CHECK(right_after == before);
  CHECK(read_exactly(*s, 3) == "abc");
  // ...the host's answer brings one interrupt for both queues.
  REQUIRE(s->write("x", 1000ms).ok());
  g.expect(VIRTIO_VSOCK_OP_RW);
  std::this_thread::sleep_for(VsockDevice::kTxSignalDelay + 20ms);
  CHECK(g.interrupts == before + 1);

  // Without an answer, the interrupt comes after kTxSignalDelay.
  before = g.interrupts;
  g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 5000, 1234, 3), "def");
  auto deadline = std::chrono::steady_clock::now() + 2s;
  while (g.interrupts == before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(1ms);
  CHECK(g.interrupts == before + 1);

  // kTxSignalBatch used buffers are signalled at once, whatever the delay.
  before = g.interrupts;
  t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < VsockDevice::kTxSignalBatch; ++i)
    g.send(make_hdr(VIRTIO_VSOCK_OP_RW, 5000, 1234, 1), "z", false);
  deadline = std::chrono::steady_clock::now() + 2s;
  while (g.interrupts == before && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100us);
  if (std::chrono::steady_clock::now() - t0 < VsockDevice::kTxSignalDelay)
    CHECK(g.interrupts > before);
  CHECK(read_exactly(*s, 3) == "def");
  CHECK(read_exactly(*s, VsockDevice::kTxSignalBatch).size() == VsockDevice::kTxSignalBatch);
}

}  // namespace airlock::devices
