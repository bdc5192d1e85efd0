// Test-side "guest": builds and parses the few Ethernet/ARP/IPv4/UDP/TCP/ICMP frames the
// namespace tests write into a sandbox's tap (each prefixed with the 12-byte virtio_net_hdr the
// tap expects). Frames only ever go into a tap inside a namespace the test created.
#pragma once

#include <arpa/inet.h>
#include <poll.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <vector>

namespace airlock::testnet {

using Mac = std::array<uint8_t, 6>;
constexpr Mac kGuestMac = {0x02, 0x00, 0x00, 0x00, 0x00, 0x02};
constexpr Mac kBroadcast = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
constexpr size_t kVnetHdr = 12;
constexpr uint16_t kEthIpv4 = 0x0800, kEthArp = 0x0806;

inline uint32_t ip(const char* text) {
  in_addr a{};
  inet_pton(AF_INET, text, &a);
  return a.s_addr;  // network order
}

struct Bytes {
  std::vector<uint8_t> b;
  void u8(uint8_t v) { b.push_back(v); }
  void u16(uint16_t v) { u8(static_cast<uint8_t>(v >> 8)), u8(static_cast<uint8_t>(v)); }
  void u32(uint32_t v) { u16(static_cast<uint16_t>(v >> 16)), u16(static_cast<uint16_t>(v)); }
  void raw(const void* p, size_t n) {
    auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
  }
  void addr(uint32_t net_order) { raw(&net_order, 4); }
};

inline uint16_t be16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] << 8 | p[1]);
}

inline uint16_t checksum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += be16(p + i);
  if (n & 1) sum += static_cast<uint32_t>(p[n - 1]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline std::vector<uint8_t> eth(const Mac& dst, const Mac& src, uint16_t type,
                                const std::vector<uint8_t>& payload) {
  Bytes f;
  f.b.resize(kVnetHdr, 0);  // no offloads: flags 0, gso NONE
  f.raw(dst.data(), 6);
  f.raw(src.data(), 6);
  f.u16(type);
  f.raw(payload.data(), payload.size());
  return f.b;
}

inline std::vector<uint8_t> arp_request(uint32_t sender_ip, uint32_t target_ip) {
  Bytes a;
  a.u16(1), a.u16(kEthIpv4), a.u8(6), a.u8(4), a.u16(1);
  a.raw(kGuestMac.data(), 6), a.addr(sender_ip);
  a.raw(kBroadcast.data(), 6), a.addr(target_ip);
  return eth(kBroadcast, kGuestMac, kEthArp, a.b);
}

// IPv4 packet with a computed header checksum; `l4` must already carry its own checksum.
inline std::vector<uint8_t> ipv4(uint32_t src, uint32_t dst, uint8_t proto,
                                 const std::vector<uint8_t>& l4) {
  Bytes h;
  h.u8(0x45), h.u8(0), h.u16(static_cast<uint16_t>(20 + l4.size())), h.u16(0x1234), h.u16(0x4000);
  h.u8(64), h.u8(proto), h.u16(0), h.addr(src), h.addr(dst);
  uint16_t c = checksum(h.b.data(), 20);
  h.b[10] = static_cast<uint8_t>(c >> 8), h.b[11] = static_cast<uint8_t>(c);
  h.raw(l4.data(), l4.size());
  return h.b;
}

inline uint32_t pseudo_sum(uint32_t src, uint32_t dst, uint8_t proto, size_t len) {
  Bytes p;
  p.addr(src), p.addr(dst), p.u8(0), p.u8(proto), p.u16(static_cast<uint16_t>(len));
  return static_cast<uint16_t>(~checksum(p.b.data(), p.b.size()));
}

inline std::vector<uint8_t> udp(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                                const std::vector<uint8_t>& payload) {
  Bytes u;
  u.u16(sport), u.u16(dport), u.u16(static_cast<uint16_t>(8 + payload.size())), u.u16(0);
  u.raw(payload.data(), payload.size());
  uint16_t c = checksum(u.b.data(), u.b.size(), pseudo_sum(src, dst, 17, u.b.size()));
  if (c == 0) c = 0xffff;
  u.b[6] = static_cast<uint8_t>(c >> 8), u.b[7] = static_cast<uint8_t>(c);
  return ipv4(src, dst, 17, u.b);
}

constexpr uint8_t kSyn = 0x02, kRst = 0x04, kAck = 0x10;

inline std::vector<uint8_t> tcp_syn(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport) {
  Bytes t;
  t.u16(sport), t.u16(dport), t.u32(1000), t.u32(0), t.u8(5 << 4), t.u8(kSyn), t.u16(64240);
  t.u16(0), t.u16(0);
  uint16_t c = checksum(t.b.data(), t.b.size(), pseudo_sum(src, dst, 6, t.b.size()));
  t.b[16] = static_cast<uint8_t>(c >> 8), t.b[17] = static_cast<uint8_t>(c);
  return ipv4(src, dst, 6, t.b);
}

// Any TCP segment; `options` must be a multiple of 4 bytes.
inline std::vector<uint8_t> tcp(uint32_t src, uint32_t dst, uint16_t sport, uint16_t dport,
                                uint32_t seq, uint32_t ack, uint8_t flags, uint16_t window,
                                const std::vector<uint8_t>& options = {},
                                const std::vector<uint8_t>& payload = {}) {
  Bytes t;
  t.u16(sport), t.u16(dport), t.u32(seq), t.u32(ack);
  t.u8(static_cast<uint8_t>((5 + options.size() / 4) << 4)), t.u8(flags), t.u16(window);
  t.u16(0), t.u16(0);
  t.raw(options.data(), options.size());
  t.raw(payload.data(), payload.size());
  uint16_t c = checksum(t.b.data(), t.b.size(), pseudo_sum(src, dst, 6, t.b.size()));
  t.b[16] = static_cast<uint8_t>(c >> 8), t.b[17] = static_cast<uint8_t>(c);
  return ipv4(src, dst, 6, t.b);
}

inline uint32_t be32(const uint8_t* p) {
  return uint32_t{be16(p)} << 16 | be16(p + 2);
}

inline std::vector<uint8_t> icmp_echo(uint32_t src, uint32_t dst) {
  Bytes e;
  e.u8(8), e.u8(0), e.u16(0), e.u16(0x77), e.u16(1), e.raw("airlock!", 8);
  uint16_t c = checksum(e.b.data(), e.b.size());
  e.b[2] = static_cast<uint8_t>(c >> 8), e.b[3] = static_cast<uint8_t>(c);
  return ipv4(src, dst, 1, e.b);
}

constexpr uint16_t kEthIpv6 = 0x86dd;
constexpr Mac kAllNodesMac = {0x33, 0x33, 0x00, 0x00, 0x00, 0x01};

// ICMPv6 echo request from fe80::2 to ff02::1 (all nodes), as a whole Ethernet frame.
inline std::vector<uint8_t> icmpv6_echo_all_nodes() {
  uint8_t src[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
  uint8_t dst[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  Bytes icmp;
  icmp.u8(128), icmp.u8(0), icmp.u16(0), icmp.u16(0x99), icmp.u16(1), icmp.raw("airlock!", 8);
  Bytes pseudo;
  pseudo.raw(src, 16), pseudo.raw(dst, 16), pseudo.u32(static_cast<uint32_t>(icmp.b.size()));
  pseudo.u8(0), pseudo.u8(0), pseudo.u8(0), pseudo.u8(58);
  pseudo.raw(icmp.b.data(), icmp.b.size());
  uint16_t c = checksum(pseudo.b.data(), pseudo.b.size());
  icmp.b[2] = static_cast<uint8_t>(c >> 8), icmp.b[3] = static_cast<uint8_t>(c);
  Bytes ip6;
  ip6.u32(0x60000000), ip6.u16(static_cast<uint16_t>(icmp.b.size())), ip6.u8(58), ip6.u8(255);
  ip6.raw(src, 16), ip6.raw(dst, 16), ip6.raw(icmp.b.data(), icmp.b.size());
  return eth(kAllNodesMac, kGuestMac, kEthIpv6, ip6.b);
}

// A received frame without its vnet header.
struct Frame {
  std::vector<uint8_t> b;
  uint16_t ethertype() const { return b.size() >= 14 ? be16(&b[12]) : 0; }
  Mac src() const {
    Mac m{};
    if (b.size() >= 14) memcpy(m.data(), &b[6], 6);
    return m;
  }
  const uint8_t* l3() const { return b.data() + 14; }
  size_t l3_len() const { return b.size() > 14 ? b.size() - 14 : 0; }
  bool is_ipv4() const { return ethertype() == kEthIpv4 && l3_len() >= 20; }
  uint8_t proto() const { return l3()[9]; }
  uint32_t ip_src() const {
    uint32_t v;
    memcpy(&v, l3() + 12, 4);
    return v;
  }
  const uint8_t* l4() const { return l3() + (l3()[0] & 0xf) * 4; }
  size_t l4_len() const { return l3_len() - (l3()[0] & 0xf) * 4; }
};

inline bool write_frame(int tap, const std::vector<uint8_t>& f) {
  return ::write(tap, f.data(), f.size()) == static_cast<ssize_t>(f.size());
}

// Reads frames until `want` accepts one or the deadline passes. Frames `want` rejects are
// returned through `others` when given (so a test can also assert on what it did not expect).
inline std::optional<Frame> read_until(int tap, std::chrono::milliseconds timeout,
                                       const std::function<bool(const Frame&)>& want,
                                       std::vector<Frame>* others = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{tap, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    uint8_t buf[65536 + kVnetHdr];
    ssize_t n = ::read(tap, buf, sizeof buf);
    if (n <= static_cast<ssize_t>(kVnetHdr)) continue;
    Frame f;
    f.b.assign(buf + kVnetHdr, buf + n);
    if (want(f)) return f;
    if (others) others->push_back(std::move(f));
  }
}

}  // namespace airlock::testnet
