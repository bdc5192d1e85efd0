// Secrets end to end: the upstream bound to a secret receives the real value (checked in the
// upstream's own request log), the client never sees it (responses redacted), a placeholder sent
// to an unbound host is refused and audited as exfiltration, and no audit output holds a value.
#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

const std::string kValue = "sk-test-REAL-VALUE-0123456789abcdef";

ProxyOptions secret_options(bool body = false) {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  o.secrets = {SecretSpec{"API_KEY", kValue, {"api.example.test"}}};
  o.substitute_in_body = body;
  return o;
}

}  // namespace

TEST_CASE("a placeholder in a header reaches the bound host as the real value") {
  TempDir scratch;
  std::string jsonl = scratch.file("audit.jsonl");
  ProxyOptions o = secret_options();
  o.audit_jsonl_path = jsonl;
  ProxyFixture f(std::move(o));
  std::string ph = f.proxy->placeholder("API_KEY");
  REQUIRE(ph.size() == 91);
  auto r = f.curl({"-H", "Authorization: Bearer " + ph}, f.url("api.example.test", "/echo"));
  INFO(r.err);
  CHECK(status_of(r) == 200);
  // The upstream saw the value...
  CHECK(read_text(f.upstream_log).find("Bearer " + kValue) != std::string::npos);
  // ...and echoed it, but the client got the placeholder back.
  CHECK(r.out.find(kValue) == std::string::npos);
  CHECK(r.out.find("Bearer " + ph) != std::string::npos);
  auto events = f.audit.wait_for(1);
  REQUIRE(events.size() == 1);
  CHECK(events[0].secrets_substituted == std::vector<std::string>{"API_KEY"});
  f.proxy->stop();
  std::string log = read_text(jsonl);
  CHECK(log.find("API_KEY") != std::string::npos);
  CHECK(log.find(kValue) == std::string::npos);
}

TEST_CASE("a placeholder in the URL and in Basic credentials is substituted for the bound host") {
  ProxyFixture f(secret_options());
  std::string ph = f.proxy->placeholder("API_KEY");
  auto r = f.curl({"-u", "user:" + ph}, f.url("api.example.test", "/echo?key=" + ph));
  CHECK(status_of(r) == 200);
  std::string seen = read_text(f.upstream_log);
  CHECK(seen.find("/echo?key=" + kValue) != std::string::npos);
  CHECK(seen.find(ph) == std::string::npos);
  CHECK(r.out.find(kValue) == std::string::npos);
}

TEST_CASE("a placeholder sent to an unbound host is refused and audited as exfiltration") {
  ProxyFixture f(secret_options());
  std::string ph = f.proxy->placeholder("API_KEY");
  SUBCASE("header") {
    auto r = f.curl({"-H", "X-Leak: " + ph}, f.url("other.example.test", "/echo"));
    CHECK(status_of(r) == 403);
  }
  SUBCASE("query, percent-encoded") {
    std::string enc;
    for (char c : ph) enc += fmt::format("%{:02X}", static_cast<unsigned char>(c));
    auto r = f.curl({}, f.url("other.example.test", "/echo?x=" + enc));
    CHECK(status_of(r) == 403);
  }
  SUBCASE("Basic credentials") {
    auto r = f.curl({"-u", "u:" + ph}, f.url("other.example.test", "/echo"));
    CHECK(status_of(r) == 403);
  }
  SUBCASE("request body, Content-Length") {
    auto r = f.curl({"--data-binary", "token=" + ph}, f.url("other.example.test", "/echo"));
    CHECK(status_of(r) == 403);
  }
  SUBCASE("request body, chunked, placeholder split across chunks") {
    std::string body = std::string(5000, 'a') + ph + std::string(5000, 'b');
    write_text(f.dir.file("body"), body);
    auto r = f.curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "@" + f.dir.file("body")},
                    f.url("other.example.test", "/echo"));
    CHECK(status_of(r) != 200);
  }
  auto events = f.audit.wait_for(1);
  REQUIRE(!events.empty());
  CHECK(events.back().exfiltration_attempt);
  CHECK(events.back().decision == AuditEvent::Decision::denied);
  // Nothing carrying the placeholder was answered by the unbound upstream.
  CHECK(read_text(f.upstream_log).find(ph) == std::string::npos);
}

TEST_CASE("a real value echoed by an upstream is redacted in headers and bodies") {
  ProxyFixture f(secret_options());
  std::string ph = f.proxy->placeholder("API_KEY");
  // /say echoes its text argument as the body; the URL placeholder becomes the value upstream.
  auto r = f.curl({"-i"}, f.url("api.example.test", "/say?text=" + ph));
  CHECK(status_of(r) == 200);
  CHECK(r.out.find(kValue) == std::string::npos);
  CHECK(r.out.find(ph) != std::string::npos);
}

TEST_CASE("a real value in a large echoed body is redacted across reads") {
  ProxyFixture f(secret_options(/*body=*/true));
  std::string ph = f.proxy->placeholder("API_KEY");
  std::string text = std::string(70000, 'p') + ph + std::string(70000, 'q') + ph;
  write_text(f.dir.file("body"), text);
  auto big = f.curl({"--data-binary", "@" + f.dir.file("body")}, f.url("api.example.test", "/say"));
  CHECK(status_of(big) == 200);
  CHECK(big.out.find(kValue) == std::string::npos);
  CHECK(body_of(big).size() == text.size());
  CHECK((body_of(big) == text));
  // The upstream really answered with the value (so the redaction above did something).
  CHECK(read_text(f.upstream_log).find(kValue) != std::string::npos);
}

TEST_CASE("body substitution when enabled: Content-Length and chunked are re-framed") {
  ProxyFixture f(secret_options(/*body=*/true));
  std::string ph = f.proxy->placeholder("API_KEY");
  auto cl =
      f.curl({"--data-binary", "{\"key\":\"" + ph + "\"}"}, f.url("api.example.test", "/echo"));
  CHECK(status_of(cl) == 200);
  auto ch = f.curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "k=" + ph},
                   f.url("api.example.test", "/echo"));
  CHECK(status_of(ch) == 200);
  std::string seen = read_text(f.upstream_log);
  CHECK(seen.find("{\\\"key\\\":\\\"" + kValue + "\\\"}") != std::string::npos);
  CHECK(seen.find("k=" + kValue) != std::string::npos);
  CHECK(seen.find(ph) == std::string::npos);
  CHECK(cl.out.find(kValue) == std::string::npos);
  CHECK(ch.out.find(kValue) == std::string::npos);
}

TEST_CASE("body substitution off: the body is forwarded with the placeholder untouched") {
  ProxyFixture f(secret_options(false));
  std::string ph = f.proxy->placeholder("API_KEY");
  auto r = f.curl({"--data-binary", "k=" + ph}, f.url("api.example.test", "/echo"));
  CHECK(status_of(r) == 200);
  CHECK(read_text(f.upstream_log).find("k=" + ph) != std::string::npos);
}
