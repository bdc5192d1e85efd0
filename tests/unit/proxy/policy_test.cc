#include <doctest/doctest.h>

#include "proxy/policy.h"

using namespace airlock;
using namespace airlock::proxy;

namespace {

Policy policy(std::vector<std::string> rules) {
  auto p = Policy::parse(rules);
  REQUIRE_MESSAGE(p.ok(), p.status().to_string());
  return *p;
}

bool allows(const Policy& p, std::string_view host, uint16_t port) {
  auto t = parse_target(host, port);
  return t.ok() && p.allows(*t);
}

std::string norm(std::string_view h) {
  auto r = normalize_host(h);
  return r.ok() ? *r : "ERROR: " + r.status().message();
}

}  // namespace

TEST_CASE("normalize_host: case, trailing dot, label rules") {
  CHECK(norm("Example.COM") == "example.com");
  CHECK(norm("example.com.") == "example.com");
  CHECK(norm("a-b_c.example") == "a-b_c.example");
  CHECK(norm("localhost") == "localhost");
  std::string label63(63, 'a');
  CHECK(norm(label63 + ".com") == label63 + ".com");
  std::string long_name;
  while (long_name.size() < 250) long_name += "abcdefghi.";
  long_name += "com";  // 253 characters
  REQUIRE(long_name.size() == 253);
  CHECK(norm(long_name) == long_name);
  for (const char* bad : {"",
                          ".",
                          "example.com..",
                          "..example.com",
                          ".example.com",
                          "exa mple.com",
                          "example.com\r",
                          "example.com\n",
                          "ex\tample.com",
                          "exa\x01mple.com",
                          "-example.com",
                          "example-.com",
                          "a.-b.com",
                          "exam!ple.com",
                          "ex/ample.com",
                          "user@example.com",
                          "example.com:443",
                          "[::1]",
                          "::1",
                          "127.0.0.1",
                          "127.1",
                          "2130706433",
                          "example.123",
                          "a.0x10",
                          "ex%41mple.com",
                          "exa\\mple.com",
                          "exa\x7fmple.com"}) {
    CHECK_MESSAGE(!normalize_host(bad).ok(), bad);
  }
  CHECK(!normalize_host(std::string(64, 'a') + ".com").ok());
  CHECK(!normalize_host(long_name + "x").ok());
  CHECK(!normalize_host("a" + long_name).ok());
  CHECK(!normalize_host(std::string("exa\0mple.com", 12)).ok());
  // Error messages quote the input with control characters escaped.
  auto r = normalize_host("bad\r\nname");
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::invalid_argument);
  CHECK(r.status().message().find('\r') == std::string::npos);
  CHECK(r.status().message().find('\n') == std::string::npos);
}

TEST_CASE("punycode encoding matches RFC 3492 and well-known IDNs") {
  // RFC 3492 section 7.1 samples (code points given directly; lowercase output).
  auto enc = [](std::u32string s) {
    auto r = punycode_encode(s);
    REQUIRE(r.ok());
    return *r;
  };
  // (A) Arabic (Egyptian)
  CHECK(enc(U"\u0644\u064A\u0647\u0645\u0627\u0628\u062A\u0643\u0644\u0645\u0648\u0634\u0639"
            U"\u0631\u0628\u064A\u061F") == "egbpdaj6bu4bxfgehfvwxn");
  // (B) Chinese (simplified)
  CHECK(enc(U"\u4ED6\u4EEC\u4E3A\u4EC0\u4E48\u4E0D\u8BF4\u4E2D\u6587") ==
        "ihqwcrb4cv8a8dqg056pqjye");
  // (L) 3<nen>B<gumi><kinpachi><sensei>: mixed basic and non-basic
  CHECK(enc(U"3\u5E74B\u7D44\u91D1\u516B\u5148\u751F") ==
        "3B-ww4c5e180e575a65lsy2b");  // mixed case kept
  // (Q) <amuro><namie>-with-SUPER-MONKEYS, lowercased by the caller
  CHECK(enc(U"\u5B89\u5BA4\u5948\u7F8E\u6075-with-super-monkeys") ==
        "-with-super-monkeys-pc58ag80a8qai00g7n9n");
  CHECK(enc(U"b\u00FCcher") == "bcher-kva");
  CHECK(enc(U"m\u00FCnchen") == "mnchen-3ya");
  CHECK(enc(U"abc") == "abc-");
}

TEST_CASE("normalize_host: IDN to punycode") {
  CHECK(norm("b\xC3\xBC"
             "cher.example") == "xn--bcher-kva.example");
  CHECK(norm("B\xC3\x9C"
             "CHER.Example.") == "xn--bcher-kva.example");  // U+00DC lowercased
  CHECK(norm("xn--BCHER-kva.example") == "xn--bcher-kva.example");
  CHECK(norm("m\xC3\xBCnchen.de") == "xn--mnchen-3ya.de");
  CHECK(norm("\xD0\xBF\xD1\x80\xD0\xB8\xD0\xBC\xD0\xB5\xD1\x80.\xD1\x80\xD1\x84") ==
        "xn--e1afmkfd.xn--p1ai");  // пример.рф
  CHECK(norm("\xD0\x9F\xD0\xA0\xD0\x98\xD0\x9C\xD0\x95\xD0\xA0.\xD0\xA0\xD0\xA4") ==
        "xn--e1afmkfd.xn--p1ai");  // ПРИМЕР.РФ
  // Invalid UTF-8, overlong forms, surrogates, invisible and mapped characters are refused.
  for (const char* bad : {"b\xFC"
                          "cher.example",
                          "\xC0\xAE"
                          "example",
                          "\xED\xA0\x80.example", "\xF4\x90\x80\x80.example", "b\xC3.example",
                          "exa\xE2\x80\x8Bmple.com",  // zero-width space
                          "exa\xC2\xADmple.com",      // soft hyphen
                          "example\xE3\x80\x82"
                          "com",                         // ideographic full stop
                          "\xEF\xBD\x85xample.com",      // fullwidth e
                          "exa\xE2\x80\xAEmple.com",     // right-to-left override
                          "exa\xC2\xA0mple.com",         // no-break space
                          "\xC4\xB0stanbul.example"}) {  // dotted capital I
    CHECK_MESSAGE(!normalize_host(bad).ok(), bad);
  }
  // A label whose punycode exceeds 63 characters is refused.
  std::string many;
  for (int i = 0; i < 70; ++i) many += "\xC3\xBC";
  CHECK(!normalize_host(many + ".example").ok());
}

TEST_CASE("parse_authority and parse_target") {
  auto t = parse_authority("Example.COM.:8443", 443);
  REQUIRE(t.ok());
  CHECK(t->host == "example.com");
  CHECK(t->port == 8443);
  CHECK(!t->ip);
  CHECK(t->authority() == "example.com:8443");
  t = parse_authority("example.com", 443);
  REQUIRE(t.ok());
  CHECK(t->port == 443);
  t = parse_authority("[::1]:8080", 80);
  REQUIRE(t.ok());
  CHECK(t->ip->to_string() == "::1");
  CHECK(t->authority() == "[::1]:8080");
  t = parse_authority("[0:0:0:0:0:ffff:7f00:1]", 443);
  REQUIRE(t.ok());
  CHECK(t->host == "::ffff:127.0.0.1");
  t = parse_authority("2130706433:80", 443);
  REQUIRE(t.ok());
  CHECK(t->host == "127.0.0.1");
  CHECK(t->non_canonical_ip);
  t = parse_authority("127.0.0.1:80", 443);
  REQUIRE(t.ok());
  CHECK(!t->non_canonical_ip);
  for (const char* bad : {"",
                          ":443",
                          "example.com:",
                          "example.com:0",
                          "example.com:65536",
                          "example.com:+443",
                          "example.com:-1",
                          "example.com:44a",
                          "::1",
                          "[::1",
                          "[::1]x",
                          "[127.0.0.1]",
                          "[fe80::1%25eth0]",
                          "user@example.com",
                          "user:pw@example.com:443",
                          "example.com:443:443",
                          "256.256.256.256.1",
                          "1.2.3.4.5",
                          "exa mple.com",
                          "[]",
                          "example.com:00000443"}) {
    CHECK_MESSAGE(!parse_authority(bad, 443).ok(), bad);
  }
  CHECK(!parse_target("example.com", 0).ok());
  CHECK(parse_target("::1", 443).ok());  // unbracketed IPv6 is accepted when the port is apart
}

TEST_CASE("policy grammar: exact names, ports, case, trailing dot") {
  Policy p = policy({"api.openai.com", "Example.COM:8443", "trailing.example."});
  CHECK(allows(p, "api.openai.com", 443));
  CHECK(allows(p, "API.OpenAI.com.", 80));
  CHECK(!allows(p, "openai.com", 443));
  CHECK(!allows(p, "x.api.openai.com", 443));
  CHECK(!allows(p, "api.openai.com.evil.com", 443));
  CHECK(!allows(p, "evilapi.openai.com", 443));
  CHECK(allows(p, "example.com", 8443));
  CHECK(!allows(p, "example.com", 443));
  CHECK(allows(p, "trailing.example", 443));
  CHECK(p.allows_host("api.openai.com", 1));
  CHECK(!p.allows_host("API.OPENAI.COM", 1));  // allows_host expects a normalised name
  CHECK(!p.empty());
}

TEST_CASE("policy grammar: wildcards match subdomains only, never the apex") {
  Policy p = policy({"*.anthropic.com", "*.internal.example:8080"});
  CHECK(allows(p, "api.anthropic.com", 443));
  CHECK(allows(p, "a.b.anthropic.com", 443));
  CHECK(allows(p, "API.Anthropic.COM.", 443));
  CHECK(!allows(p, "anthropic.com", 443));  // apex: documented decision
  CHECK(!allows(p, "evilanthropic.com", 443));
  CHECK(!allows(p, "anthropic.com.evil.com", 443));
  CHECK(!allows(p, "xanthropic.com", 443));
  CHECK(allows(p, "svc.internal.example", 8080));
  CHECK(!allows(p, "svc.internal.example", 443));
  CHECK(!allows(p, "internal.example", 8080));
  // Wildcards never match IP literals.
  Policy q = policy({"*.0.0.example"});
  CHECK(!allows(q, "127.0.0.1", 443));
}

TEST_CASE("policy grammar: IP literal rules are exact") {
  Policy p = policy({"127.0.0.1:8080", "[::1]", "[2001:DB8::0:1]:443", "10.0.0.5"});
  CHECK(allows(p, "127.0.0.1", 8080));
  CHECK(!allows(p, "127.0.0.1", 8081));
  CHECK(!allows(p, "127.0.0.2", 8080));
  CHECK(allows(p, "[::1]", 1));
  CHECK(allows(p, "[2001:db8::1]", 443));
  CHECK(!allows(p, "[2001:db8::1]", 80));
  CHECK(allows(p, "10.0.0.5", 22));
  // The non-canonical forms of an allowed address mean that address (as libc would dial it).
  CHECK(allows(p, "2130706433", 8080));
  CHECK(allows(p, "0x7f.1", 8080));
  // An IPv4 rule does not allow the IPv4-mapped IPv6 form, nor the reverse.
  CHECK(!allows(p, "[::ffff:127.0.0.1]", 8080));
  CHECK(!allows(p, "[::ffff:10.0.0.5]", 22));
  // Names are not IPs: a host named like the literal cannot be allowed by it.
  CHECK(!p.allows_host("127.0.0.1", 8080));
  CHECK(p.allows_ip(IpAddress::from_v4(127, 0, 0, 1), 8080));
}

TEST_CASE("policy grammar: bad rules are refused and named") {
  for (const char* bad : {"",
                          "*",
                          "*:443",
                          "*.com",
                          "*.",
                          "**.example.com",
                          "a.*.example.com",
                          "*example.com",
                          "example.*",
                          "https://example.com",
                          "example.com/path",
                          "example.com:0",
                          "example.com:99999",
                          "example.com:",
                          "::1",
                          "[::1",
                          "[127.0.0.1]",
                          "*.[::1]",
                          "*.10.0.0.1",
                          "127.1",
                          "2130706433",
                          "0x7f.0.0.1",
                          "010.0.0.1",
                          "exa mple.com",
                          " example.com",
                          "example.com ",
                          "user@example.com",
                          "[fe80::1%eth0]",
                          "example..com"}) {
    auto p = Policy::parse({"ok.example", bad});
    CHECK_MESSAGE(!p.ok(), bad);
    if (!p.ok()) {
      CHECK(p.status().code() == Errc::invalid_argument);
      CHECK(p.status().message().find("invalid allow rule") != std::string::npos);
    }
  }
  auto star = Policy::parse({"*"});
  REQUIRE(!star.ok());
  CHECK(star.status().message().find("every public host") != std::string::npos);
  auto legacy = Policy::parse({"127.1"});
  REQUIRE(!legacy.ok());
  CHECK(legacy.status().message().find("127.0.0.1") != std::string::npos);
}

TEST_CASE("policy: default deny and IDN rules") {
  Policy empty = policy({});
  CHECK(empty.empty());
  CHECK(!allows(empty, "example.com", 443));
  CHECK(!allows(empty, "127.0.0.1", 80));
  Policy idn =
      policy({"b\xC3\xBC"
              "cher.example",
              "*.\xD0\xBF\xD1\x80\xD0\xB8\xD0\xBC\xD0\xB5\xD1\x80.\xD1\x80\xD1\x84"});
  CHECK(allows(idn, "xn--bcher-kva.example", 443));
  CHECK(allows(idn,
               "B\xC3\x9C"
               "CHER.example",
               443));
  CHECK(!allows(idn, "bucher.example", 443));
  CHECK(allows(idn, "www.xn--e1afmkfd.xn--p1ai", 443));
  CHECK(!allows(idn, "xn--e1afmkfd.xn--p1ai", 443));
  // HostPatternSet exposes the canonical rule text.
  auto set = HostPatternSet::parse({"*.Example.com.:8443", "[0::1]",
                                    "B\xC3\xBC"
                                    "cher.example"});
  REQUIRE(set.ok());
  REQUIRE(set->patterns().size() == 3);
  CHECK(set->patterns()[0].to_string() == "*.example.com:8443");
  CHECK(set->patterns()[1].to_string() == "[::1]");
  CHECK(set->patterns()[2].to_string() == "xn--bcher-kva.example");
}
