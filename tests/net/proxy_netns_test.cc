// The egress proxy serving a sandbox namespace: its guest-facing listeners are the sockets
// SandboxNetwork made inside the namespace, its upstream sockets live in the host's namespace.
// Clients (curl) run inside the sandbox namespace via nsenter, as the guest's programs would
// reach it; the upstream is the proxy tests' HTTPS server on the host's 127.0.0.1.
// Needs root; label `net`.
#include <unistd.h>

#include "../proxy/harness.h"
#include "net/netns.h"
#include "net/sandbox_network.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

struct SandboxProxy {
  std::unique_ptr<net::SandboxNetwork> network;
  std::unique_ptr<ProxyFixture> fixture;

  explicit SandboxProxy(std::vector<std::string> allow_net) {
    auto n = net::SandboxNetwork::create({});
    REQUIRE_MESSAGE(n.ok(), n.status().to_string());
    network = std::move(n).value();
    ProxyOptions o;
    o.allow_net = std::move(allow_net);
    o.listeners = network->take_proxy_listeners();
    fixture = std::make_unique<ProxyFixture>(std::move(o));
  }

  // Runs a command inside the sandbox namespace.
  CommandResult inside(std::vector<std::string> argv) {
    std::string ns =
        "/proc/" + std::to_string(getpid()) + "/fd/" + std::to_string(network->netns_fd());
    argv.insert(argv.begin(), {"nsenter", "--net=" + ns, "--"});
    return run(argv, 30s);
  }

  CommandResult curl(std::vector<std::string> extra, const std::string& url) {
    std::vector<std::string> argv = {"curl", "-sS",      "--max-time",      "10", "--noproxy",
                                     "",     "--cacert", fixture->proxy_ca, "-w", "\n%{http_code}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    return inside(argv);
  }
};

}  // namespace

TEST_CASE("from inside the namespace, the explicit proxy reaches an allowed host") {
  SandboxProxy s({"api.example.test"});
  CHECK(s.fixture->proxy->listen_addresses().at(0) == "10.213.0.1:3128");
  auto r = s.curl({"-x", "http://10.213.0.1:3128"},
                  s.fixture->url("api.example.test", "/echo?from=sandbox"));
  INFO(r.err);
  CHECK(status_of(r) == 200);
  CHECK(body_of(r).find("/echo?from=sandbox") != std::string::npos);
  auto events = s.fixture->audit.wait_for(1);
  REQUIRE(!events.empty());
  // The client came from inside the namespace (the only place 10.213.0.1 exists).
  CHECK(events.back().client.rfind("10.213.0.1", 0) == 0);
  CHECK(events.back().host == "api.example.test");
}

TEST_CASE("from inside the namespace, transparent HTTPS on port 443 reaches an allowed host") {
  SandboxProxy s({"api.example.test"});
  // The name resolves to the proxy's address, as airlock's DNS responder answers.
  auto r = s.curl({"--resolve", "api.example.test:443:10.213.0.1"},
                  "https://api.example.test/echo?transparent=1");
  INFO(r.err);
  CHECK(status_of(r) == 200);
  CHECK(body_of(r).find("transparent=1") != std::string::npos);
}

TEST_CASE("from inside the namespace, a host outside allow_net gets 403") {
  SandboxProxy s({"api.example.test"});
  auto r = s.curl({"-v", "-x", "http://10.213.0.1:3128"},
                  s.fixture->url("blocked.example.test", "/echo"));
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("403") != std::string::npos);
}

TEST_CASE(
    "from inside the namespace, the host's loopback services and other ports are unreachable") {
  SandboxProxy s({"api.example.test"});
  // The upstream listens on the host's 127.0.0.1: direct access must fail.
  auto direct = s.curl({}, s.fixture->url("127.0.0.1", "/echo"));
  CHECK(direct.exit_code != 0);
  CHECK(status_of(direct) == 0);
  // Another port on the proxy's address.
  auto other = s.curl({}, "http://10.213.0.1:8080/");
  CHECK(other.exit_code != 0);
  // An outside address: there is no route at all, connect() fails at once and nothing is sent.
  auto outside = s.curl({}, "http://192.0.2.1/");
  CHECK(outside.exit_code != 0);
  int err = 0;
  REQUIRE(net::run_in_netns(s.network->netns_fd(), [&]() -> Status {
            UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
            sockaddr_in sa{};
            sa.sin_family = AF_INET;
            sa.sin_port = htons(80);
            inet_pton(AF_INET, "192.0.2.1", &sa.sin_addr);
            if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) err = errno;
            return ok_status();
          }).ok());
  CHECK(err == ENETUNREACH);
  // The upstream saw none of these.
  CHECK(read_text(s.fixture->upstream_log).empty());
}
