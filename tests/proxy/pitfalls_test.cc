// SECURITY.md pitfalls not covered by security_test.cc and secrets_test.cc: Host disagreeing with
// the SNI on the transparent listener, placeholders split across TCP writes, values echoed in
// response headers, a ClientHello trickled in small segments, non-HTTP bytes on the proxy's
// ports, and log messages during secret traffic.
#include <netinet/tcp.h>

#include <thread>

#include "base/log.h"
#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

const std::string kValue = "sk-test-PITFALL-VALUE-9876543210fedcba";

ProxyOptions secret_options() {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  o.secrets = {SecretSpec{"API_KEY", kValue, {"api.example.test"}}};
  return o;
}

// Sends `parts` as separate TCP segments (Nagle off, a pause between them) and reads the answer.
std::string send_in_pieces(const std::string& address, const std::vector<std::string>& parts) {
  RawClient c(address);
  int one = 1;
  setsockopt(c.fd(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) std::this_thread::sleep_for(50ms);
    c.send_all(parts[i]);
  }
  return c.read_until_close(5s);
}

}  // namespace

TEST_CASE("transparent HTTPS: a Host header disagreeing with the SNI is 400, never forwarded") {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  o.listeners = {ListenerSpec{ListenMode::transparent_https, "127.0.0.1:0", -1}};
  ProxyFixture f(std::move(o));
  std::string port = std::to_string(f.upstream->port());
  std::string out = raw_tls(f, "", "api.example.test",
                            "GET /echo?fronted=1 HTTP/1.1\r\nHost: other.example.test:" + port +
                                "\r\nConnection: close\r\n\r\n");
  CHECK(response_status(out) == 400);
  CHECK(read_text(f.upstream_log).find("fronted=1") == std::string::npos);
  // The same request with the SNI's own host goes through: the refusal above was the mismatch.
  std::string ok = raw_tls(f, "", "api.example.test",
                           "GET /echo?fronted=0 HTTP/1.1\r\nHost: api.example.test:" + port +
                               "\r\nConnection: close\r\n\r\n");
  CHECK(response_status(ok) == 200);
  CHECK(read_text(f.upstream_log).find("fronted=0") != std::string::npos);
}

TEST_CASE("a placeholder split across TCP writes is still found") {
  ProxyFixture f(secret_options(), false);
  std::string ph = f.proxy->placeholder("API_KEY");
  std::string port = std::to_string(f.upstream->port());
  auto head = [&](const std::string& host) {
    return "GET http://" + host + ":" + port + "/echo HTTP/1.1\r\nHost: " + host + ":" + port +
           "\r\nConnection: close\r\nX-Token: " + ph.substr(0, 7);
  };
  // Three segments: the cut falls inside the "AIRLOCK_" prefix and inside the hex part.
  std::vector<std::string> tail = {ph.substr(7, 40), ph.substr(47) + "\r\n\r\n"};

  SUBCASE("to an unbound host: refused and audited as exfiltration") {
    std::vector<std::string> parts = {head("other.example.test")};
    parts.insert(parts.end(), tail.begin(), tail.end());
    std::string out = send_in_pieces(f.proxy_addr, parts);
    CHECK(response_status(out) == 403);
    auto events = f.audit.wait_for(1);
    REQUIRE(!events.empty());
    CHECK(events.back().exfiltration_attempt);
    CHECK(read_text(f.upstream_log).find(ph) == std::string::npos);
  }
  SUBCASE("to the bound host: substituted") {
    std::vector<std::string> parts = {head("api.example.test")};
    parts.insert(parts.end(), tail.begin(), tail.end());
    std::string out = send_in_pieces(f.proxy_addr, parts);
    CHECK(response_status(out) == 200);
    CHECK(read_text(f.upstream_log).find(kValue) != std::string::npos);
    CHECK(out.find(kValue) == std::string::npos);
  }
  SUBCASE("in a Content-Length body to an unbound host, cut across writes") {
    std::string body = "token=" + ph;
    std::string h = "POST http://other.example.test:" + port +
                    "/echo HTTP/1.1\r\nHost: other.example.test:" + port +
                    "\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
                    "\r\n\r\n";
    std::string out = send_in_pieces(f.proxy_addr, {h, body.substr(0, 30), body.substr(30)});
    CHECK(response_status(out) != 200);
    CHECK(read_text(f.upstream_log).find(ph) == std::string::npos);
  }
}

TEST_CASE("a real value echoed in a response header is redacted") {
  ProxyFixture f(secret_options());
  std::string ph = f.proxy->placeholder("API_KEY");
  auto r = f.curl({"-i"}, f.url("api.example.test", "/say?header=1&text=" + ph));
  CHECK(status_of(r) == 200);
  CHECK(r.out.find("X-Said: " + ph) != std::string::npos);
  CHECK(r.out.find(kValue) == std::string::npos);
  // The upstream did send the value back (so the redaction had something to do).
  CHECK(read_text(f.upstream_log).find(kValue) != std::string::npos);
}

TEST_CASE("a ClientHello trickled in small TCP segments is routed by its SNI") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.listeners = {ListenerSpec{ListenMode::transparent_https, "127.0.0.1:0", -1}};
  ProxyFixture f(std::move(o));
  // 24-byte segments: the record header, the handshake header and the SNI extension all
  // arrive cut.
  std::string port = std::to_string(f.upstream->port());
  auto out = raw_tls(f, "", "api.example.test",
                     "GET /echo?trickled=1 HTTP/1.1\r\nHost: api.example.test:" + port +
                         "\r\nConnection: close\r\n\r\n",
                     {"--hello-segment", "24", "--timeout", "10"});
  INFO(out);
  CHECK(out.find("HTTP/1.1 200 OK") != std::string::npos);
  CHECK(read_text(f.upstream_log).find("trickled=1") != std::string::npos);
}

TEST_CASE("non-HTTP bytes on the proxy's listeners never reach an upstream") {
  const std::string ssh_banner = "SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n";
  SUBCASE("inside a CONNECT tunnel to an allowed host (no TLS ClientHello)") {
    ProxyOptions o;
    o.allow_net = {"api.example.test"};
    ProxyFixture f(std::move(o));
    std::string target = "api.example.test:" + std::to_string(f.upstream->port());
    RawClient c(f.proxy_addr);
    c.send_all("CONNECT " + target + " HTTP/1.1\r\nHost: " + target + "\r\n\r\n");
    c.send_all(ssh_banner);
    bool closed = false;
    std::string out = c.read_until_close(5s, &closed);
    CHECK(closed);
    // At most the CONNECT answer came back; nothing from the upstream.
    CHECK(out.find("SSH-") == std::string::npos);
    CHECK(read_text(f.upstream_log).empty());
  }
  SUBCASE("plain text on the transparent HTTPS listener") {
    ProxyOptions o;
    o.allow_net = {"api.example.test"};
    o.listeners = {ListenerSpec{ListenMode::transparent_https, "127.0.0.1:0", -1}};
    ProxyFixture f(std::move(o));
    RawClient c(f.proxy_addr);
    c.send_all("GET /echo HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
    bool closed = false;
    std::string out = c.read_until_close(5s, &closed);
    CHECK(closed);
    CHECK(response_status(out) != 200);
    CHECK(read_text(f.upstream_log).empty());
  }
  SUBCASE("an SSH banner on the transparent HTTP listener") {
    ProxyOptions o;
    o.allow_net = {"api.example.test"};
    o.listeners = {ListenerSpec{ListenMode::transparent_http, "127.0.0.1:0", -1}};
    ProxyFixture f(std::move(o), false);
    RawClient c(f.proxy_addr);
    c.send_all(ssh_banner);
    bool closed = false;
    std::string out = c.read_until_close(5s, &closed);
    CHECK(closed);
    CHECK((out.empty() || response_status(out) == 400));
    CHECK(read_text(f.upstream_log).empty());
  }
}

TEST_CASE("log messages, audit events and the audit file never carry a secret value") {
  std::mutex mu;
  std::vector<std::string> messages;
  set_log_level(LogLevel::debug);
  set_log_sink([&](LogLevel, std::string_view component, std::string_view msg) {
    std::lock_guard<std::mutex> lock(mu);
    messages.emplace_back(std::string(component) + ": " + std::string(msg));
  });
  TempDir scratch;
  std::string jsonl = scratch.file("audit.jsonl");
  {
    ProxyOptions o = secret_options();
    o.audit_jsonl_path = jsonl;
    ProxyFixture f(std::move(o));
    std::string ph = f.proxy->placeholder("API_KEY");
    // Substituted in a header and the query, echoed back (redacted), and an exfiltration attempt.
    auto ok =
        f.curl({"-H", "Authorization: Bearer " + ph}, f.url("api.example.test", "/echo?key=" + ph));
    CHECK(status_of(ok) == 200);
    auto said = f.curl({"-i"}, f.url("api.example.test", "/say?header=1&text=" + ph));
    CHECK(status_of(said) == 200);
    auto leak = f.curl({"-H", "X-Leak: " + ph}, f.url("other.example.test", "/echo"));
    CHECK(status_of(leak) == 403);
    auto events = f.audit.wait_for(3);
    REQUIRE(events.size() >= 3);
    for (const auto& e : events) {
      INFO(e.path);
      CHECK(e.path.find(kValue) == std::string::npos);
      CHECK(e.reason.find(kValue) == std::string::npos);
    }
    // The upstream really got the value, so the proxy handled it while logging.
    CHECK(read_text(f.upstream_log).find(kValue) != std::string::npos);
  }
  set_log_sink({});
  set_log_level(LogLevel::warn);
  // The JSON lines file (what an operator might expose) names the secret and the exfiltration
  // attempt, never the value.
  std::string log = read_text(jsonl);
  CHECK(log.find("API_KEY") != std::string::npos);
  CHECK(log.find("other.example.test") != std::string::npos);
  CHECK(log.find(kValue) == std::string::npos);
  // The proxy logs little (connection ids, errors); whatever it logged must not hold the value.
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& m : messages) {
    INFO(m);
    CHECK(m.find(kValue) == std::string::npos);
  }
}
