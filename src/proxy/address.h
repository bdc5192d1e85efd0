// IP addresses for the egress proxy: strict literal parsing, detection of the non-canonical
// numeric host forms libc and curl accept, and classification of every special-purpose range so
// the proxy never dials loopback, private, link-local, metadata or IPv4-embedding addresses
// unless allow_net names that exact literal. Pure functions; any thread may call them.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace airlock::proxy {

struct IpAddress {
  enum Family : uint8_t { v4, v6 };
  Family family = v4;
  // Network byte order. An IPv4 address uses bytes[0..3]; the rest stays zero so that
  // operator== compares addresses.
  std::array<uint8_t, 16> bytes{};

  static IpAddress from_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d);
  static IpAddress from_v4(uint32_t host_order);
  static IpAddress from_v6(const std::array<uint8_t, 16>& bytes);

  uint32_t v4_host_order() const;  // precondition: family == v4
  // "127.0.0.1", "2001:db8::1" (RFC 5952: lowercase, longest zero run compressed),
  // "::ffff:1.2.3.4" for IPv4-mapped addresses. No brackets.
  std::string to_string() const;
  // to_string() with brackets around IPv6, as in a URL or an authority: "[::1]".
  std::string to_uri_host() const;
  // The IPv4 address carried inside an IPv6 address of a known embedding form (mapped,
  // IPv4-compatible, NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32 client), if any.
  std::optional<IpAddress> embedded_v4() const;

  bool operator==(const IpAddress&) const = default;
};

// Strict literals only: dotted quad with four decimal parts 0..255 and no leading zeros, or an
// RFC 4291 IPv6 address (optionally ending in a dotted quad). Brackets and zone ids ("%eth0")
// are rejected: the caller strips brackets; zones make no sense for an upstream.
std::optional<IpAddress> parse_ip_literal(std::string_view text);

// True when inet_aton/curl/WHATWG would read `host` as an IPv4 number although it is not a
// strict dotted quad: decimal "2130706433", octal "0177.0.0.1", hex "0x7f.1", shortened
// "127.1", or any name whose last label is numeric ("1.2.3.4.5", "a.0x10"). Such hosts must be
// treated as IP literals (or refused), never resolved as names.
bool looks_like_numeric_host(std::string_view host);

// inet_aton semantics: 1 to 4 parts, each decimal, octal (leading 0) or hex (0x); the last
// part fills the remaining bytes. Tells what address a numeric host really means.
std::optional<IpAddress> parse_legacy_ipv4(std::string_view host);

enum class AddressClass {
  public_,              // globally routable unicast: the only class dialed without a rule
  unspecified,          // 0.0.0.0, ::
  this_network,         // 0.0.0.0/8
  loopback,             // 127.0.0.0/8, ::1
  private_,             // 10/8, 172.16/12, 192.168/16
  cgnat,                // 100.64.0.0/10 (shared address space)
  link_local,           // 169.254/16, fe80::/10
  metadata,             // cloud metadata services: 169.254.169.254, fd00:ec2::254, ...
  protocol_assignment,  // 192.0.0.0/24, 2001::/23 (besides Teredo/benchmarking/docs)
  documentation,        // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  benchmarking,         // 198.18.0.0/15, 2001:2::/48
  multicast,            // 224.0.0.0/4, ff00::/8
  broadcast,            // 255.255.255.255
  reserved,             // 240.0.0.0/4, 192.88.99/24, 100::/64, outside 2000::/3, ...
  unique_local,         // fc00::/7
  site_local,           // fec0::/10 (deprecated, still routed on some networks)
  ipv4_mapped,          // ::ffff:0:0/96 embedding a public IPv4 address
  ipv4_embedded,        // NAT64 64:ff9b::/96, 6to4 2002::/16, Teredo 2001::/32,
                        // IPv4-compatible ::/96, local NAT64 64:ff9b:1::/48, with a public v4
};

// "loopback", "private", "cloud metadata", ... for messages.
const char* address_class_name(AddressClass c);

// IPv6 forms that embed an IPv4 address are classified by that address when it is not public
// (::ffff:127.0.0.1 is loopback, 64:ff9b::a9fe:a9fe is metadata); with a public embedded
// address they are ipv4_mapped / ipv4_embedded, which are refused too (dialing them reaches the
// IPv4 world by a path the IPv4 checks did not see).
AddressClass classify(const IpAddress& ip);

// Everything that is not public_ is forbidden as an upstream unless allow_net names the exact
// literal (see Policy::allows_ip).
bool is_forbidden_upstream(const IpAddress& ip);

// sockaddr conversions for dialing and for reporting peers.
socklen_t to_sockaddr(const IpAddress& ip, uint16_t port, sockaddr_storage* out);
std::optional<IpAddress> from_sockaddr(const sockaddr* sa, socklen_t len, uint16_t* port);

}  // namespace airlock::proxy
