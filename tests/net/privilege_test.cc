// Privileges of the two network modes, through the sandbox's network wiring (GuestNetwork, what
// Sandbox::create uses before it starts the machine). A forked child drops every capability
// (uid 0 without capabilities is as powerless here as any user) and then: the namespace mode
// fails with permission_denied naming the capabilities and the tap_fd alternative; the tap_fd
// mode with a tap a privileged parent prepared works, serves the proxy on 10.213.0.1 and leaves
// the caller's fd open. Bad tap fds are refused clearly. Label `net`; needs root for the setup.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

#include "airlock/sandbox.hpp"
#include "base/fd.h"
#include "net/netns.h"
#include "net/rtnetlink.h"
#include "net/tap.h"
#include "sandbox/network.h"

using namespace airlock;

namespace {

Status drop_all_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capset, &header, data) != 0) return errno_status("capset");
  return ok_status();
}

// Runs `body` in a forked child (single-threaded until `body` starts threads) and returns what
// it wrote: "OK" or an error text. The child never returns into doctest.
std::string in_child(const std::function<std::string()>& body) {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(p[0]);
    std::string out = body();
    (void)!::write(p[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(p[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(p[0], buf, sizeof buf)) > 0;) out.append(buf, size_t(n));
  ::close(p[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFEXITED(status));
  return out;
}

SandboxOptions net_options() {
  SandboxOptions o;
  o.allow_net = {"api.example.test"};
  return o;
}

// A scratch namespace with a tap, optionally with the host side's address and with ports below
// 1024 open to unprivileged binds there, made with privilege (what a privileged helper does).
struct PreparedTap {
  UniqueFd ns, tap;
  explicit PreparedTap(bool with_address, bool low_ports_unprivileged = true) {
    auto made = net::run_in_new_netns([&]() -> Status {
      if (low_ports_unprivileged)
        AIRLOCK_RETURN_IF_ERROR(net::write_sysctl("net/ipv4/ip_unprivileged_port_start", "0"));
      AIRLOCK_ASSIGN_OR_RETURN(net::Tap t, net::create_tap("altap0"));
      AIRLOCK_ASSIGN_OR_RETURN(net::Rtnetlink rt, net::Rtnetlink::open());
      AIRLOCK_RETURN_IF_ERROR(rt.set_link_up(1));
      if (with_address) {
        in_addr host{};
        host.s_addr = htonl(0x0AD50001);  // 10.213.0.1
        AIRLOCK_RETURN_IF_ERROR(rt.add_ipv4_address(t.ifindex, host, 30));
      }
      AIRLOCK_RETURN_IF_ERROR(rt.set_link_up(t.ifindex));
      tap = std::move(t.fd);
      return ok_status();
    });
    REQUIRE_MESSAGE(made.ok(), made.status().to_string());
    ns = std::move(made).value();
  }
};

}  // namespace

TEST_CASE("namespace mode without privilege fails with a clear error") {
  std::string out = in_child([]() -> std::string {
    if (Status st = drop_all_capabilities(); !st.ok()) return st.to_string();
    auto g = sandbox::GuestNetwork::create(net_options());
    if (g.ok()) return "created without privilege";
    return std::to_string(static_cast<int>(g.status().code())) + " " + g.status().to_string();
  });
  INFO(out);
  CHECK(out.rfind(std::to_string(static_cast<int>(Errc::permission_denied)) + " ", 0) == 0);
  CHECK(out.find("CAP_SYS_ADMIN") != std::string::npos);
  CHECK(out.find("CAP_NET_ADMIN") != std::string::npos);
  CHECK(out.find("tap_fd") != std::string::npos);
}

TEST_CASE("tap_fd mode works without privilege on a tap a helper prepared") {
  PreparedTap prepared(/*with_address=*/true);
  const int tap_fd = prepared.tap.get();
  const int ns_fd = prepared.ns.get();
  std::string out = in_child([&]() -> std::string {
    // The helper's part ends here: into the tap's namespace, then no capabilities at all.
    if (::setns(ns_fd, CLONE_NEWNET) != 0) return "setns failed";
    if (Status st = drop_all_capabilities(); !st.ok()) return st.to_string();
    if (::unshare(CLONE_NEWNET) == 0) return "capabilities were not dropped";
    SandboxOptions o = net_options();
    o.tap_fd = tap_fd;
    auto g = sandbox::GuestNetwork::create(o);
    if (!g.ok()) return g.status().to_string();
    if (!(*g)->device()) return "no virtio-net device";
    // The proxy's explicit listener answers on the host side's address.
    UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(3128);
    sa.sin_addr.s_addr = htonl(0x0AD50001);
    if (::connect(c.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0)
      return errno_status("connect 10.213.0.1:3128").to_string();
    const char req[] = "CONNECT blocked.example.test:443 HTTP/1.1\r\nHost: x\r\n\r\n";
    (void)!::write(c.get(), req, sizeof req - 1);
    char buf[64] = {};
    ssize_t n = ::read(c.get(), buf, sizeof buf - 1);
    std::string reply = n > 0 ? std::string(buf, size_t(n)) : "";
    if (reply.rfind("HTTP/1.1 403", 0) != 0) return "proxy reply: " + reply;
    g->reset();
    if (::fcntl(tap_fd, F_GETFD) < 0) return "the caller's tap fd was closed";
    return "OK";
  });
  CHECK(out == "OK");

  // Without the helper opening the low ports (443, 80, 53), the error says what is missing.
  PreparedTap closed(/*with_address=*/true, /*low_ports_unprivileged=*/false);
  const int closed_fd = closed.tap.get(), closed_ns = closed.ns.get();
  std::string refused = in_child([&]() -> std::string {
    if (::setns(closed_ns, CLONE_NEWNET) != 0) return "setns failed";
    if (Status st = drop_all_capabilities(); !st.ok()) return st.to_string();
    SandboxOptions o = net_options();
    o.tap_fd = closed_fd;
    auto g = sandbox::GuestNetwork::create(o);
    return g.ok() ? "created" : g.status().to_string();
  });
  INFO(refused);
  CHECK(refused.find("CAP_NET_BIND_SERVICE") != std::string::npos);
  CHECK(refused.find("ip_unprivileged_port_start") != std::string::npos);
}

TEST_CASE("tap_fd that is no tap or has no address is refused clearly") {
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  SandboxOptions o = net_options();
  o.tap_fd = p[0];
  auto not_tap = sandbox::GuestNetwork::create(o);
  REQUIRE(!not_tap.ok());
  CHECK(not_tap.status().code() == Errc::invalid_argument);
  CHECK(not_tap.status().to_string().find("tun/tap") != std::string::npos);
  CHECK(::fcntl(p[0], F_GETFD) >= 0);  // still the caller's
  ::close(p[0]);
  ::close(p[1]);

  SandboxOptions no_allow;
  no_allow.tap_fd = 0;
  auto refused = sandbox::GuestNetwork::create(no_allow);
  REQUIRE(!refused.ok());
  CHECK(refused.status().to_string().find("tap_fd needs allow_net") != std::string::npos);

  PreparedTap bare(/*with_address=*/false);
  const int tap_fd = bare.tap.get();
  Status st = net::run_in_netns(bare.ns.get(), [&]() -> Status {
    SandboxOptions o2 = net_options();
    o2.tap_fd = tap_fd;
    auto g = sandbox::GuestNetwork::create(o2);
    if (g.ok()) return Status(Errc::internal, "created on a tap without the host address");
    return g.status();
  });
  INFO(st.to_string());
  CHECK(st.code() == Errc::invalid_argument);
  CHECK(st.to_string().find("address not configured") != std::string::npos);
}

TEST_CASE("Sandbox::create's early tap_fd check passes a helper's tap and refuses the rest") {
  PreparedTap prepared(/*with_address=*/true);
  const int tap_fd = prepared.tap.get();
  // The check needs no privilege and takes no ownership.
  std::string out = in_child([&]() -> std::string {
    if (Status st = drop_all_capabilities(); !st.ok()) return st.to_string();
    SandboxOptions o = net_options();
    o.tap_fd = tap_fd;
    Status st = sandbox::GuestNetwork::check_caller_tap(o);
    return st.ok() ? "OK" : st.to_string();
  });
  CHECK(out == "OK");
  CHECK(::fcntl(tap_fd, F_GETFD) >= 0);

  SandboxOptions o = net_options();
  CHECK(sandbox::GuestNetwork::check_caller_tap(o).ok());  // tap_fd -1: namespace mode
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  o.tap_fd = p[0];
  Status not_tap = sandbox::GuestNetwork::check_caller_tap(o);
  CHECK(not_tap.code() == Errc::invalid_argument);
  CHECK(not_tap.to_string().find("tap_fd (" + std::to_string(p[0]) + ")") != std::string::npos);
  CHECK(not_tap.to_string().find("tun/tap") != std::string::npos);
  ::close(p[0]);
  ::close(p[1]);
  Status closed = sandbox::GuestNetwork::check_caller_tap(o);
  CHECK(closed.code() == Errc::invalid_argument);
  CHECK(closed.to_string().find("not an open fd") != std::string::npos);
  o.tap_fd = tap_fd;
  o.allow_net.clear();
  CHECK(sandbox::GuestNetwork::check_caller_tap(o).to_string().find("tap_fd needs allow_net") !=
        std::string::npos);
}
