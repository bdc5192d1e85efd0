#include "proxy/address.h"

#include <string.h>

#include <algorithm>
#include <initializer_list>

#include <fmt/format.h>

namespace airlock::proxy {
namespace {

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Strict dotted quad: exactly four decimal parts, 0..255, no leading zeros (which libc would
// read as octal), no signs, no empty parts.
std::optional<std::array<uint8_t, 4>> parse_dotted_quad(std::string_view s) {
  std::array<uint8_t, 4> out{};
  size_t part = 0, i = 0;
  while (part < 4) {
    size_t start = i;
    unsigned value = 0;
    while (i < s.size() && is_digit(s[i]) && i - start < 4) value = value * 10 + (s[i++] - '0');
    size_t len = i - start;
    if (len == 0 || len > 3 || value > 255 || (len > 1 && s[start] == '0')) return std::nullopt;
    out[part++] = static_cast<uint8_t>(value);
    if (part < 4) {
      if (i >= s.size() || s[i] != '.') return std::nullopt;
      ++i;
    }
  }
  if (i != s.size()) return std::nullopt;
  return out;
}

std::optional<std::array<uint8_t, 16>> parse_v6(std::string_view s) {
  if (s.size() < 2 || s.size() > 45) return std::nullopt;
  std::array<uint16_t, 8> groups{};
  int count = 0;    // groups written
  int gap_at = -1;  // index in groups where "::" stands
  size_t i = 0;
  if (s.substr(0, 2) == "::") {
    gap_at = 0;
    i = 2;
    if (i == s.size()) return std::array<uint8_t, 16>{};
  } else if (s[0] == ':') {
    return std::nullopt;
  }
  while (i < s.size()) {
    if (count >= 8) return std::nullopt;
    // A trailing dotted quad fills two groups.
    size_t next_colon = s.find(':', i);
    std::string_view piece =
        s.substr(i, next_colon == std::string_view::npos ? s.npos : next_colon - i);
    if (next_colon == std::string_view::npos && piece.find('.') != std::string_view::npos) {
      if (count > 6) return std::nullopt;
      auto quad = parse_dotted_quad(piece);
      if (!quad) return std::nullopt;
      groups[count++] = static_cast<uint16_t>((*quad)[0] << 8 | (*quad)[1]);
      groups[count++] = static_cast<uint16_t>((*quad)[2] << 8 | (*quad)[3]);
      i = s.size();
      break;
    }
    if (piece.empty() || piece.size() > 4) return std::nullopt;
    unsigned v = 0;
    for (char c : piece) {
      int h = hex_value(c);
      if (h < 0) return std::nullopt;
      v = v << 4 | h;
    }
    groups[count++] = static_cast<uint16_t>(v);
    i += piece.size();
    if (i == s.size()) break;
    // s[i] == ':'
    ++i;
    if (i < s.size() && s[i] == ':') {
      if (gap_at >= 0) return std::nullopt;
      gap_at = count;
      ++i;
      if (i == s.size()) break;
    } else if (i == s.size()) {
      return std::nullopt;  // trailing single ':'
    }
  }
  if (gap_at < 0 && count != 8) return std::nullopt;
  if (gap_at >= 0 && count > 7) return std::nullopt;  // "::" must stand for at least one group
  std::array<uint16_t, 8> full{};
  if (gap_at < 0) {
    full = groups;
  } else {
    int tail = count - gap_at;
    for (int k = 0; k < gap_at; ++k) full[k] = groups[k];
    for (int k = 0; k < tail; ++k) full[8 - tail + k] = groups[gap_at + k];
  }
  std::array<uint8_t, 16> out{};
  for (int k = 0; k < 8; ++k) {
    out[2 * k] = static_cast<uint8_t>(full[k] >> 8);
    out[2 * k + 1] = static_cast<uint8_t>(full[k]);
  }
  return out;
}

// One inet_aton part: decimal, octal with leading 0, hex with 0x. Empty hex ("0x") is refused
// as glibc does (WHATWG reads it as 0; either way it is numeric, so never a name). Returns
// nullopt on bad digits or overflow past 32 bits.
std::optional<uint64_t> parse_legacy_part(std::string_view p) {
  if (p.empty()) return std::nullopt;
  unsigned base = 10;
  if (p.size() >= 2 && p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
    base = 16;
    p.remove_prefix(2);
    if (p.empty()) return std::nullopt;
  } else if (p.size() >= 2 && p[0] == '0') {
    base = 8;
    p.remove_prefix(1);
  }
  uint64_t v = 0;
  for (char c : p) {
    int d = hex_value(c);
    if (d < 0 || static_cast<unsigned>(d) >= base) return std::nullopt;
    v = v * base + d;
    if (v > 0xffffffffULL) return std::nullopt;
  }
  return v;
}

bool in_v4(uint32_t a, uint32_t net, int prefix) {
  uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (a & mask) == (net & mask);
}

constexpr uint32_t v4(unsigned a, unsigned b, unsigned c, unsigned d) {
  return a << 24 | b << 16 | c << 8 | d;
}

AddressClass classify_v4(uint32_t a) {
  if (a == 0) return AddressClass::unspecified;
  if (a == v4(255, 255, 255, 255)) return AddressClass::broadcast;
  // Cloud metadata endpoints first: some sit in ranges that are otherwise link-local, CGNAT or
  // even public (Azure's wireserver).
  static constexpr uint32_t kMetadata[] = {
      v4(169, 254, 169, 254),  // AWS, GCP, Azure, OpenStack, DigitalOcean, ...
      v4(169, 254, 170, 2),    // AWS ECS task metadata
      v4(169, 254, 170, 23),   // AWS EKS pod identity
      v4(168, 63, 129, 16),    // Azure wireserver
      v4(100, 100, 100, 200),  // Alibaba Cloud
  };
  for (uint32_t m : kMetadata)
    if (a == m) return AddressClass::metadata;
  struct Range {
    uint32_t net;
    int prefix;
    AddressClass cls;
  };
  static constexpr Range kRanges[] = {
      {v4(0, 0, 0, 0), 8, AddressClass::this_network},
      {v4(10, 0, 0, 0), 8, AddressClass::private_},
      {v4(100, 64, 0, 0), 10, AddressClass::cgnat},
      {v4(127, 0, 0, 0), 8, AddressClass::loopback},
      {v4(169, 254, 0, 0), 16, AddressClass::link_local},
      {v4(172, 16, 0, 0), 12, AddressClass::private_},
      {v4(192, 0, 0, 0), 24, AddressClass::protocol_assignment},
      {v4(192, 0, 2, 0), 24, AddressClass::documentation},
      {v4(192, 88, 99, 0), 24, AddressClass::reserved},  // 6to4 relay anycast (deprecated)
      {v4(192, 168, 0, 0), 16, AddressClass::private_},
      {v4(198, 18, 0, 0), 15, AddressClass::benchmarking},
      {v4(198, 51, 100, 0), 24, AddressClass::documentation},
      {v4(203, 0, 113, 0), 24, AddressClass::documentation},
      {v4(224, 0, 0, 0), 4, AddressClass::multicast},
      {v4(240, 0, 0, 0), 4, AddressClass::reserved},
  };
  for (const Range& r : kRanges)
    if (in_v4(a, r.net, r.prefix)) return r.cls;
  return AddressClass::public_;
}

uint16_t group(const IpAddress& ip, int k) {
  return static_cast<uint16_t>(ip.bytes[2 * k] << 8 | ip.bytes[2 * k + 1]);
}

bool v6_prefix(const IpAddress& ip, std::initializer_list<uint16_t> head, int prefix_bits) {
  int k = 0;
  for (uint16_t g : head) {
    int bits = std::min(16, prefix_bits - 16 * k);
    if (bits <= 0) break;
    uint16_t mask = static_cast<uint16_t>(0xffff << (16 - bits));
    if ((group(ip, k) & mask) != (g & mask)) return false;
    ++k;
  }
  return true;
}

uint32_t low32(const IpAddress& ip) {
  return uint32_t{ip.bytes[12]} << 24 | uint32_t{ip.bytes[13]} << 16 | uint32_t{ip.bytes[14]} << 8 |
         ip.bytes[15];
}

bool all_zero(const IpAddress& ip, int from, int to) {
  for (int i = from; i < to; ++i)
    if (ip.bytes[i]) return false;
  return true;
}

}  // namespace

IpAddress IpAddress::from_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress ip;
  ip.bytes[0] = a;
  ip.bytes[1] = b;
  ip.bytes[2] = c;
  ip.bytes[3] = d;
  return ip;
}

IpAddress IpAddress::from_v4(uint32_t h) {
  return from_v4(static_cast<uint8_t>(h >> 24), static_cast<uint8_t>(h >> 16),
                 static_cast<uint8_t>(h >> 8), static_cast<uint8_t>(h));
}

IpAddress IpAddress::from_v6(const std::array<uint8_t, 16>& b) {
  IpAddress ip;
  ip.family = v6;
  ip.bytes = b;
  return ip;
}

uint32_t IpAddress::v4_host_order() const {
  return uint32_t{bytes[0]} << 24 | uint32_t{bytes[1]} << 16 | uint32_t{bytes[2]} << 8 | bytes[3];
}

std::string IpAddress::to_string() const {
  if (family == v4) return fmt::format("{}.{}.{}.{}", bytes[0], bytes[1], bytes[2], bytes[3]);
  if (all_zero(*this, 0, 10) && bytes[10] == 0xff && bytes[11] == 0xff)
    return fmt::format("::ffff:{}.{}.{}.{}", bytes[12], bytes[13], bytes[14], bytes[15]);
  // RFC 5952: compress the longest run of two or more zero groups (the first on a tie).
  int best_start = -1, best_len = 0;
  for (int k = 0; k < 8;) {
    if (group(*this, k) != 0) {
      ++k;
      continue;
    }
    int start = k;
    while (k < 8 && group(*this, k) == 0) ++k;
    if (k - start > best_len) {
      best_start = start;
      best_len = k - start;
    }
  }
  if (best_len < 2) best_start = -1;
  std::string out;
  for (int k = 0; k < 8; ++k) {
    if (k == best_start) {
      out += "::";
      k += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    out += fmt::format("{:x}", group(*this, k));
  }
  return out;
}

std::string IpAddress::to_uri_host() const {
  // fmt rather than "[" + std::string&&: GCC 12 at -O3 flags the inlined string insert with a
  // false -Wrestrict (overlapping memcpy of ~2^63 bytes) that -Werror turns into a build failure.
  return family == v6 ? fmt::format("[{}]", to_string()) : to_string();
}

std::optional<IpAddress> IpAddress::embedded_v4() const {
  if (family != v6) return std::nullopt;
  // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, excluding :: and ::1).
  if (all_zero(*this, 0, 10) && bytes[10] == 0xff && bytes[11] == 0xff)
    return from_v4(low32(*this));
  if (all_zero(*this, 0, 12) && low32(*this) > 1) return from_v4(low32(*this));
  // NAT64 well-known prefix 64:ff9b::/96 and local-use 64:ff9b:1::/48 (RFC 8215; with /96 the
  // usual deployment, the address is in the low 32 bits).
  if (v6_prefix(*this, {0x64, 0xff9b, 0, 0, 0, 0}, 96)) return from_v4(low32(*this));
  if (v6_prefix(*this, {0x64, 0xff9b, 1}, 48)) return from_v4(low32(*this));
  // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD.
  if (group(*this, 0) == 0x2002) return from_v4(bytes[2], bytes[3], bytes[4], bytes[5]);
  // Teredo 2001:0::/32: the client's public address is the last 32 bits, inverted.
  if (group(*this, 0) == 0x2001 && group(*this, 1) == 0) return from_v4(~low32(*this));
  return std::nullopt;
}

std::optional<IpAddress> parse_ip_literal(std::string_view text) {
  if (text.find(':') == std::string_view::npos) {
    auto quad = parse_dotted_quad(text);
    if (!quad) return std::nullopt;
    return IpAddress::from_v4((*quad)[0], (*quad)[1], (*quad)[2], (*quad)[3]);
  }
  auto b = parse_v6(text);
  if (!b) return std::nullopt;
  return IpAddress::from_v6(*b);
}

bool looks_like_numeric_host(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  // IPv6 literals ("::ffff:1.2.3.4" ends in a number) are not IPv4 numbers.
  if (host.empty() || host.find(':') != std::string_view::npos) return false;
  size_t dot = host.rfind('.');
  std::string_view last = dot == std::string_view::npos ? host : host.substr(dot + 1);
  if (last.empty()) return false;
  // WHATWG "ends in a number": all decimal digits, or 0x/0X followed by hex digits only.
  bool decimal = true;
  for (char c : last) decimal = decimal && is_digit(c);
  if (decimal) return true;
  if (last.size() >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X')) {
    for (char c : last.substr(2))
      if (hex_value(c) < 0) return false;
    return true;
  }
  return false;
}

std::optional<IpAddress> parse_legacy_ipv4(std::string_view host) {
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  if (host.empty() || host.size() > 64) return std::nullopt;
  uint64_t parts[4];
  int n = 0;
  size_t start = 0;
  while (true) {
    size_t dot = host.find('.', start);
    std::string_view p =
        host.substr(start, dot == std::string_view::npos ? host.npos : dot - start);
    if (n == 4) return std::nullopt;
    auto v = parse_legacy_part(p);
    if (!v) return std::nullopt;
    parts[n++] = *v;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  // Every part but the last is one byte; the last fills the remaining 4-(n-1) bytes.
  for (int k = 0; k < n - 1; ++k)
    if (parts[k] > 255) return std::nullopt;
  int last_bytes = 4 - (n - 1);
  if (last_bytes < 4 && parts[n - 1] >= (uint64_t{1} << (8 * last_bytes))) return std::nullopt;
  uint32_t a = static_cast<uint32_t>(parts[n - 1]);
  for (int k = 0; k < n - 1; ++k) a |= static_cast<uint32_t>(parts[k]) << (24 - 8 * k);
  return IpAddress::from_v4(a);
}

const char* address_class_name(AddressClass c) {
  switch (c) {
    case AddressClass::public_:
      return "public";
    case AddressClass::unspecified:
      return "unspecified";
    case AddressClass::this_network:
      return "this-network";
    case AddressClass::loopback:
      return "loopback";
    case AddressClass::private_:
      return "private";
    case AddressClass::cgnat:
      return "shared (CGNAT)";
    case AddressClass::link_local:
      return "link-local";
    case AddressClass::metadata:
      return "cloud metadata";
    case AddressClass::protocol_assignment:
      return "IETF protocol assignment";
    case AddressClass::documentation:
      return "documentation";
    case AddressClass::benchmarking:
      return "benchmarking";
    case AddressClass::multicast:
      return "multicast";
    case AddressClass::broadcast:
      return "broadcast";
    case AddressClass::reserved:
      return "reserved";
    case AddressClass::unique_local:
      return "unique-local";
    case AddressClass::site_local:
      return "site-local";
    case AddressClass::ipv4_mapped:
      return "IPv4-mapped";
    case AddressClass::ipv4_embedded:
      return "IPv4-embedding";
  }
  return "unknown";
}

AddressClass classify(const IpAddress& ip) {
  if (ip.family == IpAddress::v4) return classify_v4(ip.v4_host_order());

  if (all_zero(ip, 0, 16)) return AddressClass::unspecified;
  if (all_zero(ip, 0, 15) && ip.bytes[15] == 1) return AddressClass::loopback;
  // AWS IMDS over IPv6 sits inside fc00::/7; check before the ULA range.
  static const IpAddress kAwsV6[] = {*parse_ip_literal("fd00:ec2::254"),
                                     *parse_ip_literal("fd00:ec2::23")};
  for (const IpAddress& m : kAwsV6)
    if (ip == m) return AddressClass::metadata;

  if (auto v4 = ip.embedded_v4()) {
    AddressClass inner = classify_v4(v4->v4_host_order());
    if (inner != AddressClass::public_) return inner;
    bool mapped = all_zero(ip, 0, 10) && ip.bytes[10] == 0xff && ip.bytes[11] == 0xff;
    return mapped ? AddressClass::ipv4_mapped : AddressClass::ipv4_embedded;
  }
  if (all_zero(ip, 0, 12)) return AddressClass::reserved;                   // rest of ::/96
  if (v6_prefix(ip, {0x0100, 0, 0, 0}, 64)) return AddressClass::reserved;  // discard-only
  if (v6_prefix(ip, {0xfe80}, 10)) return AddressClass::link_local;
  if (v6_prefix(ip, {0xfec0}, 10)) return AddressClass::site_local;
  if (v6_prefix(ip, {0xfc00}, 7)) return AddressClass::unique_local;
  if (v6_prefix(ip, {0xff00}, 8)) return AddressClass::multicast;
  if (v6_prefix(ip, {0x2001, 0x0db8}, 32)) return AddressClass::documentation;
  if (v6_prefix(ip, {0x3fff}, 20)) return AddressClass::documentation;
  if (v6_prefix(ip, {0x2001, 0x0002, 0}, 48)) return AddressClass::benchmarking;
  if (v6_prefix(ip, {0x2001, 0}, 23)) return AddressClass::protocol_assignment;
  // Only 2000::/3 is allocated global unicast.
  if (!v6_prefix(ip, {0x2000}, 3)) return AddressClass::reserved;
  return AddressClass::public_;
}

bool is_forbidden_upstream(const IpAddress& ip) {
  return classify(ip) != AddressClass::public_;
}

socklen_t to_sockaddr(const IpAddress& ip, uint16_t port, sockaddr_storage* out) {
  memset(out, 0, sizeof(*out));
  if (ip.family == IpAddress::v4) {
    auto* sin = reinterpret_cast<sockaddr_in*>(out);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    memcpy(&sin->sin_addr, ip.bytes.data(), 4);
    return sizeof(sockaddr_in);
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(out);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(port);
  memcpy(&sin6->sin6_addr, ip.bytes.data(), 16);
  return sizeof(sockaddr_in6);
}

std::optional<IpAddress> from_sockaddr(const sockaddr* sa, socklen_t len, uint16_t* port) {
  if (!sa) return std::nullopt;
  if (sa->sa_family == AF_INET && len >= static_cast<socklen_t>(sizeof(sockaddr_in))) {
    const auto* sin = reinterpret_cast<const sockaddr_in*>(sa);
    IpAddress ip;
    memcpy(ip.bytes.data(), &sin->sin_addr, 4);
    if (port) *port = ntohs(sin->sin_port);
    return ip;
  }
  if (sa->sa_family == AF_INET6 && len >= static_cast<socklen_t>(sizeof(sockaddr_in6))) {
    const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::array<uint8_t, 16> b;
    memcpy(b.data(), &sin6->sin6_addr, 16);
    if (port) *port = ntohs(sin6->sin6_port);
    return IpAddress::from_v6(b);
  }
  return std::nullopt;
}

}  // namespace airlock::proxy
