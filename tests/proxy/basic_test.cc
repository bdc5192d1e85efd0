// End-to-end basics with curl: explicit CONNECT with TLS interception, allow/deny, wildcard and
// port rules, plain HTTP absolute-form, transparent HTTPS routed by SNI.
#include "harness.h"

using namespace airlock;
using namespace airlock::test;

TEST_CASE("CONNECT to an allowed host is intercepted and reaches the upstream") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  auto r = f.curl({}, f.url("api.example.test", "/echo?x=1"));
  INFO(r.err);
  CHECK(status_of(r) == 200);
  CHECK(body_of(r).find("\"path\": \"/echo?x=1\"") != std::string::npos);
  auto events = f.audit.wait_for(1);
  REQUIRE(events.size() >= 1);
  CHECK(events.back().host == "api.example.test");
  CHECK(events.back().status == 200);
  CHECK(events.back().decision == AuditEvent::Decision::allowed);
}

TEST_CASE("CONNECT to a host outside allow_net gets 403 naming the host") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  auto r = f.curl({"-v"}, f.url("blocked.example.test", "/echo"));
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("403") != std::string::npos);
  auto events = f.audit.wait_for(1);
  REQUIRE(events.size() == 1);
  CHECK(events[0].host == "blocked.example.test");
  CHECK(events[0].decision == AuditEvent::Decision::denied);
  CHECK(events[0].method == "CONNECT");
}
