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

TEST_CASE("wildcard rules match subdomains only") {
  ProxyOptions o;
  o.allow_net = {"*.wild.example.test"};
  ProxyFixture f(std::move(o));
  CHECK(status_of(f.curl({}, f.url("a.wild.example.test", "/echo"))) == 200);
  auto r = f.curl({}, f.url("api.example.test", "/echo"));
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("403") != std::string::npos);
}

TEST_CASE("port rules: only the named port is allowed") {
  ProxyOptions o;
  o.allow_net = {"api.example.test:1"};  // the upstream is never on port 1
  ProxyFixture f(std::move(o));
  auto r = f.curl({}, f.url("api.example.test", "/echo"));
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("403") != std::string::npos);
}

TEST_CASE("a host:port rule with the upstream's port is allowed") {
  // The port is only known after the upstream starts, so start it first, then the proxy.
  TempDir dir;
  TestPki pki(dir);
  Upstream up(&pki);
  ProxyOptions o;
  o.allow_net = {"api.example.test:" + std::to_string(up.port())};
  o.resolve_override["api.example.test"] = "127.0.0.1";
  o.extra_ca_files = {pki.ca_cert};
  auto p = Proxy::start(std::move(o));
  REQUIRE(p.ok());
  std::string ca = dir.file("proxy-ca.pem");
  write_text(ca, (*p)->ca_pem());
  auto r = run({"curl", "-sS", "--max-time", "10", "-x", "http://" + (*p)->listen_addresses()[0],
                "--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}",
                "https://api.example.test:" + std::to_string(up.port()) + "/echo"},
               std::chrono::seconds(20));
  CHECK(r.out == "200");
  (*p)->stop();
}

TEST_CASE("plain HTTP through the explicit proxy (absolute-form)") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), /*tls_upstream=*/false);
  auto r = f.curl({}, f.url("api.example.test", "/echo?q=2", false));
  INFO(r.err);
  CHECK(status_of(r) == 200);
  CHECK(body_of(r).find("\"path\": \"/echo?q=2\"") != std::string::npos);
  // The Host the upstream saw is the connection identity.
  CHECK(body_of(r).find("[\"Host\", \"api.example.test:" + std::to_string(f.upstream->port())) !=
        std::string::npos);
  auto blocked = f.curl({}, f.url("blocked.example.test", "/echo", false));
  CHECK(status_of(blocked) == 403);
  CHECK(body_of(blocked).find("blocked.example.test") != std::string::npos);
}

TEST_CASE("transparent HTTPS is routed by SNI") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.listeners = {ListenerSpec{ListenMode::transparent_https, "127.0.0.1:0", -1}};
  ProxyFixture f(std::move(o));
  std::string port = std::to_string(f.upstream->port());
  auto curl = [&](const std::string& host) {
    return run({"curl", "-sS", "--max-time", "10", "--noproxy", "*", "--cacert", f.proxy_ca,
                "--connect-to", host + ":" + port + ":127.0.0.1:" + port_of(f.proxy_addr), "-w",
                "\n%{http_code}", "https://" + host + ":" + port + "/echo"},
               std::chrono::seconds(20));
  };
  auto r = curl("api.example.test");
  INFO(r.err);
  CHECK(status_of(r) == 200);
  auto blocked = curl("blocked.example.test");
  CHECK(status_of(blocked) == 403);
}

TEST_CASE("transparent HTTP is routed by Host") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.listeners = {ListenerSpec{ListenMode::transparent_http, "127.0.0.1:0", -1}};
  ProxyFixture f(std::move(o), false);
  std::string port = std::to_string(f.upstream->port());
  auto r = run({"curl", "-sS", "--max-time", "10", "--noproxy", "*", "--connect-to",
                "api.example.test:" + port + ":127.0.0.1:" + port_of(f.proxy_addr), "-w",
                "\n%{http_code}", "http://api.example.test:" + port + "/echo"},
               std::chrono::seconds(20));
  INFO(r.err);
  CHECK(status_of(r) == 200);
}

TEST_CASE("keep-alive: several requests on one intercepted connection") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  auto r = f.curl({}, f.url("api.example.test", "/echo?n=[1-3]"));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto events = f.audit.wait_for(3);
  REQUIRE(events.size() == 3);
  CHECK(events[0].connection_id == events[2].connection_id);
  CHECK(events[2].path == "/echo?n=3");
}

TEST_CASE("response framing: chunked, HEAD, 204, 304, large bodies") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  auto chunked = f.curl({}, f.url("api.example.test", "/chunked?n=100000&c=7"));
  CHECK(status_of(chunked) == 200);
  CHECK(body_of(chunked) == std::string(100000, 'y'));
  auto head = f.curl({"-I"}, f.url("api.example.test", "/bytes?n=1234"));
  CHECK(head.out.find("Content-Length: 1234") != std::string::npos);
  CHECK(status_of(f.curl({}, f.url("api.example.test", "/status?code=204"))) == 204);
  CHECK(status_of(f.curl({}, f.url("api.example.test", "/status?code=304"))) == 304);
  auto big = f.curl({"-o", f.dir.file("big")}, f.url("api.example.test", "/bytes?n=5000000"));
  CHECK(status_of(big) == 200);
  CHECK(std::filesystem::file_size(f.dir.file("big")) == 5000000);
}

TEST_CASE("request bodies: Content-Length, chunked, Expect: 100-continue") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  auto cl = f.curl({"--data-binary", "hello body"}, f.url("api.example.test", "/echo"));
  CHECK(body_of(cl).find("\"body\": \"hello body\"") != std::string::npos);
  auto ch = f.curl({"-H", "Transfer-Encoding: chunked", "--data-binary", "chunky"},
                   f.url("api.example.test", "/echo"));
  CHECK(body_of(ch).find("\"body\": \"chunky\"") != std::string::npos);
  std::string big(300000, 'b');
  write_text(f.dir.file("body"), big);
  auto expect = f.curl({"-H", "Expect: 100-continue", "--data-binary", "@" + f.dir.file("body")},
                       f.url("api.example.test", "/echo"));
  CHECK(status_of(expect) == 200);
  CHECK(body_of(expect).find(big) != std::string::npos);
}

TEST_CASE("large transfers both ways survive TLS write retries (slow reader, big upload)") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  // A rate-limited reader makes the proxy's TLS writes to the client block and retry.
  auto slow = f.curl({"--limit-rate", "4M", "-o", f.dir.file("down")},
                     f.url("api.example.test", "/bytes?n=3000000"));
  CHECK(status_of(slow) == 200);
  CHECK(std::filesystem::file_size(f.dir.file("down")) == 3000000);
  std::string up(4 * 1024 * 1024, 'u');
  write_text(f.dir.file("up"), up);
  auto upload = f.curl({"--data-binary", "@" + f.dir.file("up"), "-o", f.dir.file("echo")},
                       f.url("api.example.test", "/say"));
  CHECK(status_of(upload) == 200);
  CHECK(std::filesystem::file_size(f.dir.file("echo")) == up.size());
}

TEST_CASE("pipelined requests are answered in order") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), false);
  std::string base = "http://api.example.test:" + std::to_string(f.upstream->port());
  std::string host = "Host: api.example.test:" + std::to_string(f.upstream->port()) + "\r\n";
  RawClient c(f.proxy_addr);
  c.send_all("GET " + base + "/echo?n=1 HTTP/1.1\r\n" + host + "\r\n" + "GET " + base +
             "/echo?n=2 HTTP/1.1\r\n" + host + "\r\n" + "GET " + base + "/echo?n=3 HTTP/1.1\r\n" +
             host + "Connection: close\r\n\r\n");
  std::string out = c.read_until_close(std::chrono::seconds(10));
  size_t a = out.find("/echo?n=1"), b = out.find("/echo?n=2"), d = out.find("/echo?n=3");
  CHECK(a != std::string::npos);
  CHECK(b != std::string::npos);
  CHECK(d != std::string::npos);
  CHECK(a < b);
  CHECK(b < d);
}

TEST_CASE("idle upstream connections are reused across client connections") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.worker_threads = 1;  // the pool is per worker
  ProxyFixture f(std::move(o));
  for (int i = 0; i < 3; ++i)
    CHECK(status_of(f.curl({}, f.url("api.example.test", "/echo"))) == 200);
  // Every request reached the upstream from the same TCP connection (same peer port).
  std::string log = read_text(f.upstream_log);
  std::vector<std::string> ports;
  for (size_t at = log.find("\"peer_port\": "); at != std::string::npos;
       at = log.find("\"peer_port\": ", at + 1))
    ports.push_back(log.substr(at + 13, log.find(',', at) - at - 13));
  REQUIRE(ports.size() == 3);
  CHECK(ports[0] == ports[1]);
  CHECK(ports[1] == ports[2]);
}

TEST_CASE("a request lost on a reused upstream connection is sent again on a new one") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.worker_threads = 1;
  ProxyFixture f(std::move(o));
  // Both requests on one client connection: the second goes out on the kept-alive upstream
  // connection, which the server closes without answering; the proxy retries it once.
  auto r = f.curl({}, f.url("api.example.test", "/drop-on-reuse?n=[1-2]"));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  auto events = f.audit.wait_for(2);
  REQUIRE(events.size() == 2);
  CHECK(events[0].status == 200);
  CHECK(events[1].status == 200);
}

TEST_CASE("an HTTP/1.0 client gets its response and the connection closes") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), false);
  RawClient c(f.proxy_addr);
  c.send_all("GET http://api.example.test:" + std::to_string(f.upstream->port()) +
             "/echo?v=10 HTTP/1.0\r\n\r\n");
  bool closed = false;
  std::string out = c.read_until_close(std::chrono::seconds(10), &closed);
  CHECK(closed);
  CHECK(response_status(out) == 200);
  CHECK(out.find("/echo?v=10") != std::string::npos);
  CHECK(out.find("Transfer-Encoding") == std::string::npos);  // 1.0 clients never get chunked
}
