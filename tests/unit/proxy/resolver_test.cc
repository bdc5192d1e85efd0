#include <doctest/doctest.h>

#include "proxy/resolver.h"

using namespace airlock;
using namespace airlock::proxy;

// Only numeric hosts, overrides and "localhost" (answered from /etc/hosts) are resolved here:
// no DNS query leaves the machine.

namespace {
Policy policy(std::vector<std::string> rules) {
  auto p = Policy::parse(rules);
  REQUIRE(p.ok());
  return *p;
}
}  // namespace

TEST_CASE("numeric hosts are parsed, not resolved") {
  Resolver r;
  auto res = r.resolve("2130706433", 80);
  REQUIRE(res.ok());
  REQUIRE(res->addresses.size() == 1);
  CHECK(res->addresses[0].to_string() == "127.0.0.1");
  CHECK(!res->from_override);
  res = r.resolve("[::1]", 80);
  REQUIRE(res.ok());
  CHECK(res->addresses[0].to_string() == "::1");
  res = r.resolve("8.8.8.8", 443);
  REQUIRE(res.ok());
  CHECK(res->addresses[0] == IpAddress::from_v4(8, 8, 8, 8));
  // A numeric last label that is no valid address is an error, never a DNS query.
  auto bad = r.resolve("1.2.3.4.5", 80);
  REQUIRE(!bad.ok());
  CHECK(bad.status().code() == Errc::invalid_argument);
  CHECK(!r.resolve("example.com", 0).ok());
}

TEST_CASE("resolve_checked refuses non-public addresses unless the exact literal is allowed") {
  Resolver r;
  Policy none = policy({});
  auto res = r.resolve_checked("127.0.0.1", 80, none);
  REQUIRE(!res.ok());
  CHECK(res.status().code() == Errc::denied);
  CHECK(res.status().message().find("loopback") != std::string::npos);
  res = r.resolve_checked("0xa9fea9fe", 80, none);
  REQUIRE(!res.ok());
  CHECK(res.status().message().find("metadata") != std::string::npos);
  CHECK(res.status().message().find("non-canonical") != std::string::npos);
  res = r.resolve_checked("[::ffff:10.0.0.1]", 80, none);
  REQUIRE(!res.ok());
  CHECK(res.status().message().find("private") != std::string::npos);
  res = r.resolve_checked("8.8.8.8", 443, none);  // public literal: address check passes
  REQUIRE(res.ok());
  CHECK(!res->from_override);

  Policy loop = policy({"127.0.0.1:8080"});
  res = r.resolve_checked("127.0.0.1", 8080, loop);
  REQUIRE(res.ok());
  CHECK(res->address.to_string() == "127.0.0.1");
  CHECK(!r.resolve_checked("127.0.0.1", 8081, loop).ok());
}

TEST_CASE("localhost resolves via the system resolver and is refused") {
  Resolver r;
  auto all = r.resolve("localhost", 443);
  REQUIRE_MESSAGE(all.ok(), all.status().to_string());
  REQUIRE(!all->addresses.empty());
  for (const IpAddress& a : all->addresses) CHECK(classify(a) == AddressClass::loopback);
  auto res = r.resolve_checked("LocalHost.", 443, policy({"localhost"}));
  REQUIRE(!res.ok());
  CHECK(res.status().code() == Errc::denied);
  CHECK(res.status().message().find("localhost resolves to loopback address") != std::string::npos);
  // Allowing the exact literal (here both families) lets the checked address through.
  res = r.resolve_checked("localhost", 443, policy({"localhost", "127.0.0.1", "[::1]"}));
  REQUIRE(res.ok());
  CHECK(classify(res->address) == AddressClass::loopback);
}

TEST_CASE("overrides: host:port first, then host, exact names, permitted as operator choice") {
  auto r = Resolver::create({{"api.example.test:443", "127.0.0.1"},
                             {"API.Example.Test", "[::1]"},
                             {"meta.example.test", "169.254.169.254"}});
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->override_count() == 3);
  auto a = r->resolve("api.example.test", 443);
  REQUIRE(a.ok());
  CHECK(a->from_override);
  CHECK(a->addresses[0].to_string() == "127.0.0.1");
  a = r->resolve("api.example.test.", 8443);  // falls back to the port-less entry
  REQUIRE(a.ok());
  CHECK(a->addresses[0].to_string() == "::1");
  // Exact names only: a subdomain is not overridden (and would go to DNS; not tested here).
  auto checked = r->resolve_checked("api.example.test", 443, Policy());
  REQUIRE(checked.ok());
  CHECK(checked->from_override);
  CHECK(checked->address.to_string() == "127.0.0.1");
  checked = r->resolve_checked("meta.example.test", 80, Policy());
  REQUIRE(checked.ok());
  CHECK(checked->from_override);
  // IP literals never consult overrides.
  auto lit = r->resolve("127.0.0.1", 443);
  REQUIRE(lit.ok());
  CHECK(!lit->from_override);
}

TEST_CASE("bad overrides are reported by create() and dropped by the constructor") {
  for (auto bad :
       std::vector<std::map<std::string, std::string>>{{{"example.test", "not-an-ip"}},
                                                       {{"example.test", "127.1"}},
                                                       {{"bad host", "127.0.0.1"}},
                                                       {{"example.test:0", "127.0.0.1"}},
                                                       {{"127.0.0.1", "10.0.0.1"}},
                                                       {{"example.test", "fe80::1%eth0"}}}) {
    CHECK_MESSAGE(!Resolver::create(bad).ok(), bad.begin()->first, " -> ", bad.begin()->second);
    Resolver dropped(bad);
    CHECK(dropped.override_count() == 0);
  }
}

TEST_CASE("resolve_all_checked lists every permitted address, in order") {
  Resolver r;
  auto all = r.resolve("localhost", 443);
  REQUIRE(all.ok());
  // Allow only the first address localhost has: exactly that one comes back.
  const IpAddress first = all->addresses.front();
  auto one = r.resolve_all_checked("localhost", 443, policy({"localhost", first.to_uri_host()}));
  REQUIRE(one.ok());
  REQUIRE(one->size() == 1);
  CHECK((*one)[0].address == first);
  CHECK(!(*one)[0].from_override);
  // Allow both loopback literals: every address localhost has is permitted.
  auto both = r.resolve_all_checked("localhost", 443, policy({"127.0.0.1", "[::1]"}));
  REQUIRE(both.ok());
  CHECK(both->size() == all->addresses.size());
  auto none = r.resolve_all_checked("localhost", 443, policy({}));
  REQUIRE(!none.ok());
  CHECK(none.status().code() == Errc::denied);
}
