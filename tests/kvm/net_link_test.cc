// A hostile guest on the link itself: from inside a sandbox with allow_net, Debian's python3
// (copied into the guest) sends raw frames on eth0 (tests/kvm/link_tricks.py): ARP spoofing of the
// gateway and claims of other addresses, gratuitous ARP, IPv6 router advertisements, neighbour
// discovery and traffic to the host side's would-be link-local address, IPv4 with martian,
// spoofed or broadcast addresses and source routes, VLAN-tagged frames and other ethertypes.
// Checked: the host side only ever answers as 10.213.0.1 (ARP, IPv4), never over IPv6; no
// listener on the sandbox namespace's loopback or the host's loopback is reached; the sandbox
// namespace learns no IPv6 address or route and keeps its IPv4 routes; the host's namespace shows
// no trace; and the proxy still serves the guest afterwards. Label `kvm`; needs root.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "../proxy/harness.h"
#include "airlock/sandbox.hpp"
#include "base/fd.h"
#include "guest_programs.h"
#include "net/netns.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

namespace {

ExecResult sh(Sandbox& sb, const std::string& cmd) {
  ExecOptions eo;
  eo.timeout = Millis(120000);
  auto r = sb.sh(cmd, eo);
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

// A listener (TCP and UDP on one port) on 127.0.0.1 of whatever namespace the calling thread is
// in. Nothing from the guest may ever reach it.
struct LoopbackTraps {
  UniqueFd tcp, udp;
  int port = 0;
  Status open() {
    tcp = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    udp = UniqueFd(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!tcp || !udp) return errno_status("socket");
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(tcp.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      return errno_status("bind tcp");
    if (::listen(tcp.get(), 16) != 0) return errno_status("listen");
    socklen_t len = sizeof sa;
    if (::getsockname(tcp.get(), reinterpret_cast<sockaddr*>(&sa), &len) != 0)
      return errno_status("getsockname");
    port = ntohs(sa.sin_port);
    if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      return errno_status("bind udp");
    return ok_status();
  }
  // A completed TCP connection stays queued even if the peer went away; a datagram stays too.
  std::string reached() const {
    std::string what;
    int c = ::accept4(tcp.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) {
      ::close(c);
      what += "tcp ";
    }
    char b[64];
    if (::recv(udp.get(), b, sizeof b, 0) >= 0) what += "udp";
    return what;
  }
};

// The sandbox's network namespace, found as the one open fd of this process that refers to a
// network namespace other than its own (the test creates exactly one sandbox).
std::string sandbox_netns_path() {
  std::error_code ec;
  const std::string own = std::filesystem::read_symlink("/proc/self/ns/net", ec).string();
  std::string found;
  for (const auto& e : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    auto target = std::filesystem::read_symlink(e.path(), ec).string();
    if (ec || target.rfind("net:[", 0) != 0 || target == own) continue;
    REQUIRE_MESSAGE(found.empty(), "more than one foreign network namespace fd");
    found = "/proc/" + std::to_string(::getpid()) + "/fd/" + e.path().filename().string();
  }
  REQUIRE_MESSAGE(!found.empty(), "no sandbox network namespace fd found");
  return found;
}

// `ip ARGS` in the namespace at `ns_path` ("" = the test's own namespace).
std::string ip(const std::string& ns_path, const std::vector<std::string>& args) {
  std::vector<std::string> argv;
  if (!ns_path.empty()) argv = {"nsenter", "--net=" + ns_path};
  argv.push_back("ip");
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run(argv, 20s);
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  return r.out;
}

// Frames the host side of the tap received (from the guest), from /proc/net/dev as seen in the
// namespace (/sys shows the namespace of whoever mounted it, not the reader's).
uint64_t rx_packets(const std::string& ns_path, const std::string& dev) {
  auto r = run({"nsenter", "--net=" + ns_path, "cat", "/proc/net/dev"}, 20s);
  REQUIRE(r.exit_code == 0);
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    name.erase(0, name.find_first_not_of(' '));
    if (name != dev) continue;
    std::istringstream fields(line.substr(colon + 1));
    uint64_t bytes = 0, packets = 0;
    fields >> bytes >> packets;
    return packets;
  }
  FAIL("no " << dev << " in the namespace's /proc/net/dev: " << r.out);
  return 0;
}

struct Frame {
  std::map<std::string, std::string> f;
  std::string get(const std::string& k) const {
    auto it = f.find(k);
    return it == f.end() ? "" : it->second;
  }
  std::string line;
};

struct Report {
  std::map<std::string, std::string> keys;
  std::vector<Frame> frames;
  bool complete = false;
};

Report parse_report(const std::string& out) {
  Report r;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line == "END") r.complete = true;
    size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    std::string key = line.substr(0, sp);
    if (key != "FRAME") {
      r.keys[key] = line.substr(sp + 1);
      continue;
    }
    Frame fr;
    fr.line = line;
    std::istringstream words(line.substr(sp + 1));
    for (std::string w; words >> w;) {
      size_t eq = w.find('=');
      if (eq != std::string::npos) fr.f[w.substr(0, eq)] = w.substr(eq + 1);
    }
    r.frames.push_back(std::move(fr));
  }
  return r;
}

bool mentions_any(const std::string& text, const std::vector<std::string>& needles) {
  for (const auto& n : needles)
    if (!n.empty() && text.find(n) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("a guest forging ARP and IPv6 and raw frames on its link reaches nothing") {
  // A plain HTTP upstream on the host's loopback, for the check that the link still works.
  Upstream upstream(nullptr);
  LoopbackTraps host_traps;
  REQUIRE(host_traps.open().ok());

  SandboxOptions o;
  o.allow_net = {"api.example.test"};
  o.resolve_override["api.example.test"] = "127.0.0.1";
  o.boot_timeout = Millis(240000);
  if (std::getenv("AIRLOCK_TEST_CONSOLE"))
    o.on_console = [](std::string_view s) { (void)!fwrite(s.data(), 1, s.size(), stderr); };
  auto created = Sandbox::create(std::move(o));
  REQUIRE_MESSAGE(created.ok(), created.status().to_string());
  auto sb = std::move(created).value();

  const std::string ns = sandbox_netns_path();
  LoopbackTraps ns_traps;
  {
    UniqueFd ns_fd(::open(ns.c_str(), O_RDONLY | O_CLOEXEC));
    REQUIRE(ns_fd.valid());
    Status st = net::run_in_netns(ns_fd.get(), [&] { return ns_traps.open(); });
    REQUIRE_MESSAGE(st.ok(), st.to_string());
  }
  const auto ns_routes_before = ip(ns, {"-4", "route", "show", "table", "all"});
  const auto rx_before = rx_packets(ns, "airlock0");

  upload_python(*sb, "import socket, struct, select, time");
  REQUIRE(sb->fs()
              .upload(std::string(AIRLOCK_SOURCE_DIR) + "/tests/kvm/link_tricks.py",
                      "/root/link_tricks.py", 0644)
              .ok());
  const std::string py = "/usr/bin/python3.11 -S -B /root/link_tricks.py ";
  const std::string ports =
      std::to_string(host_traps.port) + " " + std::to_string(ns_traps.port) + " 2>&1";

  auto tricks = sh(*sb, py + "tricks " + ports);
  INFO(tricks.stdout);
  REQUIRE(tricks.exit_code == 0);
  Report rep = parse_report(tricks.stdout);
  REQUIRE(rep.complete);
  const std::string host_mac = rep.keys["HOST_MAC"], own_mac = rep.keys["OWN_MAC"],
                    fake_mac = rep.keys["FAKE_MAC"];
  REQUIRE(host_mac.size() == 17);
  const int sent = std::stoi(rep.keys["SENT"]);
  CHECK(sent >= 90);  // 98 when every trick ran
  MESSAGE("guest sent " << sent << " forged frames; the host side sent " << rep.frames.size());

  // Everything the host side sent back: ARP and IPv4 only, always as 10.213.0.1 from its own
  // MAC, never a SYN-ACK (no listener was reached), nothing over IPv6 or another ethertype.
  bool saw_host_arp_reply = false;
  for (const auto& fr : rep.frames) {
    INFO(fr.line);
    const std::string kind = fr.get("kind");
    CHECK(fr.get("src_mac") == host_mac);
    if (kind == "arp") {
      CHECK(fr.get("spa") == "10.213.0.1");
      CHECK(fr.get("sha") == host_mac);
      if (fr.get("op") == "2") saw_host_arp_reply = true;
    } else if (kind == "ipv4") {
      CHECK(fr.get("src") == "10.213.0.1");
      if (fr.get("proto") == "6") CHECK((std::stoi(fr.get("flags")) & 0x12) != 0x12);
    } else {
      FAIL_CHECK("the host side sent a " << kind << " frame");
    }
  }
  CHECK(saw_host_arp_reply);  // the capture itself works

  // The frames arrived at the host side's stack (so "no answer" is not "never delivered").
  const auto rx_after = rx_packets(ns, "airlock0");
  CHECK(rx_after - rx_before >= static_cast<uint64_t>(sent));

  // Nothing reached a listener on either loopback.
  CHECK(host_traps.reached() == "");
  CHECK(ns_traps.reached() == "");

  // The sandbox namespace: still no IPv6 at all, no new IPv4 route, forwarding off, and no
  // neighbour entry for its own or loopback addresses.
  CHECK(ip(ns, {"-6", "addr", "show"}) == "");
  CHECK(ip(ns, {"-6", "route", "show", "table", "all"}) == "");
  CHECK(ip(ns, {"-4", "route", "show", "table", "all"}) == ns_routes_before);
  {
    auto fwd = run({"nsenter", "--net=" + ns, "cat", "/proc/sys/net/ipv4/ip_forward"}, 20s);
    CHECK(fwd.out == "0\n");
    auto neigh = ip(ns, {"neigh", "show"});
    INFO(neigh);
    CHECK(neigh.find("10.213.0.1 ") == std::string::npos);
    CHECK(neigh.find("127.") == std::string::npos);
  }

  // The host's namespace shows no trace of the forged addresses, MACs or IPv6 prefix.
  const std::vector<std::string> forged = {fake_mac,   own_mac,    "10.213.",
                                           "192.0.2.", "2001:db8", "169.254.169.254"};
  for (const std::vector<std::string>& what :
       std::vector<std::vector<std::string>>{{"neigh", "show"},
                                             {"-6", "neigh", "show"},
                                             {"-6", "addr", "show"},
                                             {"-6", "route", "show", "table", "all"},
                                             {"-4", "route", "show", "table", "all"}}) {
    auto out = ip("", what);
    INFO(what.size() << " " << out);
    CHECK_FALSE(mentions_any(out, forged));
  }

  // The guest re-announces its real MAC (it spoofed its own address too); then the proxy and DNS
  // still serve it as before.
  auto restore = sh(*sb, py + "restore " + ports);
  INFO(restore.stdout);
  CHECK(restore.exit_code == 0);
  CHECK(sh(*sb, "nslookup api.example.test 2>&1").stdout.find("10.213.0.1") != std::string::npos);
  auto get = sh(*sb, "wget -q -O - 'http://api.example.test:" + std::to_string(upstream.port()) +
                         "/echo?after=tricks' 2>&1");
  CHECK(get.exit_code == 0);
  CHECK(get.stdout.find("/echo?after=tricks") != std::string::npos);
  {
    auto neigh = ip(ns, {"neigh", "show"});
    INFO(neigh);
    CHECK(neigh.find(own_mac) != std::string::npos);
  }
  CHECK(host_traps.reached() == "");
  CHECK(ns_traps.reached() == "");
  sb->close();
}
