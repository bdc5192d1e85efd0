// Request hooks: trusted host code sees each request (with placeholders, before substitution)
// and may allow, deny or change headers; a throwing or late hook denies the request.
#include <atomic>
#include <thread>

#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

TEST_CASE("hook sees method, host and target, and may add and remove headers") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  std::mutex mu;
  std::vector<HookRequest> seen;
  o.hook = [&](const HookRequest& r) {
    {
      std::lock_guard lock(mu);
      seen.push_back(r);
    }
    HookDecision d;
    d.set_headers = {{"X-Added-By-Hook", "yes"}};
    d.remove_headers = {"X-Remove-Me"};
    return d;
  };
  ProxyFixture f(std::move(o));
  auto r =
      f.curl({"-H", "X-Remove-Me: 1", "-H", "X-Keep: 2"}, f.url("api.example.test", "/echo?a=b"));
  CHECK(status_of(r) == 200);
  std::string upstream_saw = read_text(f.upstream_log);
  CHECK(upstream_saw.find("X-Added-By-Hook") != std::string::npos);
  CHECK(upstream_saw.find("X-Remove-Me") == std::string::npos);
  CHECK(upstream_saw.find("X-Keep") != std::string::npos);
  std::lock_guard lock(mu);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].method == "GET");
  CHECK(seen[0].scheme == "https");
  CHECK(seen[0].host == "api.example.test");
  CHECK(seen[0].target == "/echo?a=b");
}

TEST_CASE("hook deny answers with the hook's status and message, nothing goes upstream") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.hook = [](const HookRequest& r) {
    HookDecision d;
    if (r.target.find("forbidden") != std::string::npos) {
      d.action = HookDecision::Action::deny;
      d.status = 451;
      d.message = "not today";
    }
    return d;
  };
  ProxyFixture f(std::move(o));
  auto r = f.curl({}, f.url("api.example.test", "/forbidden"));
  CHECK(status_of(r) == 451);
  CHECK(r.out.find("not today") != std::string::npos);
  CHECK(read_text(f.upstream_log).find("forbidden") == std::string::npos);
  CHECK(status_of(f.curl({}, f.url("api.example.test", "/fine"))) == 200);
}

TEST_CASE("a throwing hook denies the request and the proxy keeps serving") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  std::atomic<int> calls{0};
  o.hook = [&](const HookRequest&) -> HookDecision {
    if (calls.fetch_add(1) == 0) throw std::runtime_error("boom");
    return HookDecision{};
  };
  ProxyFixture f(std::move(o));
  CHECK(status_of(f.curl({}, f.url("api.example.test", "/echo"))) == 403);
  CHECK(status_of(f.curl({}, f.url("api.example.test", "/echo"))) == 200);
  auto events = f.audit.wait_for(2);
  REQUIRE(events.size() == 2);
  CHECK(events[0].reason.find("hook") != std::string::npos);
}

TEST_CASE("a hook that misses its deadline denies the request") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.hook_deadline = 200ms;
  o.hook = [](const HookRequest&) {
    std::this_thread::sleep_for(600ms);
    return HookDecision{};
  };
  ProxyFixture f(std::move(o));
  auto t0 = std::chrono::steady_clock::now();
  auto r = f.curl({}, f.url("api.example.test", "/echo"));
  CHECK(status_of(r) == 403);
  CHECK(std::chrono::steady_clock::now() - t0 < 2s);
  CHECK(read_text(f.upstream_log).empty());
}
