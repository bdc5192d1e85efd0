#include "proxy/address.h"

namespace airlock::proxy {
IpAddress IpAddress::from_v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddress ip;
  ip.bytes[0] = a; ip.bytes[1] = b; ip.bytes[2] = c; ip.bytes[3] = d;
  return ip;
}
IpAddress IpAddress::from_v4(uint32_t h) { return from_v4(h >> 24, h >> 16, h >> 8, h); }
IpAddress IpAddress::from_v6(const std::array<uint8_t, 16>& b) { IpAddress ip; ip.family = v6; ip.bytes = b; return ip; }
uint32_t IpAddress::v4_host_order() const { return 0; }
std::string IpAddress::to_string() const { return ""; }
std::string IpAddress::to_uri_host() const { return ""; }
std::optional<IpAddress> IpAddress::embedded_v4() const { return std::nullopt; }
std::optional<IpAddress> parse_ip_literal(std::string_view) { return std::nullopt; }
bool looks_like_numeric_host(std::string_view) { return false; }
std::optional<IpAddress> parse_legacy_ipv4(std::string_view) { return std::nullopt; }
const char* address_class_name(AddressClass) { return ""; }
AddressClass classify(const IpAddress&) { return AddressClass::reserved; }
bool is_forbidden_upstream(const IpAddress&) { return true; }
socklen_t to_sockaddr(const IpAddress&, uint16_t, sockaddr_storage*) { return 0; }
std::optional<IpAddress> from_sockaddr(const sockaddr*, socklen_t, uint16_t*) { return std::nullopt; }
}  // namespace airlock::proxy
