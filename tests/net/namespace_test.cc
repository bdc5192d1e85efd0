// The sandbox network namespace is closed: only the proxy's ports and the DNS responder answer,
// nothing is routed, forwarding is off. Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN); label `net`.
//
// The test plays the guest: it holds the tap fd and writes raw Ethernet frames into it. Every
// frame stays inside the namespace the test created (it has no route anywhere else).
#include <arpa/inet.h>
#include <dirent.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <thread>

#include "frames.h"
#include "net/netns.h"
#include "net/rtnetlink.h"
#include "net/sandbox_network.h"
#include "net/tap.h"

using namespace airlock;
using namespace airlock::net;
using namespace airlock::testnet;
using namespace std::chrono_literals;

namespace {

const uint32_t kHost = ip("10.213.0.1");
const uint32_t kGuest = ip("10.213.0.2");

int count_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - 1;  // the DIR's own fd
}

int count_threads() {
  int n = 0;
  DIR* d = opendir("/proc/self/task");
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n;
}

std::unique_ptr<SandboxNetwork> make_network(NetworkConfig cfg = {}) {
  auto n = SandboxNetwork::create(std::move(cfg));
  if (!n.ok()) FAIL("SandboxNetwork::create: " << n.status().to_string());
  return std::move(n).value();
}

// Answers the kernel's ARP requests for the guest address while waiting for `want`.
std::optional<Frame> await(int tap, std::chrono::milliseconds timeout,
                           const std::function<bool(const Frame&)>& want,
                           std::vector<Frame>* unexpected = nullptr) {
  return read_until(tap, timeout, [&](const Frame& f) {
    if (f.ethertype() == kEthArp && f.l3_len() >= 28 && be16(f.l3() + 6) == 1) {
      uint32_t target;
      memcpy(&target, f.l3() + 24, 4);
      if (target == kGuest) {
        Bytes a;
        a.u16(1), a.u16(kEthIpv4), a.u8(6), a.u8(4), a.u16(2);
        a.raw(kGuestMac.data(), 6), a.addr(kGuest), a.raw(f.l3() + 8, 6), a.raw(f.l3() + 14, 4);
        Mac dst;
        memcpy(dst.data(), f.l3() + 8, 6);
        write_frame(tap, eth(dst, kGuestMac, kEthArp, a.b));
        return false;
      }
    }
    if (want(f)) return true;
    if (unexpected) unexpected->push_back(f);
    return false;
  });
}

// Resolves the host side's MAC the way a guest does (and teaches the kernel ours).
Mac host_mac(int tap) {
  REQUIRE(write_frame(tap, arp_request(kGuest, kHost)));
  auto reply = await(tap, 2s, [](const Frame& f) {
    return f.ethertype() == kEthArp && f.l3_len() >= 28 && be16(f.l3() + 6) == 2;
  });
  REQUIRE(reply.has_value());
  uint32_t sender;
  memcpy(&sender, reply->l3() + 14, 4);
  CHECK(sender == kHost);
  Mac m;
  memcpy(m.data(), reply->l3() + 8, 6);
  return m;
}

std::vector<uint8_t> dns_query(uint16_t id, uint16_t qtype) {
  Bytes q;
  q.u16(id), q.u16(0x0100), q.u16(1), q.u16(0), q.u16(0), q.u16(0);
  for (const char* label : {"api", "openai", "com"}) {
    q.u8(static_cast<uint8_t>(strlen(label)));
    q.raw(label, strlen(label));
  }
  q.u8(0), q.u16(qtype), q.u16(1);
  return q.b;
}

bool is_udp_from(const Frame& f, uint32_t src, uint16_t sport) {
  return f.is_ipv4() && f.proto() == 17 && f.ip_src() == src && be16(f.l4()) == sport;
}

}  // namespace

TEST_CASE("the namespace has no route out and forwarding is off") {
  auto net = make_network();
  std::vector<Ipv4Route> routes;
  std::string forward, tap_v6;
  REQUIRE(run_in_netns(net->netns_fd(), [&]() -> Status {
            AIRLOCK_ASSIGN_OR_RETURN(Rtnetlink rt, Rtnetlink::open());
            AIRLOCK_ASSIGN_OR_RETURN(routes, rt.ipv4_routes());
            AIRLOCK_ASSIGN_OR_RETURN(forward, read_sysctl("net/ipv4/ip_forward"));
            std::string p = "net/ipv6/conf/" + net->tap_name() + "/disable_ipv6";
            auto v6 = read_sysctl(p.c_str());
            tap_v6 = v6.ok() ? *v6 : "absent";
            return ok_status();
          }).ok());
  CHECK(forward == "0");
  CHECK((tap_v6 == "1" || tap_v6 == "absent"));
  REQUIRE(!routes.empty());
  int main_routes = 0;
  for (const auto& r : routes) {
    CHECK(r.prefix_len != 0);      // no default route in any table
    CHECK(r.gateway.s_addr == 0);  // nothing goes via a gateway
    if (r.table == 254 /* RT_TABLE_MAIN */) {
      ++main_routes;
      CHECK(r.dst.s_addr == ip("10.213.0.0"));
      CHECK(r.prefix_len == 30);
    }
  }
  CHECK(main_routes == 1);  // just the link's connected /30
}

TEST_CASE("the listeners are bound to the host side inside the namespace") {
  auto net = make_network();
  auto listeners = net->take_proxy_listeners();
  REQUIRE(listeners.size() == 3);
  CHECK(listeners[0].mode == ListenMode::explicit_proxy);
  CHECK(listeners[1].mode == ListenMode::transparent_https);
  CHECK(listeners[2].mode == ListenMode::transparent_http);
  const uint16_t ports[] = {3128, 443, 80};
  for (size_t i = 0; i < 3; ++i) {
    UniqueFd fd(listeners[i].fd);
    sockaddr_in sa{};
    socklen_t len = sizeof sa;
    REQUIRE(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len) == 0);
    CHECK(sa.sin_addr.s_addr == kHost);
    CHECK(ntohs(sa.sin_port) == ports[i]);
    int listening = 0;
    len = sizeof listening;
    getsockopt(fd.get(), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
    CHECK(listening == 1);
    CHECK(listeners[i].address == "10.213.0.1:" + std::to_string(ports[i]));
  }
  CHECK(net->take_proxy_listeners().empty());
}

TEST_CASE("DNS over the tap: A gets the proxy address, others refused") {
  auto net = make_network();
  UniqueFd tap = net->take_tap();
  REQUIRE(tap.valid());
  Mac gw = host_mac(tap.get());

  auto ask = [&](uint16_t id, uint16_t qtype) {
    REQUIRE(write_frame(tap.get(), eth(gw, kGuestMac, kEthIpv4,
                                       udp(kGuest, kHost, 40000 + id, 53, dns_query(id, qtype)))));
    auto reply = await(tap.get(), 2s, [](const Frame& f) { return is_udp_from(f, kHost, 53); });
    REQUIRE(reply.has_value());
    const uint8_t* dns = reply->l4() + 8;
    size_t dns_len = reply->l4_len() - 8;
    REQUIRE(dns_len >= 12);
    CHECK(be16(dns) == id);
    CHECK(be16(reply->l4() + 2) == 40000 + id);
    return std::vector<uint8_t>(dns, dns + dns_len);
  };

  auto a = ask(1, 1);
  CHECK((a[3] & 0xf) == 0);
  CHECK(be16(&a[6]) == 1);
  uint32_t answer;
  memcpy(&answer, &a[a.size() - 4], 4);
  CHECK(answer == kHost);

  auto aaaa = ask(2, 28);
  CHECK((aaaa[3] & 0xf) == 0);
  CHECK(be16(&aaaa[6]) == 0);

  for (uint16_t t : {15, 16, 255}) {
    auto r = ask(static_cast<uint16_t>(10 + t), t);
    CHECK((r[3] & 0xf) == 5);
    CHECK(be16(&r[6]) == 0);
  }
  auto st = net->dns_stats();
  CHECK(st.answered_a == 1);
  CHECK(st.nodata_aaaa == 1);
  CHECK(st.refused == 3);
}

TEST_CASE("TCP to the proxy ports is accepted, every other port is reset") {
  auto net = make_network();
  auto listeners = net->take_proxy_listeners();  // keep them open for the whole test
  std::vector<UniqueFd> keep;
  for (auto& l : listeners) keep.emplace_back(l.fd);
  UniqueFd tap = net->take_tap();
  Mac gw = host_mac(tap.get());

  auto syn = [&](uint16_t dport) -> uint8_t {
    uint16_t sport = static_cast<uint16_t>(50000 + dport % 1000);
    REQUIRE(
        write_frame(tap.get(), eth(gw, kGuestMac, kEthIpv4, tcp_syn(kGuest, kHost, sport, dport))));
    auto reply = await(tap.get(), 2s, [&](const Frame& f) {
      return f.is_ipv4() && f.proto() == 6 && be16(f.l4()) == dport && be16(f.l4() + 2) == sport;
    });
    REQUIRE(reply.has_value());
    return reply->l4()[13];
  };
  for (uint16_t port : {3128, 443, 80}) CHECK(syn(port) == (kSyn | kAck));
  for (uint16_t port : {22, 53, 8080, 3129, 444, 1}) {
    uint8_t flags = syn(port);
    CHECK((flags & kRst) != 0);
    CHECK((flags & kSyn) == 0);
  }
}

TEST_CASE("packets to any other address die in the namespace") {
  auto net = make_network();
  UniqueFd tap = net->take_tap();
  Mac gw = host_mac(tap.get());
  // Constructed frames written into our own tap: the namespace has no route, so they go
  // nowhere; what we check is that nothing comes back either.
  const uint32_t outside[] = {ip("8.8.8.8"), ip("1.1.1.1"), ip("169.254.169.254"), ip("127.0.0.1"),
                              ip("10.213.0.3")};
  for (uint32_t dst : outside) {
    REQUIRE(write_frame(
        tap.get(), eth(gw, kGuestMac, kEthIpv4, udp(kGuest, dst, 40053, 53, dns_query(7, 1)))));
    REQUIRE(write_frame(tap.get(), eth(gw, kGuestMac, kEthIpv4, tcp_syn(kGuest, dst, 40443, 443))));
    REQUIRE(write_frame(tap.get(), eth(gw, kGuestMac, kEthIpv4, icmp_echo(kGuest, dst))));
  }
  std::vector<Frame> got;
  await(
      tap.get(), 500ms, [](const Frame&) { return false; }, &got);
  for (const auto& f : got) {
    // Only ARP probes for the guest (answered by await) are allowed to show up.
    CHECK_MESSAGE(f.ethertype() == kEthArp, "unexpected frame, ethertype " << f.ethertype());
  }
  CHECK(net->dns_stats().received == 0);
}

TEST_CASE("ARP for anything but the host address, and ping, get no answer") {
  auto net = make_network();
  UniqueFd tap = net->take_tap();
  Mac gw = host_mac(tap.get());  // the one ARP answer there is
  for (const char* target : {"10.213.0.3", "127.0.0.1", "8.8.8.8", "10.213.0.0"})
    REQUIRE(write_frame(tap.get(), arp_request(kGuest, ip(target))));
  REQUIRE(write_frame(tap.get(), eth(gw, kGuestMac, kEthIpv4, icmp_echo(kGuest, kHost))));
  std::vector<Frame> got;
  await(
      tap.get(), 500ms, [](const Frame&) { return false; }, &got);
  for (const auto& f : got) {
    bool arp_reply = f.ethertype() == kEthArp && be16(f.l3() + 6) == 2;
    CHECK_FALSE(arp_reply);
    CHECK_FALSE(f.is_ipv4());
  }
}

// Sends ICMPv6 echo requests to all nodes until one is answered or `timeout` passes.
// (With IPv6 off no IPv6 frame may come back at all.)
bool ipv6_answers(int tap, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (!write_frame(tap, icmpv6_echo_all_nodes())) return false;
    // The answer is an echo reply, or first the kernel's neighbour solicitation for fe80::2
    // (it must resolve us before replying).
    auto reply = read_until(tap, 200ms, [](const Frame& f) {
      if (f.ethertype() != kEthIpv6 || f.l3_len() < 40 + 24 || f.l3()[6] != 58) return false;
      const uint8_t* icmp = f.l3() + 40;
      const uint8_t fe80_2[16] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
      return icmp[0] == 129 || (icmp[0] == 135 && memcmp(icmp + 8, fe80_2, 16) == 0);
    });
    if (reply) return true;
  }
  return false;
}

TEST_CASE("IPv6 is off on the link: nothing answers, though it would if it were on") {
  auto net = make_network();
  UniqueFd tap = net->take_tap();
  CHECK_FALSE(ipv6_answers(tap.get(), 1000ms));
  std::vector<Frame> got;
  REQUIRE(write_frame(tap.get(), icmpv6_echo_all_nodes()));
  read_until(
      tap.get(), 500ms, [](const Frame&) { return false; }, &got);
  for (const auto& f : got) CHECK(f.ethertype() != kEthIpv6);  // no RS, MLD, DAD, nothing

  // Control: the same namespace with IPv6 switched back on for the tap does answer, so the
  // silence above is the setting's doing, not a broken probe.
  auto control = make_network();
  std::string path = "net/ipv6/conf/" + control->tap_name() + "/disable_ipv6";
  Status st = run_in_netns(control->netns_fd(), [&] { return write_sysctl(path.c_str(), "0"); });
  if (st.code() == Errc::not_found) return;  // kernel without IPv6: nothing to prove
  REQUIRE(st.ok());
  UniqueFd control_tap = control->take_tap();
  CHECK(ipv6_answers(control_tap.get(), 5000ms));
}

TEST_CASE("destroying the network releases every fd and thread") {
  {  // warm-up: one-time allocations (thread stacks, libc internals) out of the count
    auto net = make_network();
  }
  int before = count_fds();
  int threads_before = count_threads();
  for (int i = 0; i < 5; ++i) {
    auto net = make_network();
    UniqueFd tap = net->take_tap();
    auto listeners = net->take_proxy_listeners();
    for (auto& l : listeners) ::close(l.fd);
    CHECK(count_fds() > before);  // the namespace fd and the tap are open meanwhile
    CHECK(count_threads() == threads_before + 1);  // the DNS responder
  }
  CHECK(count_fds() == before);
  CHECK(count_threads() == threads_before);
}

TEST_CASE("several networks coexist, each with the same addresses") {
  auto a = make_network();
  auto b = make_network();
  CHECK(a->netns_fd() != b->netns_fd());
  UniqueFd ta = a->take_tap(), tb = b->take_tap();
  Mac ma = host_mac(ta.get());
  Mac mb = host_mac(tb.get());
  CHECK(ma != mb);
}

TEST_CASE("invalid configurations are rejected before anything is created") {
  NetworkConfig bad;
  bad.host_address = "10.213.0.1";
  bad.guest_address = "10.213.1.2";
  CHECK(SandboxNetwork::create(bad).status().code() == Errc::invalid_argument);
  bad = {};
  bad.host_address = "not-an-ip";
  CHECK(SandboxNetwork::create(bad).status().code() == Errc::invalid_argument);
  bad = {};
  bad.guest_address = "10.213.0.3";  // the /30's broadcast address
  CHECK(SandboxNetwork::create(bad).status().code() == Errc::invalid_argument);
  bad = {};
  bad.tap_name = "a-name-that-is-far-too-long";
  CHECK(SandboxNetwork::create(bad).status().code() == Errc::invalid_argument);
}

TEST_CASE("without CAP_SYS_ADMIN the error says what is needed") {
  Status st;
  // Capabilities are per thread: drop them on a scratch thread only.
  std::thread t([&] {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2] = {};
    REQUIRE(syscall(SYS_capget, &hdr, data) == 0);
    for (int cap : {CAP_SYS_ADMIN, CAP_NET_ADMIN}) {
      data[cap / 32].effective &= ~(1u << (cap % 32));
      data[cap / 32].permitted &= ~(1u << (cap % 32));
    }
    REQUIRE(syscall(SYS_capset, &hdr, data) == 0);
    st = SandboxNetwork::create({}).status();
  });
  t.join();
  CHECK(st.code() == Errc::permission_denied);
  CHECK(st.message().find("CAP_SYS_ADMIN") != std::string::npos);
  CHECK(st.message().find("tap_fd") != std::string::npos);
}

TEST_CASE("caller-tap mode adopts a tap and listens in the caller's namespace") {
  // Play the privileged helper: a namespace with a configured tap, made by hand.
  UniqueFd helper_tap;
  auto ns = run_in_new_netns([&]() -> Status {
    AIRLOCK_ASSIGN_OR_RETURN(Tap tap, create_tap("helper0"));
    AIRLOCK_ASSIGN_OR_RETURN(Rtnetlink rt, Rtnetlink::open());
    in_addr host{kHost};
    AIRLOCK_RETURN_IF_ERROR(rt.add_ipv4_address(tap.ifindex, host, 30));
    AIRLOCK_RETURN_IF_ERROR(rt.set_link_up(tap.ifindex));
    helper_tap = std::move(tap.fd);
    return ok_status();
  });
  REQUIRE(ns.ok());

  std::unique_ptr<SandboxNetwork> net;
  REQUIRE(run_in_netns(ns->get(), [&]() -> Status {
            NetworkConfig cfg;
            cfg.tap_fd = helper_tap.release();
            AIRLOCK_ASSIGN_OR_RETURN(net, SandboxNetwork::create(cfg));
            return ok_status();
          }).ok());
  CHECK(!net->owns_namespace());
  CHECK(net->tap_name() == "helper0");
  CHECK(net->take_proxy_listeners().size() == 3);
  UniqueFd tap = net->take_tap();
  Mac gw = host_mac(tap.get());
  REQUIRE(write_frame(
      tap.get(), eth(gw, kGuestMac, kEthIpv4, udp(kGuest, kHost, 40001, 53, dns_query(1, 1)))));
  CHECK(await(tap.get(), 2s, [](const Frame& f) { return is_udp_from(f, kHost, 53); }).has_value());
}

TEST_CASE("caller-tap mode rejects fds that are not a vnet-header tap") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  ::close(fds[1]);
  NetworkConfig cfg;
  cfg.tap_fd = fds[0];  // ownership moves, even on failure
  auto r = SandboxNetwork::create(cfg);
  CHECK(r.status().code() == Errc::invalid_argument);
  CHECK(fcntl(fds[0], F_GETFD) == -1);  // closed by create()

  UniqueFd plain;
  auto ns = run_in_new_netns([&]() -> Status {
    UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!fd) return errno_status("open tun");
    ifreq ifr{};
    strcpy(ifr.ifr_name, "plain0");
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI;  // no vnet header
    if (ioctl(fd.get(), TUNSETIFF, &ifr) != 0) return errno_status("TUNSETIFF");
    plain = std::move(fd);
    return ok_status();
  });
  REQUIRE(ns.ok());
  cfg.tap_fd = plain.release();
  r = SandboxNetwork::create(cfg);
  CHECK(r.status().code() == Errc::invalid_argument);
  CHECK(r.status().message().find("IFF_VNET_HDR") != std::string::npos);
}
