#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <cstring>
#include <random>
#include <string>

#include "proxy/address.h"

using namespace airlock::proxy;

namespace {

IpAddress ip(const char* text) {
  auto a = parse_ip_literal(text);
  REQUIRE_MESSAGE(a.has_value(), text);
  return *a;
}

AddressClass cls(const char* text) {
  return classify(ip(text));
}

}  // namespace

TEST_CASE("strict IPv4 literals") {
  CHECK(ip("127.0.0.1") == IpAddress::from_v4(127, 0, 0, 1));
  CHECK(ip("255.255.255.255").v4_host_order() == 0xffffffffu);
  CHECK(ip("0.0.0.0").to_string() == "0.0.0.0");
  for (const char* bad :
       {"",           "1",          "1.2.3",    "1.2.3.4.5",    "256.1.1.1", "01.2.3.4",
        "1.2.3.04",   "0x7f.0.0.1", "1..2.3",   ".1.2.3.4",     "1.2.3.4.",  "1.2.3.-4",
        "+1.2.3.4",   "1.2.3.4 ",   " 1.2.3.4", "1.2.3.4%eth0", "1.2.3.4/8", "1234.1.1.1",
        "2130706433", "127.1",      "1.2.3.a"}) {
    CHECK_MESSAGE(!parse_ip_literal(bad).has_value(), bad);
  }
}

TEST_CASE("strict IPv6 literals agree with inet_pton and print per RFC 5952") {
  struct Case {
    const char* in;
    const char* canonical;
  };
  for (Case c : {Case{"::", "::"},
                 {"::1", "::1"},
                 {"1::", "1::"},
                 {"2001:DB8:0:0:0:0:0:1", "2001:db8::1"},
                 {"2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"},
                 {"fe80:0:0:0:0:0:0:0", "fe80::"},
                 {"0:0:0:0:0:ffff:7f00:1", "::ffff:127.0.0.1"},
                 {"::ffff:169.254.169.254", "::ffff:169.254.169.254"},
                 {"64:ff9b::192.0.2.1", "64:ff9b::c000:201"},
                 {"1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"},
                 {"1:0:3:4:5:6:7:8", "1:0:3:4:5:6:7:8"},
                 {"1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"},
                 {"1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"}}) {
    IpAddress a = ip(c.in);
    CHECK(a.family == IpAddress::v6);
    in6_addr ref;
    REQUIRE(inet_pton(AF_INET6, c.in, &ref) == 1);
    CHECK(memcmp(a.bytes.data(), &ref, 16) == 0);
    CHECK(a.to_string() == c.canonical);
    CHECK(a.to_uri_host() == std::string("[") + c.canonical + "]");
    // Round trip through the canonical text.
    CHECK(ip(c.canonical) == a);
  }
  for (const char* bad : {":",
                          ":::",
                          "1:::2",
                          "1::2::3",
                          ":1::",
                          "1:2:3:4:5:6:7:8:9",
                          "1:2:3:4:5:6:7",
                          "12345::",
                          "g::",
                          "::1%lo",
                          "fe80::1%eth0",
                          "[::1]",
                          "1:2:3:4:5:6:7:1.2.3.4",
                          "::1.2.3",
                          "::1.2.3.04",
                          "1.2.3.4::",
                          "1:",
                          "::1:",
                          " ::1",
                          "1:2:3:4:5:6:7:8::",
                          "::1:2:3:4:5:6:7:8"}) {
    in6_addr ref;
    CHECK_MESSAGE(!parse_ip_literal(bad).has_value(), bad);
    CHECK_MESSAGE(inet_pton(AF_INET6, bad, &ref) != 1, bad);  // libc agrees they are invalid
  }
}

TEST_CASE("non-canonical numeric hosts are detected and mean what libc means") {
  struct Case {
    const char* host;
    const char* means;
  };
  for (Case c : {Case{"2130706433", "127.0.0.1"},
                 {"0177.0.0.1", "127.0.0.1"},
                 {"0x7f.1", "127.0.0.1"},
                 {"127.1", "127.0.0.1"},
                 {"0x7f000001", "127.0.0.1"},
                 {"0X7F.0.0.1", "127.0.0.1"},
                 {"017700000001", "127.0.0.1"},
                 {"169.254.43518", "169.254.169.254"},
                 {"0xa9.0xfe.0xa9.0xfe", "169.254.169.254"},
                 {"10.1", "10.0.0.1"},
                 {"127.0.0.1.", "127.0.0.1"},
                 {"0", "0.0.0.0"},
                 {"1.2.3.4", "1.2.3.4"}}) {
    CHECK_MESSAGE(looks_like_numeric_host(c.host), c.host);
    auto legacy = parse_legacy_ipv4(c.host);
    REQUIRE_MESSAGE(legacy.has_value(), c.host);
    CHECK(legacy->to_string() == c.means);
    in_addr ref;  // glibc's inet_aton is the reference for what a client would dial
    std::string h = c.host;
    if (h.back() == '.') h.pop_back();
    REQUIRE(inet_aton(h.c_str(), &ref) == 1);
    CHECK(memcmp(legacy->bytes.data(), &ref, 4) == 0);
  }
  // Numeric last label but not a valid address: still numeric (never resolved as a name).
  for (const char* h :
       {"1.2.3.4.5", "example.123", "a.0x10", "4294967296", "0x", "256.1.1.1", "08.1.1.1"}) {
    CHECK_MESSAGE(looks_like_numeric_host(h), h);
  }
  CHECK(!parse_legacy_ipv4("4294967296").has_value());
  CHECK(!parse_legacy_ipv4("256.1.1.1").has_value());
  CHECK(!parse_legacy_ipv4("08.1.1.1").has_value());
  CHECK(!parse_legacy_ipv4("1.2.3.4.5").has_value());
  CHECK(!parse_legacy_ipv4("1.2.65536").has_value());
  for (const char* h : {"example.com", "1.example.com", "0x7f.example", "123abc", "a1", "xn--1",
                        "localhost", "", ".", "::ffff:1.2.3.4", "b::7.0.0.1"}) {
    CHECK_MESSAGE(!looks_like_numeric_host(h), h);
  }
}

TEST_CASE("IPv4 special-purpose ranges") {
  using C = AddressClass;
  struct Case {
    const char* a;
    C c;
  };
  for (Case t : {Case{"0.0.0.0", C::unspecified},
                 {"0.1.2.3", C::this_network},
                 {"10.0.0.1", C::private_},
                 {"10.255.255.255", C::private_},
                 {"100.64.0.1", C::cgnat},
                 {"100.127.255.255", C::cgnat},
                 {"100.128.0.0", C::public_},
                 {"100.63.255.255", C::public_},
                 {"127.0.0.1", C::loopback},
                 {"127.255.255.254", C::loopback},
                 {"169.254.0.1", C::link_local},
                 {"169.254.169.254", C::metadata},
                 {"169.254.170.2", C::metadata},
                 {"168.63.129.16", C::metadata},
                 {"100.100.100.200", C::metadata},
                 {"172.16.0.1", C::private_},
                 {"172.31.255.255", C::private_},
                 {"172.32.0.0", C::public_},
                 {"172.15.255.255", C::public_},
                 {"192.0.0.8", C::protocol_assignment},
                 {"192.0.2.1", C::documentation},
                 {"192.88.99.1", C::reserved},
                 {"192.168.1.1", C::private_},
                 {"198.18.0.1", C::benchmarking},
                 {"198.19.255.255", C::benchmarking},
                 {"198.20.0.0", C::public_},
                 {"198.51.100.7", C::documentation},
                 {"203.0.113.9", C::documentation},
                 {"224.0.0.1", C::multicast},
                 {"239.255.255.250", C::multicast},
                 {"240.0.0.1", C::reserved},
                 {"255.255.255.254", C::reserved},
                 {"255.255.255.255", C::broadcast},
                 {"8.8.8.8", C::public_},
                 {"1.1.1.1", C::public_},
                 {"93.184.216.34", C::public_}}) {
    CHECK_MESSAGE(cls(t.a) == t.c, t.a, " is ", address_class_name(classify(ip(t.a))));
    CHECK(is_forbidden_upstream(ip(t.a)) == (t.c != C::public_));
  }
}

TEST_CASE("IPv6 special-purpose ranges") {
  using C = AddressClass;
  struct Case {
    const char* a;
    C c;
  };
  for (Case t : {Case{"::", C::unspecified},
                 {"::1", C::loopback},
                 {"fe80::1", C::link_local},
                 {"febf:ffff::1", C::link_local},
                 {"fec0::1", C::site_local},
                 {"fc00::1", C::unique_local},
                 {"fd12:3456::1", C::unique_local},
                 {"fd00:ec2::254", C::metadata},
                 {"fd00:ec2::23", C::metadata},
                 {"ff02::1", C::multicast},
                 {"ff0e::1", C::multicast},
                 {"2001:db8::1", C::documentation},
                 {"3fff::1", C::documentation},
                 {"2001:2::1", C::benchmarking},
                 {"2001:10::1", C::protocol_assignment},
                 {"100::1", C::reserved},
                 {"4000::1", C::reserved},
                 {"::2:0:0", C::reserved},
                 {"2606:4700::1111", C::public_},
                 {"2a00:1450:4001::1", C::public_},
                 {"2001:4860:4860::8888", C::public_}}) {
    CHECK_MESSAGE(cls(t.a) == t.c, t.a, " is ", address_class_name(classify(ip(t.a))));
    CHECK(is_forbidden_upstream(ip(t.a)) == (t.c != C::public_));
  }
}

TEST_CASE("IPv6 forms embedding IPv4 are classified by the embedded address") {
  using C = AddressClass;
  struct Case {
    const char* a;
    C c;
  };
  for (Case t : {Case{"::ffff:127.0.0.1", C::loopback},
                 {"::ffff:7f00:1", C::loopback},
                 {"::ffff:10.1.2.3", C::private_},
                 {"::ffff:169.254.169.254", C::metadata},
                 {"::ffff:8.8.8.8", C::ipv4_mapped},
                 {"::127.0.0.1", C::loopback},  // IPv4-compatible (deprecated)
                 {"::8.8.8.8", C::ipv4_embedded},
                 {"64:ff9b::7f00:1", C::loopback},
                 {"64:ff9b::a9fe:a9fe", C::metadata},
                 {"64:ff9b::10.0.0.1", C::private_},
                 {"64:ff9b::8.8.8.8", C::ipv4_embedded},
                 {"64:ff9b:1::7f00:1", C::loopback},
                 {"64:ff9b:1::8.8.8.8", C::ipv4_embedded},
                 {"2002:7f00:1::", C::loopback},
                 {"2002:a9fe:a9fe::1", C::metadata},
                 {"2002:c0a8:101::", C::private_},
                 {"2002:808:808::", C::ipv4_embedded},
                 // Teredo: client address is the inverted low 32 bits (~127.0.0.1 = 80ff:fffe).
                 {"2001:0:4136:e378:8000:63bf:80ff:fffe", C::loopback},
                 {"2001:0:4136:e378:8000:63bf:f7f7:f7f7", C::ipv4_embedded}}) {
    CHECK_MESSAGE(cls(t.a) == t.c, t.a, " is ", address_class_name(classify(ip(t.a))));
    CHECK(is_forbidden_upstream(ip(t.a)));
  }
  CHECK(ip("64:ff9b::a9fe:a9fe").embedded_v4()->to_string() == "169.254.169.254");
  CHECK(ip("2002:c0a8:101::").embedded_v4()->to_string() == "192.168.1.1");
  CHECK(!ip("2606:4700::1111").embedded_v4().has_value());
  CHECK(!ip("::1").embedded_v4().has_value());
}

TEST_CASE("sockaddr round trip") {
  for (const char* a : {"127.0.0.1", "::1", "2001:db8::5", "::ffff:1.2.3.4"}) {
    sockaddr_storage ss;
    socklen_t len = to_sockaddr(ip(a), 8443, &ss);
    uint16_t port = 0;
    auto back = from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len, &port);
    REQUIRE(back.has_value());
    CHECK(*back == ip(a));
    CHECK(port == 8443);
  }
  sockaddr_storage ss;
  socklen_t len = to_sockaddr(ip("::1"), 1, &ss);
  CHECK(!from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len - 1, nullptr).has_value());
  CHECK(!from_sockaddr(nullptr, 0, nullptr).has_value());
}

TEST_CASE("everything glibc reads as an IPv4 number is seen as numeric, with the same value") {
  // Random strings over the characters inet_aton cares about. If libc would turn a host into
  // an address without DNS, the proxy must treat it as an IP literal too (and agree on which).
  std::mt19937 rng(7);
  const char alphabet[] = "0123456789xX.abcdefABCDEFg";
  int numeric = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string s;
    size_t len = 1 + rng() % 14;
    for (size_t k = 0; k < len; ++k) s += alphabet[rng() % (sizeof(alphabet) - 1)];
    in_addr ref;
    bool libc = inet_aton(s.c_str(), &ref) == 1;
    auto ours = parse_legacy_ipv4(s);
    if (libc) {
      ++numeric;
      REQUIRE_MESSAGE(looks_like_numeric_host(s), s);
      REQUIRE_MESSAGE(ours.has_value(), s);
      CHECK(memcmp(ours->bytes.data(), &ref, 4) == 0);
    } else {
      // Not an address for libc (and no trailing dot, which libc rejects): not for us either.
      if (s.back() != '.') CHECK_MESSAGE(!ours.has_value(), s);
    }
    // Strict literals are exactly what inet_pton accepts (glibc rejects leading zeros too).
    in_addr strict_ref;
    bool strict = inet_pton(AF_INET, s.c_str(), &strict_ref) == 1;
    auto lit = parse_ip_literal(s);
    CHECK_MESSAGE(lit.has_value() == strict, s);
    if (lit && strict) CHECK(memcmp(lit->bytes.data(), &strict_ref, 4) == 0);
  }
  CHECK(numeric > 1000);  // the generator does reach the interesting inputs
}

TEST_CASE("IPv6 parsing agrees with inet_pton on random inputs") {
  std::mt19937 rng(11);
  const char alphabet[] = "0123456789abcdefABCDEF:::..g%";
  int valid = 0;
  for (int i = 0; i < 200000; ++i) {
    std::string s;
    size_t len = 2 + rng() % 20;
    for (size_t k = 0; k < len; ++k) s += alphabet[rng() % (sizeof(alphabet) - 1)];
    if (s.find(':') == std::string::npos) continue;
    in6_addr ref;
    bool libc = inet_pton(AF_INET6, s.c_str(), &ref) == 1;
    auto ours = parse_ip_literal(s);
    REQUIRE_MESSAGE(ours.has_value() == libc, s);
    if (libc) {
      ++valid;
      CHECK(memcmp(ours->bytes.data(), &ref, 16) == 0);
      char buf[INET6_ADDRSTRLEN];
      REQUIRE(inet_ntop(AF_INET6, &ref, buf, sizeof(buf)));
      // glibc prints RFC 5952 form too, except for IPv4-compatible and mapped details.
      if (!ours->embedded_v4()) CHECK_MESSAGE(ours->to_string() == buf, s);
    }
  }
  CHECK(valid > 100);
}
