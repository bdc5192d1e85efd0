#include "proxy/policy.h"

#include <fmt/format.h>

namespace airlock::proxy {
namespace {

char lower_ascii(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool is_ldh(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

// Printable form of untrusted text for error messages: bounded, controls escaped.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  size_t n = 0;
  for (unsigned char c : s) {
    if (++n > 80) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
      out += fmt::format("\\x{:02x}", c);
    else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

Status bad_host(std::string_view host, std::string_view why) {
  return Status(Errc::invalid_argument, fmt::format("invalid host {}: {}", quoted(host), why));
}

// Strict UTF-8 decoding: no overlong forms, no surrogates, nothing above U+10FFFF.
bool decode_utf8(std::string_view s, std::u32string* out) {
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    char32_t cp;
    size_t len;
    if (c < 0x80) {
      cp = c;
      len = 1;
    } else if (c >= 0xc2 && c <= 0xdf) {
      cp = c & 0x1f;
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      cp = c & 0x0f;
      len = 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      cp = c & 0x07;
      len = 4;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k) {
      unsigned char cc = s[i + k];
      if ((cc & 0xc0) != 0x80) return false;
      cp = cp << 6 | (cc & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    out->push_back(cp);
    i += len;
  }
  return true;
}

// Code points a host name must not contain: invisible, spacing, formatting and bidi controls,
// characters IDNA maps to others (fullwidth forms, ideographic dots, soft hyphen), private use,
// noncharacters. Refusing them keeps "looks like X" from ever meaning something else.
bool disallowed_code_point(char32_t cp) {
  if (cp < 0xa1) return cp >= 0x80;  // C1 controls, NBSP (ASCII is checked separately)
  if (cp == 0xad || cp == 0x34f || cp == 0x115f || cp == 0x1160 || cp == 0x1680 || cp == 0x3000 ||
      cp == 0x3002 || cp == 0x3164 || cp == 0xfeff || cp == 0xff61 ||
      cp == 0x130 /* dotted capital I lowercases to two code points */)
    return true;
  if (cp >= 0x180b && cp <= 0x180f) return true;  // Mongolian variation selectors
  if (cp >= 0x2000 && cp <= 0x206f) return true;  // general punctuation: spaces, ZWJ, bidi
  if (cp >= 0xe000 && cp <= 0xf8ff) return true;  // private use
  if (cp >= 0xfe00 && cp <= 0xfe0f) return true;  // variation selectors
  if (cp >= 0xfff0 && cp <= 0xffff) return true;  // specials, U+FFFD
  if (cp >= 0xff00 && cp <= 0xffef) return true;  // halfwidth and fullwidth forms
  if ((cp & 0xfffe) == 0xfffe || (cp >= 0xfdd0 && cp <= 0xfdef)) return true;  // nonchars
  if (cp >= 0xe0000) return true;  // tags, variation sel. supplement, PUA
  return false;
}

// Simple lowercase mapping for the scripts where it is one code point to one code point and
// well known. Other scripts pass unchanged: a name that IDNA would map differently then simply
// does not match any rule (fail closed).
char32_t lower_code_point(char32_t cp) {
  if (cp < 0x80) return static_cast<char32_t>(lower_ascii(static_cast<char>(cp)));
  if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) return cp + 0x20;
  if (cp >= 0x100 && cp <= 0x137) return cp | 1;
  if (cp >= 0x139 && cp <= 0x148 && (cp & 1)) return cp + 1;
  if (cp >= 0x14a && cp <= 0x177) return cp | 1;
  if (cp == 0x178) return 0xff;
  if (cp >= 0x179 && cp <= 0x17e && (cp & 1)) return cp + 1;
  if (cp >= 0x391 && cp <= 0x3a9 && cp != 0x3a2) return cp + 0x20;
  if (cp >= 0x400 && cp <= 0x40f) return cp + 0x50;
  if (cp >= 0x410 && cp <= 0x42f) return cp + 0x20;
  return cp;
}

Result<std::string> normalize_label(std::string_view label, std::string_view host) {
  if (label.empty()) return bad_host(host, "empty label");
  bool ascii = true;
  for (unsigned char c : label) ascii = ascii && c < 0x80;
  std::string out;
  if (ascii) {
    out.reserve(label.size());
    for (char c : label) {
      char l = lower_ascii(c);
      if (!is_ldh(l))
        return bad_host(host, fmt::format("character {} not allowed", quoted({&c, 1})));
      out += l;
    }
  } else {
    std::u32string cps;
    if (!decode_utf8(label, &cps)) return bad_host(host, "invalid UTF-8");
    for (char32_t& cp : cps) {
      if (disallowed_code_point(cp))
        return bad_host(host, fmt::format("code point U+{:04X} not allowed", uint32_t{cp}));
      cp = lower_code_point(cp);
      if (cp < 0x80 && !is_ldh(static_cast<char>(cp)))
        return bad_host(host, fmt::format("character {} not allowed",
                                          quoted(std::string(1, static_cast<char>(cp)))));
    }
    auto encoded = punycode_encode(cps);
    if (!encoded.ok()) return bad_host(host, encoded.status().message());
    out = "xn--" + *encoded;
  }
  if (out.size() > 63) return bad_host(host, "label longer than 63 characters");
  if (out.front() == '-' || out.back() == '-')
    return bad_host(host, "label starts or ends with '-'");
  return out;
}

bool parse_port(std::string_view s, uint16_t* port) {
  if (s.empty() || s.size() > 5) return false;
  unsigned v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v == 0 || v > 65535) return false;
  *port = static_cast<uint16_t>(v);
  return true;
}

struct SplitAuthority {
  std::string_view host;
  std::optional<uint16_t> port;
};

// "host", "host:port", "[v6]", "[v6]:port". The host keeps its brackets.
Result<SplitAuthority> split_authority(std::string_view a) {
  SplitAuthority out;
  std::string_view rest;
  if (!a.empty() && a.front() == '[') {
    size_t close = a.find(']');
    if (close == std::string_view::npos)
      return Status(Errc::invalid_argument, fmt::format("unclosed '[' in {}", quoted(a)));
    out.host = a.substr(0, close + 1);
    rest = a.substr(close + 1);
    if (!rest.empty() && rest.front() != ':')
      return Status(Errc::invalid_argument, fmt::format("text after ']' in {}", quoted(a)));
  } else {
    size_t colon = a.find(':');
    if (colon != std::string_view::npos && a.find(':', colon + 1) != std::string_view::npos)
      return Status(Errc::invalid_argument,
                    fmt::format("{}: IPv6 literals must be in brackets", quoted(a)));
    out.host = a.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : a.substr(colon);
  }
  if (!rest.empty()) {
    uint16_t port;
    if (!parse_port(rest.substr(1), &port))
      return Status(Errc::invalid_argument, fmt::format("invalid port in {}", quoted(a)));
    out.port = port;
  }
  return out;
}

bool ends_with_subdomain_of(std::string_view host, std::string_view suffix) {
  return host.size() > suffix.size() + 1 && host.substr(host.size() - suffix.size()) == suffix &&
         host[host.size() - suffix.size() - 1] == '.';
}

}  // namespace

Result<std::string> punycode_encode(const std::u32string& input) {
  constexpr uint32_t kBase = 36, kTmin = 1, kTmax = 26, kSkew = 38, kDamp = 700;
  constexpr uint32_t kMax = 0x7fffffff;
  auto digit = [](uint32_t d) { return static_cast<char>(d < 26 ? 'a' + d : '0' + (d - 26)); };
  auto adapt = [&](uint32_t delta, uint32_t numpoints, bool first) {
    delta = first ? delta / kDamp : delta / 2;
    delta += delta / numpoints;
    uint32_t k = 0;
    while (delta > ((kBase - kTmin) * kTmax) / 2) {
      delta /= kBase - kTmin;
      k += kBase;
    }
    return k + (kBase - kTmin + 1) * delta / (delta + kSkew);
  };
  if (input.size() > 256) return Status(Errc::invalid_argument, "label too long");
  std::string out;
  for (char32_t c : input)
    if (c < 0x80) out += static_cast<char>(c);
  uint32_t basic = static_cast<uint32_t>(out.size());
  uint32_t handled = basic;
  if (basic > 0) out += '-';
  uint32_t n = 0x80, delta = 0, bias = 72;
  while (handled < input.size()) {
    uint32_t m = kMax;
    for (char32_t c : input)
      if (c >= n && c < m) m = c;
    if ((m - n) > (kMax - delta) / (handled + 1))
      return Status(Errc::invalid_argument, "punycode overflow");
    delta += (m - n) * (handled + 1);
    n = m;
    for (char32_t c : input) {
      if (c < n && ++delta == 0) return Status(Errc::invalid_argument, "punycode overflow");
      if (c == n) {
        uint32_t q = delta;
        for (uint32_t k = kBase;; k += kBase) {
          uint32_t t = k <= bias ? kTmin : (k >= bias + kTmax ? kTmax : k - bias);
          if (q < t) break;
          out += digit(t + (q - t) % (kBase - t));
          q = (q - t) / (kBase - t);
        }
        out += digit(q);
        bias = adapt(delta, handled + 1, handled == basic);
        delta = 0;
        ++handled;
      }
    }
    ++delta;
    ++n;
  }
  return out;
}

Result<std::string> normalize_host(std::string_view host) {
  std::string_view h = host;
  if (h.empty()) return bad_host(host, "empty");
  if (h.size() > 4 * kMaxHostLength) return bad_host(host, "too long");
  for (unsigned char c : h)
    if (c <= 0x20 || c == 0x7f) return bad_host(host, "contains whitespace or control characters");
  if (h.back() == '.') h.remove_suffix(1);
  if (h.empty()) return bad_host(host, "empty");
  if (h.find(':') != std::string_view::npos || h.front() == '[')
    return bad_host(host, "an IPv6 literal is not a host name");
  if (looks_like_numeric_host(h)) return bad_host(host, "a numeric IP form is not a host name");
  std::string out;
  size_t start = 0;
  while (true) {
    size_t dot = h.find('.', start);
    std::string_view label = h.substr(start, dot == std::string_view::npos ? h.npos : dot - start);
    AIRLOCK_ASSIGN_OR_RETURN(std::string norm, normalize_label(label, host));
    if (!out.empty()) out += '.';
    out += norm;
    if (out.size() > kMaxHostLength) return bad_host(host, "longer than 253 characters");
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  // Punycode may have produced a numeric-looking last label? It cannot ("xn--" prefix), but a
  // mapped ASCII one could not either; keep the invariant explicit.
  if (looks_like_numeric_host(out)) return bad_host(host, "a numeric IP form is not a host name");
  return out;
}

std::string Target::authority() const {
  std::string h = ip && ip->family == IpAddress::v6 ? "[" + host + "]" : host;
  return fmt::format("{}:{}", h, port);
}

Result<Target> parse_target(std::string_view host, uint16_t port) {
  if (port == 0) return Status(Errc::invalid_argument, "port 0");
  Target t;
  t.port = port;
  if (!host.empty() && host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') return bad_host(host, "unbalanced brackets");
    auto ip = parse_ip_literal(host.substr(1, host.size() - 2));
    if (!ip || ip->family != IpAddress::v6) return bad_host(host, "not an IPv6 literal");
    t.ip = ip;
    t.host = ip->to_string();
    return t;
  }
  if (auto ip = parse_ip_literal(host)) {
    t.ip = ip;
    t.host = ip->to_string();
    return t;
  }
  if (host.find(':') != std::string_view::npos) return bad_host(host, "not an IP literal");
  if (looks_like_numeric_host(host)) {
    auto ip = parse_legacy_ipv4(host);
    if (!ip) return bad_host(host, "invalid numeric IPv4 form");
    t.ip = ip;
    t.host = ip->to_string();
    t.non_canonical_ip = true;
    return t;
  }
  AIRLOCK_ASSIGN_OR_RETURN(t.host, normalize_host(host));
  return t;
}

Result<Target> parse_authority(std::string_view authority, uint16_t default_port) {
  if (authority.find('@') != std::string_view::npos)
    return Status(Errc::invalid_argument,
                  fmt::format("userinfo not allowed in authority {}", quoted(authority)));
  AIRLOCK_ASSIGN_OR_RETURN(SplitAuthority split, split_authority(authority));
  return parse_target(split.host, split.port.value_or(default_port));
}

std::string HostPattern::to_string() const {
  std::string h;
  switch (kind) {
    case Kind::exact_name:
      h = name;
      break;
    case Kind::wildcard_suffix:
      h = "*." + name;
      break;
    case Kind::ip_literal:
      h = ip->to_uri_host();
      break;
  }
  return port ? fmt::format("{}:{}", h, *port) : h;
}

Result<HostPattern> parse_host_pattern(std::string_view rule) {
  auto bad = [&](std::string_view why) {
    return Status(Errc::invalid_argument,
                  fmt::format("invalid allow rule {}: {}", quoted(rule), why));
  };
  if (rule.empty()) return bad("empty");
  if (rule.find("://") != std::string_view::npos) return bad("rules are host[:port], not URLs");
  if (rule.find('/') != std::string_view::npos) return bad("rules are host[:port], no path");
  HostPattern p;
  std::string_view body = rule;
  bool wildcard = false;
  if (body == "*" || body.substr(0, 2) == "*:")
    return bad(
        "'*' alone would allow every public host, which defeats an allow-list; list the "
        "hosts (or '*.domain') instead");
  if (body.substr(0, 2) == "*.") {
    wildcard = true;
    body.remove_prefix(2);
  }
  if (body.find('*') != std::string_view::npos)
    return bad("'*' is only allowed as a leading '*.' label");
  auto split = split_authority(body);
  if (!split.ok()) return bad(split.status().message());
  p.port = split->port;
  std::string_view host = split->host;
  if (!host.empty() && host.front() == '[') {
    if (wildcard) return bad("wildcards do not apply to IP literals");
    auto ip = host.size() >= 3 && host.back() == ']'
                  ? parse_ip_literal(host.substr(1, host.size() - 2))
                  : std::nullopt;
    if (!ip || ip->family != IpAddress::v6) return bad("not an IPv6 literal");
    p.kind = HostPattern::Kind::ip_literal;
    p.ip = ip;
    return p;
  }
  if (auto ip = parse_ip_literal(host)) {
    if (wildcard) return bad("wildcards do not apply to IP literals");
    p.kind = HostPattern::Kind::ip_literal;
    p.ip = ip;
    return p;
  }
  std::string_view trimmed = host;
  if (!trimmed.empty() && trimmed.back() == '.') trimmed.remove_suffix(1);
  if (looks_like_numeric_host(trimmed)) {
    auto legacy = parse_legacy_ipv4(trimmed);
    if (legacy && !wildcard)
      return bad(fmt::format("non-canonical IPv4 form; write {}", legacy->to_string()));
    return bad("numeric last label: not a host name or an IPv4 literal");
  }
  auto name = normalize_host(host);
  if (!name.ok()) return bad(name.status().message());
  if (wildcard && name->find('.') == std::string::npos)
    return bad("a wildcard needs at least two labels below it (e.g. '*.example.com')");
  p.kind = wildcard ? HostPattern::Kind::wildcard_suffix : HostPattern::Kind::exact_name;
  p.name = std::move(*name);
  return p;
}

Result<HostPatternSet> HostPatternSet::parse(const std::vector<std::string>& rules) {
  HostPatternSet set;
  set.patterns_.reserve(rules.size());
  for (const std::string& r : rules) {
    AIRLOCK_ASSIGN_OR_RETURN(HostPattern p, parse_host_pattern(r));
    set.patterns_.push_back(std::move(p));
  }
  return set;
}

bool HostPatternSet::matches_name(std::string_view host, uint16_t port) const {
  if (host.empty() || host.find(':') != std::string_view::npos || looks_like_numeric_host(host))
    return false;
  for (const HostPattern& p : patterns_) {
    if (p.port && *p.port != port) continue;
    if (p.kind == HostPattern::Kind::exact_name && p.name == host) return true;
    if (p.kind == HostPattern::Kind::wildcard_suffix && ends_with_subdomain_of(host, p.name))
      return true;
  }
  return false;
}

bool HostPatternSet::matches_ip(const IpAddress& ip, uint16_t port) const {
  for (const HostPattern& p : patterns_) {
    if (p.kind != HostPattern::Kind::ip_literal) continue;
    if (p.port && *p.port != port) continue;
    if (*p.ip == ip) return true;
  }
  return false;
}

bool HostPatternSet::matches(const Target& target) const {
  if (target.ip) return matches_ip(*target.ip, target.port);
  return matches_name(target.host, target.port);
}

Result<Policy> Policy::parse(const std::vector<std::string>& rules) {
  Policy p;
  AIRLOCK_ASSIGN_OR_RETURN(p.set_, HostPatternSet::parse(rules));
  return p;
}

}  // namespace airlock::proxy
