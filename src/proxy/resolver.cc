#include "proxy/resolver.h"

#include <netdb.h>
#include <string.h>

#include <algorithm>

#include <fmt/format.h>

namespace airlock::proxy {
namespace {

struct OverrideKey {
  std::string name;
  std::optional<uint16_t> port;
};

// Keys are "host" or "host:port" (names only; an IP literal needs no override).
Result<OverrideKey> parse_override_key(const std::string& key) {
  OverrideKey out;
  std::string_view host = key;
  size_t colon = key.rfind(':');
  if (colon != std::string::npos) {
    AIRLOCK_ASSIGN_OR_RETURN(Target t, parse_authority(key, 1));
    if (t.ip) return Status(Errc::invalid_argument, "resolve override key is an IP literal");
    out.name = t.host;
    out.port = t.port;
    return out;
  }
  AIRLOCK_ASSIGN_OR_RETURN(out.name, normalize_host(host));
  return out;
}

Result<IpAddress> parse_override_value(const std::string& value) {
  std::string_view v = value;
  if (v.size() >= 2 && v.front() == '[' && v.back() == ']') v = v.substr(1, v.size() - 2);
  auto ip = parse_ip_literal(v);
  if (!ip)
    return Status(Errc::invalid_argument,
                  fmt::format("resolve override value \"{}\" is not an IP literal", value));
  return *ip;
}

}  // namespace

Resolver::Resolver(std::map<std::string, std::string> overrides) {
  for (const auto& [key, value] : overrides) {
    auto k = parse_override_key(key);
    auto v = parse_override_value(value);
    if (!k.ok() || !v.ok()) continue;
    if (k->port)
      by_host_port_[fmt::format("{}:{}", k->name, *k->port)] = *v;
    else
      by_host_[k->name] = *v;
  }
}

Result<Resolver> Resolver::create(const std::map<std::string, std::string>& overrides) {
  for (const auto& [key, value] : overrides) {
    auto k = parse_override_key(key);
    if (!k.ok()) return k.status().prefix("resolve override");
    AIRLOCK_RETURN_IF_ERROR(parse_override_value(value).status());
  }
  return Resolver(overrides);
}

Result<Resolution> Resolver::resolve(std::string_view host, uint16_t port) const {
  AIRLOCK_ASSIGN_OR_RETURN(Target target, parse_target(host, port));
  Resolution r;
  if (target.ip) {
    r.addresses.push_back(*target.ip);
    return r;
  }
  const IpAddress* override_ip = nullptr;
  if (auto it = by_host_port_.find(fmt::format("{}:{}", target.host, port));
      it != by_host_port_.end())
    override_ip = &it->second;
  else if (auto it2 = by_host_.find(target.host); it2 != by_host_.end())
    override_ip = &it2->second;
  if (override_ip) {
    r.addresses.push_back(*override_ip);
    r.from_override = true;
    return r;
  }

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_protocol = IPPROTO_TCP;
  hints.ai_flags = AI_NUMERICSERV;  // no AI_V4MAPPED: we want the addresses as they are
  addrinfo* list = nullptr;
  std::string service = std::to_string(port);
  int rc = getaddrinfo(target.host.c_str(), service.c_str(), &hints, &list);
  if (rc != 0) {
    Errc code = (rc == EAI_NONAME || rc == EAI_NODATA) ? Errc::not_found
                : rc == EAI_AGAIN                      ? Errc::unavailable
                                                       : Errc::io;
    return Status(code, fmt::format("cannot resolve {}: {}", target.host, gai_strerror(rc)));
  }
  for (addrinfo* ai = list; ai; ai = ai->ai_next) {
    auto ip = from_sockaddr(ai->ai_addr, ai->ai_addrlen, nullptr);
    if (ip && std::find(r.addresses.begin(), r.addresses.end(), *ip) == r.addresses.end())
      r.addresses.push_back(*ip);
  }
  freeaddrinfo(list);
  if (r.addresses.empty())
    return Status(Errc::not_found, fmt::format("{} has no IPv4 or IPv6 address", target.host));
  return r;
}

Result<ResolvedAddress> Resolver::resolve_checked(std::string_view host, uint16_t port,
                                                  const Policy& policy) const {
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<ResolvedAddress> all,
                           resolve_all_checked(host, port, policy));
  return all.front();
}

Result<std::vector<ResolvedAddress>> Resolver::resolve_all_checked(std::string_view host,
                                                                   uint16_t port,
                                                                   const Policy& policy) const {
  AIRLOCK_ASSIGN_OR_RETURN(Resolution r, resolve(host, port));
  std::vector<ResolvedAddress> permitted;
  for (const IpAddress& ip : r.addresses) {
    if (r.from_override || !is_forbidden_upstream(ip) || policy.allows_ip(ip, port))
      permitted.push_back(ResolvedAddress{ip, r.from_override});
  }
  if (!permitted.empty()) return permitted;
  // Name the first refused address: it is what a client would have dialed.
  const IpAddress& first = r.addresses.front();
  AIRLOCK_ASSIGN_OR_RETURN(Target target, parse_target(host, port));
  std::string more = r.addresses.size() > 1
                         ? fmt::format(" (and {} other non-public address{})",
                                       r.addresses.size() - 1, r.addresses.size() > 2 ? "es" : "")
                         : "";
  if (target.ip)
    return Status(
        Errc::denied,
        fmt::format("{} is a {} address{}", target.host, address_class_name(classify(first)),
                    target.non_canonical_ip ? " (non-canonical numeric form)" : ""));
  return Status(Errc::denied,
                fmt::format("{} resolves to {} address {}{}", target.host,
                            address_class_name(classify(first)), first.to_string(), more));
}

}  // namespace airlock::proxy
