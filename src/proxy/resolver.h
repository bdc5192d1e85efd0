// Upstream name resolution for the proxy, with the address check folded in so that the address
// that was checked is the address that is dialed (no check-then-resolve window, no DNS
// rebinding between check and connect).
//
// Overrides (like curl --resolve) map "host:port" or "host" to an IP literal; they are consulted
// first, by exact normalised name, and are off (empty) by default. An override is an explicit
// operator decision, so an overridden address is permitted even when it is loopback or private
// (tests point names at 127.0.0.1 this way): ResolvedAddress::from_override says so.
//
// resolve() may block in getaddrinfo (the system resolver's own timeouts apply); call it from a
// worker thread, never from an event loop that must stay responsive. The object is immutable
// after construction: any thread may call it.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "airlock/status.hpp"
#include "proxy/address.h"
#include "proxy/policy.h"

namespace airlock::proxy {

struct Resolution {
  std::vector<IpAddress> addresses;  // in resolver order, duplicates removed
  bool from_override = false;
};

struct ResolvedAddress {
  IpAddress address;
  bool from_override = false;
};

class Resolver {
 public:
  Resolver() = default;
  // Entries that are not valid (bad name, bad port, value not an IP literal) are dropped;
  // use create() to have them reported instead.
  explicit Resolver(std::map<std::string, std::string> overrides);
  static Result<Resolver> create(const std::map<std::string, std::string>& overrides);

  // IP literals (strict or legacy numeric forms) are returned as they are, without DNS.
  // Names: override "host:port", then override "host", then getaddrinfo(AF_UNSPEC,
  // SOCK_STREAM). Errc::not_found when the name does not resolve.
  Result<Resolution> resolve(std::string_view host, uint16_t port) const;

  // Resolves `host` and returns the first address that may be dialed: any override address;
  // otherwise a public address, or a non-public one that `policy` names as an exact IP
  // literal. Errc::denied otherwise, naming the host and why ("example.test resolves to
  // loopback address 127.0.0.1"). Does not check that policy allows the host name itself:
  // the caller has done that for the connection identity.
  Result<ResolvedAddress> resolve_checked(std::string_view host, uint16_t port,
                                          const Policy& policy) const;

  // Every address resolve_checked() would accept, in resolver order, so a caller can fall back
  // to the next one when a connect fails (e.g. IPv6 listed first on a host without IPv6).
  // Same errors as resolve_checked() when there is none.
  Result<std::vector<ResolvedAddress>> resolve_all_checked(std::string_view host, uint16_t port,
                                                           const Policy& policy) const;

  size_t override_count() const { return by_host_port_.size() + by_host_.size(); }

 private:
  std::map<std::string, IpAddress> by_host_port_;  // "name:port"
  std::map<std::string, IpAddress> by_host_;       // "name"
};

}  // namespace airlock::proxy
