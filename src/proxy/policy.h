// allow_net: which hosts and ports the guest may reach through the proxy. Also the host-pattern
// grammar that binds secrets to hosts (HostPatternSet), and host/authority normalisation so a
// connection's identity is compared in one canonical form. Parsed once, then immutable: any
// thread may call the const methods concurrently.
//
// Rule grammar (case-insensitive, one trailing dot ignored, IDN names normalised to punycode):
//   host            the exact name, any port              api.openai.com
//   host:port       the exact name, that port only        example.com:8443
//   *.suffix        any name strictly BELOW suffix        *.anthropic.com
//   *.suffix:port   the same, that port only
//   a.b.c.d[:port]  that exact IPv4 literal               127.0.0.1:8080
//   [v6][:port]     that exact IPv6 literal               [::1]:443
// Decisions:
//   - `*.example.com` does NOT match `example.com` itself: list the apex separately. A wildcard
//     means "the subdomains", as in TLS certificates; widening it silently to the apex would
//     grant more than written.
//   - A bare `*` (or `*:port`) is refused: "allow everything public" defeats the purpose of an
//     allow-list (any exfiltration endpoint becomes reachable) and is almost always a mistake.
//     Wildcards must have at least two labels below them (`*.com` is refused as well).
//   - IP literals in rules must be canonical (no `127.1`, `0x7f.0.0.1`, `2130706433`).
//   - Names never match IP literals and vice versa: an IP target is allowed only by an exact
//     IP-literal rule. Wildcards never match IP literals.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "airlock/status.hpp"
#include "proxy/address.h"

namespace airlock::proxy {

inline constexpr size_t kMaxHostLength = 253;

// Canonical form of a DNS name: ASCII lowercase, one trailing dot stripped, labels of 1..63
// characters from [a-z0-9_-] not starting or ending with '-', total <= 253. Non-ASCII labels
// (UTF-8) are lowercased where the mapping is simple (ASCII, Latin-1, Latin Extended-A, Greek,
// Cyrillic) and converted to punycode (RFC 3492) with the "xn--" prefix; invalid UTF-8,
// controls, spaces, invisible characters and code points that IDNA forbids or maps (fullwidth
// forms, ideographic dots) are refused. Does not accept IP literals; see parse_target.
Result<std::string> normalize_host(std::string_view host);

// RFC 3492 encoder for one label of Unicode code points (no "xn--" prefix).
Result<std::string> punycode_encode(const std::u32string& label);

// A destination as the proxy compares it: either a normalised name or an IP address.
struct Target {
  std::string host;             // normalised name, or canonical IP text (no brackets)
  std::optional<IpAddress> ip;  // set when the host is an IP literal (or a numeric host)
  uint16_t port = 0;
  bool non_canonical_ip = false;  // the host was a legacy numeric form such as "127.1"

  // "host:port" with brackets around IPv6.
  std::string authority() const;
};

// A host as written in SNI, a CONNECT authority, a Host header or an absolute URL ("[::1]" in
// brackets for IPv6, which is required for IPv6 here), plus the port it is used with.
Result<Target> parse_target(std::string_view host, uint16_t port);
// "host[:port]" / "[v6][:port]"; default_port when the port is absent. A port must be 1..65535
// in decimal without sign or leading '+'; an empty port after ':' is an error.
Result<Target> parse_authority(std::string_view authority, uint16_t default_port);

// One parsed rule.
struct HostPattern {
  enum class Kind { exact_name, wildcard_suffix, ip_literal };
  Kind kind = Kind::exact_name;
  std::string name;              // exact name, or the suffix without "*." for wildcards
  std::optional<IpAddress> ip;   // for ip_literal
  std::optional<uint16_t> port;  // none: any port

  std::string to_string() const;  // canonical rule text
};

Result<HostPattern> parse_host_pattern(std::string_view rule);

// A set of rules. A bad rule is Errc::invalid_argument naming it.
class HostPatternSet {
 public:
  HostPatternSet() = default;
  static Result<HostPatternSet> parse(const std::vector<std::string>& rules);

  // `host` must already be normalised (normalize_host); IP-literal text never matches here.
  bool matches_name(std::string_view normalized_host, uint16_t port) const;
  // Exact IP-literal rules only.
  bool matches_ip(const IpAddress& ip, uint16_t port) const;
  // By kind: IP targets against IP rules, names against name rules.
  bool matches(const Target& target) const;

  bool empty() const { return patterns_.empty(); }
  const std::vector<HostPattern>& patterns() const { return patterns_; }

 private:
  std::vector<HostPattern> patterns_;
};

// The allow_net policy. Default deny: an empty policy allows nothing.
class Policy {
 public:
  Policy() = default;
  static Result<Policy> parse(const std::vector<std::string>& rules);

  bool allows_host(std::string_view normalized_host, uint16_t port) const {
    return set_.matches_name(normalized_host, port);
  }
  // Only exact IP-literal rules allow an IP (also used for a name that resolved to a
  // non-public address: the operator must have named that address).
  bool allows_ip(const IpAddress& ip, uint16_t port) const { return set_.matches_ip(ip, port); }
  bool allows(const Target& target) const { return set_.matches(target); }
  bool empty() const { return set_.empty(); }
  const HostPatternSet& patterns() const { return set_; }

 private:
  HostPatternSet set_;
};

}  // namespace airlock::proxy
