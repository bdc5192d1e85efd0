// Lifecycle and hygiene: start/stop cycles leak no fds or threads, stop() returns with clients
// still connected, listeners can be handed over as fds, hop-by-hop headers never reach the
// upstream, stats count what happened.
#include <dirent.h>
#include <sys/socket.h>

#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

size_t count_entries(const char* dir) {
  size_t n = 0;
  DIR* d = opendir(dir);
  if (!d) return 0;
  while (readdir(d)) ++n;
  closedir(d);
  return n;
}

}  // namespace

TEST_CASE("start/stop cycles with traffic and hanging clients leak no fds or threads") {
  TempDir dir;
  TestPki pki(dir);
  Upstream up(&pki);
  // Warm-up cycle so lazily created process-wide state (BoringSSL, libc) is not counted.
  auto cycle = [&] {
    ProxyOptions o;
    o.allow_net = {"api.example.test"};
    o.resolve_override["api.example.test"] = "127.0.0.1";
    o.extra_ca_files = {pki.ca_cert};
    auto p = Proxy::start(std::move(o));
    REQUIRE(p.ok());
    std::string ca = dir.file("ca.pem");
    write_text(ca, (*p)->ca_pem());
    auto r = run({"curl", "-sS", "--max-time", "10", "-x", "http://" + (*p)->listen_addresses()[0],
                  "--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}",
                  "https://api.example.test:" + std::to_string(up.port()) + "/echo"},
                 20s);
    CHECK(r.out == "200");
    // A client that connects, sends half a request and hangs, and one idle connection.
    RawClient hanging((*p)->listen_addresses()[0]);
    hanging.send_all("GET http://api.example.test/ HTTP/1.1\r\nHost: api");
    RawClient idle((*p)->listen_addresses()[0]);
    usleep(50000);
    auto t0 = std::chrono::steady_clock::now();
    (*p)->stop();
    CHECK(std::chrono::steady_clock::now() - t0 < 2s);
    bool closed = false;
    hanging.read_until_close(2s, &closed);
    CHECK(closed);  // the proxy closed its end on stop
  };
  cycle();
  size_t fds = count_entries("/proc/self/fd");
  size_t threads = count_entries("/proc/self/task");
  for (int i = 0; i < 3; ++i) cycle();
  CHECK(count_entries("/proc/self/fd") == fds);
  CHECK(count_entries("/proc/self/task") == threads);
}

TEST_CASE("a listening socket can be handed over as an fd") {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
  REQUIRE(listen(fd, 16) == 0);
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.listeners = {ListenerSpec{ListenMode::explicit_proxy, "", fd}};
  ProxyFixture f(std::move(o), false);
  socklen_t len = sizeof sin;
  getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len);
  CHECK(f.proxy_addr == "127.0.0.1:" + std::to_string(ntohs(sin.sin_port)));
  auto r = f.curl({}, f.url("api.example.test", "/echo", false));
  CHECK(status_of(r) == 200);
}

TEST_CASE("hop-by-hop and proxy headers are not forwarded, stats count requests per host") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  ProxyFixture f(std::move(o), false);
  auto r = f.curl(
      {"-H", "Proxy-Authorization: Basic c2VjcmV0", "-H", "Proxy-Connection: keep-alive", "-H",
       "Connection: X-Drop-Me", "-H", "X-Drop-Me: 1", "-H", "Keep-Alive: 5", "-H", "X-Keep: 2"},
      f.url("api.example.test", "/echo", false));
  CHECK(status_of(r) == 200);
  std::string seen = read_text(f.upstream_log);
  CHECK(seen.find("Proxy-Authorization") == std::string::npos);
  CHECK(seen.find("Proxy-Connection") == std::string::npos);
  CHECK(seen.find("X-Drop-Me") == std::string::npos);
  CHECK(seen.find("Keep-Alive") == std::string::npos);
  CHECK(seen.find("X-Keep") != std::string::npos);
  CHECK(status_of(f.curl({}, f.url("blocked.example.test", "/", false))) == 403);
  f.audit.wait_for(2);
  auto stats = f.proxy->stats();
  CHECK(stats.requests == 2);
  CHECK(stats.denied == 1);
  CHECK(stats.requests_per_host["api.example.test"] == 1);
  CHECK(stats.requests_per_host["blocked.example.test"] == 1);
  CHECK(stats.bytes_down > 0);
}

TEST_CASE("a bad option is an error value, not an exception or a crash") {
  ProxyOptions o;
  o.allow_net = {"*"};
  CHECK_FALSE(Proxy::start(o).ok());
  ProxyOptions bad_listener;
  bad_listener.listeners = {ListenerSpec{ListenMode::explicit_proxy, "not-an-address", -1}};
  CHECK_FALSE(Proxy::start(bad_listener).ok());
  ProxyOptions bad_secret;
  bad_secret.secrets = {SecretSpec{"GOOD_NAME", "super-secret-value-xyz", {"*"}}};
  auto r = Proxy::start(bad_secret);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().message().find("GOOD_NAME") != std::string::npos);  // names the secret
  CHECK(r.status().message().find("super-secret-value-xyz") == std::string::npos);  // not its value
  ProxyOptions bad_ca;
  bad_ca.extra_ca_files = {"/nonexistent/ca.pem"};
  CHECK_FALSE(Proxy::start(bad_ca).ok());
}

TEST_CASE("connections over max_connections are refused at once, others keep working") {
  ProxyOptions o;
  o.allow_net = {"api.example.test"};
  o.limits.max_connections = 2;
  ProxyFixture f(std::move(o), false);
  RawClient a(f.proxy_addr), b(f.proxy_addr);
  usleep(100000);  // both accepted and counted
  RawClient c(f.proxy_addr);
  bool closed = false;
  c.read_until_close(2s, &closed);
  CHECK(closed);  // the third is cut off without being served
  // The first two are still served.
  std::string port = std::to_string(f.upstream->port());
  a.send_all("GET http://api.example.test:" + port +
             "/echo HTTP/1.1\r\nHost: api.example.test:" + port + "\r\nConnection: close\r\n\r\n");
  CHECK(response_status(a.read_until_close(5s)) == 200);
}
