// virtio-net on a real tap inside a sandbox namespace: a MockDriver plays the guest's driver
// (through the real virtio-mmio transport and GuestMemory), the test plays the guest's network
// stack with hand-built frames, the kernel in the sandbox namespace answers. Needs root.
#include <doctest/doctest.h>

#include <linux/virtio_ids.h>
#include <sys/socket.h>
#define class class_
#include <linux/virtio_net.h>
#undef class

#include <atomic>
#include <map>
#include <memory>
#include <thread>

#include "../unit/virtio/mock_driver.h"
#include "devices/net.h"
#include "devices/net_tap.h"
#include "frames.h"
#include "net/sandbox_network.h"
#include "virtio/mmio.h"

using namespace airlock;
using namespace airlock::testnet;
using namespace std::chrono_literals;
using airlock::devices::NetDevice;
using airlock::devices::TapBackend;
using airlock::virtio::MmioTransport;
using airlock::virtio::testing::feature;
using airlock::virtio::testing::MockDriver;

namespace {

const uint32_t kHost = ip("10.213.0.1");
const uint32_t kGuest = ip("10.213.0.2");
constexpr uint64_t kRxBase = 0x100000;  // receive buffers
constexpr uint64_t kTxBase = 0x400000;  // transmit frames
constexpr uint16_t kRing = 64;

// A guest: driver rings plus the little network stack the tests need.
struct Guest {
  GuestMemory mem = GuestMemory::create(16 << 20).value();
  std::unique_ptr<net::SandboxNetwork> network;
  std::shared_ptr<NetDevice> dev;
  std::unique_ptr<MmioTransport> transport;
  MockDriver rx{mem, kRing, 0x1000};
  MockDriver tx{mem, kRing, 0x10000};
  std::map<uint16_t, uint64_t> rx_addr;  // head -> buffer
  uint32_t rx_buf_len = 0;
  uint16_t rx_seen = 0, tx_next = 0;
  Mac gateway{};

  Guest(uint64_t features, uint32_t rx_len) : rx_buf_len(rx_len) {
    auto n = net::SandboxNetwork::create({});
    REQUIRE_MESSAGE(n.ok(), n.status().to_string());
    network = std::move(n).value();
    auto backend = TapBackend::create(network->take_tap());
    REQUIRE(backend.ok());
    dev = std::make_shared<NetDevice>(std::move(backend).value());
    transport = std::make_unique<MmioTransport>(dev, mem);
    transport->set_interrupt_trigger([] {});
    virtio::testing::negotiate(*transport, feature(VIRTIO_F_VERSION_1) | features);
    virtio::testing::setup_queue(*transport, 0, rx);
    virtio::testing::setup_queue(*transport, 1, tx);
    virtio::testing::driver_ok(*transport);
    REQUIRE(transport->status() == virtio::testing::kStatusRunning);
    for (uint16_t i = 0; i < kRing / 2; ++i) post_rx(kRxBase + 0x10000ull * i);
    transport->notify(0);
  }
  ~Guest() { transport.reset(); }

  void post_rx(uint64_t addr) {
    uint16_t head = rx.add_and_publish({{addr, rx_buf_len, true}});
    rx_addr[head] = addr;
  }

  void send(const std::vector<uint8_t>& frame_with_hdr) {
    // Frame slots and descriptors are reused: never run more than 8 ahead of the device.
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while (static_cast<uint16_t>(tx_next - tx.used_idx()) >= 8 &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(100us);
    const uint64_t at = kTxBase + 0x10000ull * (tx_next++ % 16);
    REQUIRE(frame_with_hdr.size() <= 0x10000);
    REQUIRE(mem.write(at, frame_with_hdr.data(), frame_with_hdr.size()).ok());
    tx.add_and_publish({{at, static_cast<uint32_t>(frame_with_hdr.size()), false}});
    transport->notify(1);
  }

  // Next received frame with its header (merged across buffers), reposting the buffers.
  std::optional<std::vector<uint8_t>> receive(std::chrono::milliseconds timeout = 2000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<uint8_t> out;
    uint16_t want = 1;
    for (uint16_t got = 0; got < want;) {
      while (rx.used_idx() == rx_seen) {
        if (std::chrono::steady_clock::now() > deadline) return std::nullopt;
        std::this_thread::sleep_for(20us);
      }
      auto elem = rx.used_elem(rx_seen++);
      uint64_t addr = rx_addr.at(static_cast<uint16_t>(elem.id));
      std::vector<uint8_t> part(elem.len);
      REQUIRE(mem.read(addr, part.data(), part.size()).ok());
      if (got == 0) want = static_cast<uint16_t>(part.at(10) | part.at(11) << 8);
      out.insert(out.end(), part.begin(), part.end());
      ++got;
      post_rx(addr);
      transport->notify(0);
    }
    return out;
  }

  // Waits for a frame `want` accepts, answering the kernel's ARP requests meanwhile.
  std::optional<std::vector<uint8_t>> await(const std::function<bool(const Frame&)>& want,
                                            std::chrono::milliseconds timeout = 2000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto raw = receive(std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now()));
      if (!raw) return std::nullopt;
      Frame f;
      f.b.assign(raw->begin() + kVnetHdr, raw->end());
      if (f.ethertype() == kEthArp && be16(f.l3() + 6) == 1) {
        Bytes a;
        a.u16(1), a.u16(kEthIpv4), a.u8(6), a.u8(4), a.u16(2);
        a.raw(kGuestMac.data(), 6), a.addr(kGuest), a.raw(f.l3() + 8, 10);
        Mac dst;
        memcpy(dst.data(), f.l3() + 8, 6);
        send(eth(dst, kGuestMac, kEthArp, a.b));
        continue;
      }
      if (want(f)) return raw;
    }
    return std::nullopt;
  }

  void resolve_gateway() {
    send(arp_request(kGuest, kHost));
    auto reply =
        await([](const Frame& f) { return f.ethertype() == kEthArp && be16(f.l3() + 6) == 2; });
    REQUIRE(reply.has_value());
    memcpy(gateway.data(), reply->data() + kVnetHdr + 14 + 8, 6);
  }
};

std::vector<uint8_t> dns_a_query(uint16_t id) {
  Bytes q;
  q.u16(id), q.u16(0x0100), q.u16(1), q.u16(0), q.u16(0), q.u16(0);
  q.u8(4), q.raw("pypi", 4), q.u8(3), q.raw("org", 3), q.u8(0), q.u16(1), q.u16(1);
  return q.b;
}

}  // namespace

TEST_CASE("virtio-net over the sandbox tap: ARP and DNS round trip") {
  Guest g(feature(VIRTIO_NET_F_MAC) | feature(VIRTIO_NET_F_STATUS), 1526);
  g.resolve_gateway();
  g.send(eth(g.gateway, kGuestMac, kEthIpv4, udp(kGuest, kHost, 33333, 53, dns_a_query(0x5151))));
  auto reply =
      g.await([](const Frame& f) { return f.is_ipv4() && f.proto() == 17 && be16(f.l4()) == 53; });
  REQUIRE(reply.has_value());
  CHECK((*reply)[10] == 1);  // num_buffers
  Frame f;
  f.b.assign(reply->begin() + kVnetHdr, reply->end());
  const uint8_t* dns = f.l4() + 8;
  CHECK(be16(dns) == 0x5151);
  uint32_t addr;
  memcpy(&addr, f.l4() + f.l4_len() - 4, 4);
  CHECK(addr == kHost);
  auto st = g.dev->stats();
  CHECK(st.tx_frames >= 2);
  CHECK(st.rx_frames >= 2);
  CHECK(st.rx_dropped == 0);
}

// The guest opens a TCP connection to the explicit proxy port; the host side (the test, as
// the proxy would) accepts and sends 60 KB. With GUEST_TSO4 negotiated the tap hands the
// device GSO super-frames and they reach the guest whole, with the header describing them;
// without it every frame fits the MTU.
void tcp_download(bool tso, size_t total = 60000) {
  uint64_t features = feature(VIRTIO_NET_F_MAC) | feature(VIRTIO_NET_F_MRG_RXBUF);
  if (tso) features |= feature(VIRTIO_NET_F_GUEST_CSUM) | feature(VIRTIO_NET_F_GUEST_TSO4);
  Guest g(features, 4096);
  if (tso) {
    CHECK((g.transport->offered_features() & feature(VIRTIO_NET_F_GUEST_TSO4)) != 0);
  }
  auto listeners = g.network->take_proxy_listeners();
  std::vector<UniqueFd> keep;
  for (auto& l : listeners) keep.emplace_back(l.fd);
  g.resolve_gateway();

  const uint16_t sport = 41000;
  const uint32_t iss = 1000;
  // MSS 1460, window scale 7 (so the host may send a lot before we ack).
  const std::vector<uint8_t> opts = {2, 4, 0x05, 0xb4, 1, 3, 3, 7};
  g.send(eth(g.gateway, kGuestMac, kEthIpv4,
             tcp(kGuest, kHost, sport, 3128, iss, 0, kSyn, 65535, opts)));
  auto synack = g.await(
      [&](const Frame& f) { return f.is_ipv4() && f.proto() == 6 && be16(f.l4() + 2) == sport; });
  REQUIRE(synack.has_value());
  Frame sa;
  sa.b.assign(synack->begin() + kVnetHdr, synack->end());
  REQUIRE((sa.l4()[13] & (kSyn | kAck)) == (kSyn | kAck));
  uint32_t server_seq = be32(sa.l4() + 4) + 1;
  g.send(eth(g.gateway, kGuestMac, kEthIpv4,
             tcp(kGuest, kHost, sport, 3128, iss + 1, server_seq, kAck, 65535)));

  // The "proxy" accepts and writes.
  pollfd p{keep[0].get(), POLLIN, 0};
  REQUIRE(::poll(&p, 1, 2000) == 1);
  UniqueFd conn(::accept4(keep[0].get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(conn.valid());
  // The "proxy" writes `total` bytes from its own thread while the guest receives and acks.
  std::thread writer([&] {
    std::vector<uint8_t> data(256 * 1024, 'x');
    size_t sent = 0;
    while (sent < total) {
      ssize_t n =
          ::send(conn.get(), data.data(), std::min(data.size(), total - sent), MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  });
  struct Join {
    std::thread& t;
    int fd;
    ~Join() {
      ::shutdown(fd, SHUT_RDWR);
      t.join();
    }
  } join{writer, conn.get()};

  const auto start = std::chrono::steady_clock::now();
  size_t biggest = 0, received = 0;
  bool saw_gso = false;
  while (received < std::min<size_t>(total, 14000) || (total > 60000 && received < total)) {
    auto seg = g.await(
        [&](const Frame& f) { return f.is_ipv4() && f.proto() == 6 && be16(f.l4() + 2) == sport; });
    REQUIRE(seg.has_value());
    Frame f;
    f.b.assign(seg->begin() + kVnetHdr, seg->end());
    const size_t payload = f.l4_len() - (f.l4()[12] >> 4) * 4;
    // Count in-order data only (a retransmission repeats what we have).
    if (be32(f.l4() + 4) == server_seq + static_cast<uint32_t>(received)) received += payload;
    biggest = std::max(biggest, f.b.size());
    const uint8_t gso = (*seg)[1];
    if (gso == VIRTIO_NET_HDR_GSO_TCPV4) {
      saw_gso = true;
      CHECK(((*seg)[0] & VIRTIO_NET_HDR_F_NEEDS_CSUM) != 0);
      CHECK((((*seg)[4] | (*seg)[5] << 8)) == 1460);  // gso_size: the MSS we announced
    }
    if (!tso) CHECK(gso == VIRTIO_NET_HDR_GSO_NONE);
    // Ack everything so far.
    g.send(eth(g.gateway, kGuestMac, kEthIpv4,
               tcp(kGuest, kHost, sport, 3128, iss + 1,
                   server_seq + static_cast<uint32_t>(received), kAck, 65535)));
  }
  if (tso) {
    CHECK(saw_gso);
    CHECK(biggest > 1514);
  } else {
    CHECK(!saw_gso);
    CHECK(biggest <= 1514);
  }
  CHECK(g.dev->stats().rx_dropped == 0);
  if (total > 60000) {
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    MESSAGE("kernel -> tap -> virtio-net -> mock driver, "
            << (total >> 20) << " MiB, TSO " << std::string(tso ? "on" : "off") << ": "
            << (total / secs / 1e6) << " MB/s (" << g.dev->stats().rx_frames << " frames)");
  }
}

TEST_CASE("virtio-net over the tap: GUEST_TSO4 negotiated, GSO super-frames reach the guest") {
  tcp_download(true);
}

TEST_CASE("virtio-net over the tap: without guest offloads every frame fits the MTU") {
  tcp_download(false);
}

TEST_CASE("virtio-net over the tap: 32 MiB download with and without TSO, nothing dropped") {
  tcp_download(true, 32u << 20);
  tcp_download(false, 32u << 20);
}
