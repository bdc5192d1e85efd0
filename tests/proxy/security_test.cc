// SECURITY.md pitfalls: domain fronting (Host / absolute URL / SNI disagreeing with the
// connection identity), request smuggling, IP literals and loopback resolution, missing SNI,
// oversized and slow headers.
#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

std::string plain_exchange(ProxyFixture& f, const std::string& request) {
  RawClient c(f.proxy_addr);
  c.send_all(request);
  return c.read_until_close(5s);
}

}  // namespace

TEST_CASE("Host header disagreeing with the CONNECT authority is 400 (domain fronting)") {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  ProxyFixture f(std::move(o));
  auto r = f.curl({"-H", "Host: other.example.test"}, f.url("api.example.test", "/echo"));
  CHECK(status_of(r) == 400);
  auto events = f.audit.wait_for(1);
  REQUIRE(!events.empty());
  CHECK(events.back().reason.find("Host") != std::string::npos);
}

TEST_CASE("absolute-form URL disagreeing with the tunnel's host is 400") {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  ProxyFixture f(std::move(o));
  std::string port = std::to_string(f.upstream->port());
  std::string out = raw_tls(f, "api.example.test:" + port, "api.example.test",
                            "GET https://other.example.test:" + port +
                                "/echo HTTP/1.1\r\nHost: other.example.test:" + port +
                                "\r\nConnection: close\r\n\r\n");
  CHECK(out.rfind("CONNECT-STATUS HTTP/1.1 200", 0) == 0);
  CHECK(out.find("HTTP/1.1 400") != std::string::npos);
  // The same URL with the tunnel's own host is accepted.
  std::string ok = raw_tls(f, "api.example.test:" + port, "api.example.test",
                           "GET https://api.example.test:" + port +
                               "/echo HTTP/1.1\r\nHost: api.example.test:" + port +
                               "\r\nConnection: close\r\n\r\n");
  CHECK(ok.find("HTTP/1.1 200") != std::string::npos);
}

TEST_CASE("explicit plain HTTP: Host header must match the absolute URL") {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  ProxyFixture f(std::move(o), false);
  std::string port = std::to_string(f.upstream->port());
  std::string out =
      plain_exchange(f, "GET http://api.example.test:" + port +
                            "/echo HTTP/1.1\r\nHost: other.example.test:" + port + "\r\n\r\n");
  CHECK(response_status(out) == 400);
}

TEST_CASE("TLS server name disagreeing with the CONNECT authority fails the handshake") {
  ProxyOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  ProxyFixture f(std::move(o));
  std::string port = std::to_string(f.upstream->port());
  std::string out = raw_tls(f, "api.example.test:" + port, "other.example.test",
                            "GET / HTTP/1.1\r\nHost: other.example.test\r\n\r\n");
  CHECK(out.find("TLS-ERROR") != std::string::npos);
  auto events = f.audit.wait_for(1);
  REQUIRE(!events.empty());
  CHECK(events.back().decision == AuditEvent::Decision::denied);
  CHECK(events.back().reason.find("server name") != std::string::npos);
}

TEST_CASE("transparent TLS without SNI is refused, never given a default name") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.listeners = {ListenerSpec{ListenMode::transparent_https, "127.0.0.1:0", -1}};
  ProxyFixture f(std::move(o));
  std::string out = raw_tls(f, "", "", "GET / HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  CHECK(out.find("TLS-ERROR") != std::string::npos);
  auto events = f.audit.wait_for(1);
  REQUIRE(events.size() == 1);
  CHECK(events[0].decision == AuditEvent::Decision::denied);
  CHECK(events[0].reason.find("no SNI") != std::string::npos);
}

TEST_CASE("request smuggling forms are refused with 400") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), false);
  std::string base =
      "POST http://api.example.test:" + std::to_string(f.upstream->port()) +
      "/echo HTTP/1.1\r\nHost: api.example.test:" + std::to_string(f.upstream->port()) + "\r\n";
  SUBCASE("Content-Length with Transfer-Encoding") {
    auto out = plain_exchange(f, base +
                                     "Content-Length: 5\r\nTransfer-Encoding: "
                                     "chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n");
    CHECK(response_status(out) == 400);
  }
  SUBCASE("duplicate Content-Length") {
    auto out = plain_exchange(f, base + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!");
    CHECK(response_status(out) == 400);
  }
  SUBCASE("obsolete line folding") {
    auto out = plain_exchange(f, base + "X-A: a\r\n folded\r\nContent-Length: 0\r\n\r\n");
    CHECK(response_status(out) == 400);
  }
  SUBCASE("bare LF") {
    auto out = plain_exchange(
        f, "GET http://api.example.test:" + std::to_string(f.upstream->port()) +
               "/echo HTTP/1.1\nHost: api.example.test:" + std::to_string(f.upstream->port()) +
               "\n\n");
    CHECK(response_status(out) == 400);
  }
  SUBCASE("Transfer-Encoding that is not chunked") {
    auto out = plain_exchange(f, base + "Transfer-Encoding: gzip\r\n\r\nxx");
    CHECK(response_status(out) == 400);
  }
  // Nothing reached the upstream as a request: every event is a denial.
  for (const auto& e : f.audit.snapshot()) CHECK(e.status == 400);
}

TEST_CASE("request smuggling inside an intercepted TLS tunnel is refused") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  std::string port = std::to_string(f.upstream->port());
  std::string out = raw_tls(f, "api.example.test:" + port, "api.example.test",
                            "POST /echo HTTP/1.1\r\nHost: api.example.test:" + port +
                                "\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "0\r\n\r\n");
  CHECK(out.find("HTTP/1.1 400") != std::string::npos);
}

TEST_CASE("CONNECT to an IP literal is decided by policy") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  auto denied = f.curl({"-k"}, "https://127.0.0.1:" + std::to_string(f.upstream->port()) + "/echo");
  CHECK(denied.err.find("403") != std::string::npos);

  ProxyOptions allow_ip;
  allow_ip.allow_net = {"127.0.0.1"};
  ProxyFixture g(std::move(allow_ip));
  auto allowed = g.curl({}, "https://127.0.0.1:" + std::to_string(g.upstream->port()) + "/echo");
  INFO(allowed.err);
  CHECK(status_of(allowed) == 200);  // leaf minted with an IP SAN, upstream verified by IP
}

TEST_CASE("non-canonical numeric hosts are not resolved as names") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), false);
  std::string port = std::to_string(f.upstream->port());
  for (std::string host : {"2130706433", "0x7f.0.0.1", "0177.0.0.1", "127.1"}) {
    auto out = plain_exchange(f, "GET http://" + host + ":" + port +
                                     "/echo HTTP/1.1\r\nHost: " + host + ":" + port + "\r\n\r\n");
    INFO(host);
    CHECK(response_status(out) == 403);
  }
}

TEST_CASE("an allowed name resolving to loopback is refused without an override") {
  // "localhost" resolves through the system resolver (/etc/hosts) to a loopback address; the
  // proxy must refuse to dial it although the name itself is in allow_net.
  ProxyOptions o;
  o.allow_net = {"localhost"};
  ProxyFixture f(std::move(o), false);
  std::string port = std::to_string(f.upstream->port());
  auto out = plain_exchange(
      f, "GET http://localhost:" + port + "/echo HTTP/1.1\r\nHost: localhost:" + port + "\r\n\r\n");
  CHECK(response_status(out) == 403);
  CHECK(out.find("loopback") != std::string::npos);
}

TEST_CASE("oversized heads: 431 for headers, 414 for the URL") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.limits.max_header_bytes = 8192;
  o.limits.max_url_bytes = 2048;
  o.limits.max_headers = 20;
  ProxyFixture f(std::move(o), false);
  std::string url = "http://api.example.test:" + std::to_string(f.upstream->port());
  std::string host = "Host: api.example.test:" + std::to_string(f.upstream->port()) + "\r\n";
  auto big = plain_exchange(
      f, "GET " + url + "/ HTTP/1.1\r\n" + host + "X-Big: " + std::string(20000, 'a') + "\r\n\r\n");
  CHECK(response_status(big) == 431);
  std::string many;
  for (int i = 0; i < 30; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  auto count = plain_exchange(f, "GET " + url + "/ HTTP/1.1\r\n" + host + many + "\r\n");
  CHECK(response_status(count) == 431);
  auto longurl = plain_exchange(
      f, "GET " + url + "/" + std::string(4000, 'u') + " HTTP/1.1\r\n" + host + "\r\n");
  CHECK(response_status(longurl) == 414);
}

TEST_CASE("a slow client is cut off by the header timeout") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.limits.header_timeout = 300ms;
  ProxyFixture f(std::move(o), false);
  RawClient c(f.proxy_addr);
  auto t0 = std::chrono::steady_clock::now();
  c.send_all("GET http://api.example.test/ HTTP/1.1\r\nHost: api.exa");
  // Trickle a byte every 100 ms: the deadline is fixed, not moved by activity.
  bool closed = false;
  std::string out;
  for (int i = 0; i < 20 && !closed; ++i) {
    c.send_all("m");
    out += c.read_until_close(100ms, &closed);
  }
  auto elapsed = std::chrono::steady_clock::now() - t0;
  CHECK(closed);
  CHECK(response_status(out) == 408);
  CHECK(elapsed < 1500ms);
}

TEST_CASE("a silent TLS client is cut off by the handshake timeout") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.limits.tls_handshake_timeout = 300ms;
  o.listeners = {ListenerSpec{ListenMode::transparent_https, "127.0.0.1:0", -1}};
  ProxyFixture f(std::move(o));
  RawClient c(f.proxy_addr);
  c.send_all(std::string("\x16\x03\x01\x00", 4));  // the start of a ClientHello, then nothing
  bool closed = false;
  c.read_until_close(3s, &closed);
  CHECK(closed);
}

TEST_CASE("bad CONNECT authorities and origin-form requests to the explicit proxy get 400") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), false);
  auto bad = plain_exchange(f, "CONNECT api.example.test:99999 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(response_status(bad) == 400);
  auto origin = plain_exchange(f, "GET /echo HTTP/1.1\r\nHost: api.example.test\r\n\r\n");
  CHECK(response_status(origin) == 400);
}

TEST_CASE("IPv6 forms embedding loopback are refused") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), false);
  std::string port = std::to_string(f.upstream->port());
  // Mapped, loopback, NAT64 well-known prefix, 6to4 (2002:7f00:0001::/48 carries 127.0.0.1).
  for (std::string host :
       {"[::ffff:127.0.0.1]", "[::1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::1]", "[::127.0.0.1]"}) {
    auto out = plain_exchange(
        f, "CONNECT " + host + ":" + port + " HTTP/1.1\r\nHost: " + host + ":" + port + "\r\n\r\n");
    INFO(host);
    CHECK(response_status(out) == 403);
  }
}

TEST_CASE("an upstream whose certificate does not verify gets 502, never a silent pass") {
  TempDir dir;
  TestPki pki(dir);
  Upstream up(&pki);
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.resolve_override["api.example.test"] = "127.0.0.1";
  o.ca_bundle = "/etc/ssl/certs/ca-certificates.crt";  // the test CA is NOT added
  auto p = Proxy::start(std::move(o));
  REQUIRE(p.ok());
  std::string ca = dir.file("proxy-ca.pem");
  write_text(ca, (*p)->ca_pem());
  auto r = run({"curl", "-sS", "--max-time", "10", "-x", "http://" + (*p)->listen_addresses()[0],
                "--cacert", ca, "-w", "\n%{http_code}",
                "https://api.example.test:" + std::to_string(up.port()) + "/echo"},
               20s);
  CHECK(status_of(r) == 502);
  CHECK(r.out.find("certificate") != std::string::npos);
  (*p)->stop();
}

TEST_CASE("upstream name mismatch: a certificate for another name is refused") {
  // The test certificate has no SAN for this name, so hostname verification must fail.
  ProxyOptions o;
  o.allow_net = {"nomatch.example.test"};
  o.resolve_override["nomatch.example.test"] = "127.0.0.1";
  ProxyFixture f(std::move(o));
  auto r = f.curl({}, f.url("nomatch.example.test", "/echo"));
  CHECK(status_of(r) == 502);
}

TEST_CASE("a ClientHello sent together with CONNECT (no wait for the 200) still works") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o));
  const char* script = R"PY(
import socket, ssl, sys
proxy, target, cafile = sys.argv[1:4]
host, port = proxy.rsplit(":", 1)
s = socket.create_connection((host, int(port)), timeout=10)
ctx = ssl.create_default_context(cafile=cafile)
inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(inc, out, server_hostname="api.example.test")
try:
    tls.do_handshake()
except ssl.SSLWantReadError:
    pass
# CONNECT and the ClientHello in one write.
s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()) + out.read())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
head, _, rest = buf.partition(b"\r\n\r\n")
print(head.split(b"\r\n")[0].decode())
inc.write(rest)
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        if out.pending:
            s.sendall(out.read())
        d = s.recv(65536)
        if not d:
            raise SystemExit("closed during handshake")
        inc.write(d)
if out.pending:
    s.sendall(out.read())
tls.write(b"GET /echo?early=1 HTTP/1.1\r\nHost: " + target.encode() + b"\r\nConnection: close\r\n\r\n")
s.sendall(out.read())
data = b""
while True:
    try:
        chunk = tls.read(65536)
        if not chunk:
            break  # close_notify
        data += chunk
    except ssl.SSLWantReadError:
        d = s.recv(65536)
        if not d:
            break
        inc.write(d)
    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
        break
print(data.split(b"\r\n")[0].decode(), b"early=1" in data)
)PY";
  std::string target = "api.example.test:" + std::to_string(f.upstream->port());
  auto r = run({"/usr/bin/python3", "-c", script, f.proxy_addr, target, f.proxy_ca}, 20s);
  INFO(r.err);
  CHECK(r.out.find("HTTP/1.1 200 Connection Established") != std::string::npos);
  INFO(r.out);
  CHECK(r.out.find("HTTP/1.1 200 OK True") != std::string::npos);
}
