#include "net/sandbox_network.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "net/netns.h"
#include "net/rtnetlink.h"
#include "net/tap.h"

namespace airlock::net {

namespace {

Result<in_addr> parse_ipv4(const std::string& text, const char* what) {
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1)
    return Status(Errc::invalid_argument, std::string(what) + " is not an IPv4 address: " + text);
  return a;
}

Status validate(const NetworkConfig& c, in_addr host, in_addr guest) {
  if (c.prefix_len < 1 || c.prefix_len > 30)
    return Status(Errc::invalid_argument, "network prefix length must be 1..30");
  uint32_t mask = ~0u << (32 - c.prefix_len);
  uint32_t h = ntohl(host.s_addr), g = ntohl(guest.s_addr);
  if ((h & mask) != (g & mask))
    return Status(Errc::invalid_argument, "host and guest addresses are not in one subnet");
  if (h == g) return Status(Errc::invalid_argument, "host and guest addresses are equal");
  for (uint32_t a : {h, g})
    if ((a & ~mask) == 0 || (a & ~mask) == ~mask)
      return Status(Errc::invalid_argument, "an address is the subnet's network or broadcast");
  if (c.explicit_proxy_port == 0 || c.transparent_https_port == 0 || c.transparent_http_port == 0)
    return Status(Errc::invalid_argument, "proxy ports must be non-zero");
  return ok_status();
}

Result<UniqueFd> bound_socket(int type, in_addr addr, uint16_t port, int backlog) {
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return errno_status("socket");
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    return errno_status("SO_REUSEADDR");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = addr;
  sa.sin_port = htons(port);
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &addr, text, sizeof text);
  std::string where = std::string(text) + ":" + std::to_string(port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int err = errno;
    if (err == EADDRNOTAVAIL)
      return Status(Errc::invalid_argument,
                    "bind " + where + ": address not configured on the tap's host side");
    if (err == EACCES && port < 1024)
      return Status(Errc::permission_denied,
                    "bind " + where +
                        ": permission denied; ports below 1024 need CAP_NET_BIND_SERVICE, or "
                        "net.ipv4.ip_unprivileged_port_start lowered in the tap's namespace");
    return errno_status(err, "bind " + where);
  }
  if (type == SOCK_STREAM && ::listen(fd.get(), backlog) != 0)
    return errno_status("listen " + where);
  return fd;
}

std::string ipv4_text(in_addr a) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &a, text, sizeof text);
  return text;
}

}  // namespace

Result<std::unique_ptr<SandboxNetwork>> SandboxNetwork::create(NetworkConfig config) {
  UniqueFd caller_tap(config.tap_fd);  // owned from here on, whatever happens
  config.tap_fd = -1;
  std::unique_ptr<SandboxNetwork> n(new SandboxNetwork());
  AIRLOCK_ASSIGN_OR_RETURN(n->host_, parse_ipv4(config.host_address, "host_address"));
  AIRLOCK_ASSIGN_OR_RETURN(n->guest_, parse_ipv4(config.guest_address, "guest_address"));
  AIRLOCK_RETURN_IF_ERROR(validate(config, n->host_, n->guest_));
  n->config_ = std::move(config);

  if (caller_tap) {
    AIRLOCK_ASSIGN_OR_RETURN(Tap tap, adopt_tap(std::move(caller_tap)));
    n->tap_ = std::move(tap.fd);
    n->tap_name_ = tap.name;
    AIRLOCK_RETURN_IF_ERROR(n->open_sockets());
  } else {
    SandboxNetwork* self = n.get();
    auto ns = run_in_new_netns([self]() -> Status {
      AIRLOCK_RETURN_IF_ERROR(self->configure_namespace());
      return self->open_sockets();
    });
    if (!ns.ok()) return ns.status().prefix("creating the sandbox network");
    n->netns_ = std::move(ns).value();
  }

  if (n->config_.dns) {
    dns::AnswerPolicy policy;
    policy.ipv4 = n->host_;
    policy.ttl = n->config_.dns_ttl;
    AIRLOCK_ASSIGN_OR_RETURN(n->dns_, dns::Responder::start(std::move(n->dns_socket_), policy));
  }
  AIRLOCK_LOG_DEBUG("net", "sandbox network up: tap {} host {} guest {}/{}", n->tap_name_,
                    ipv4_text(n->host_), ipv4_text(n->guest_), n->config_.prefix_len);
  return n;
}

Status SandboxNetwork::configure_namespace() {
  // A fresh namespace starts with forwarding off unless the host set
  // net.core.devconf_inherit_init_net; say it explicitly rather than rely on that.
  AIRLOCK_RETURN_IF_ERROR(write_sysctl("net/ipv4/ip_forward", "0"));
  // Nothing to learn from pinging the host side; one less kernel path for the guest to poke.
  AIRLOCK_RETURN_IF_ERROR(write_sysctl("net/ipv4/icmp_echo_ignore_all", "1"));
  // No IPv6 on the link: no link-local address, no neighbour discovery to play with. The
  // "default" setting applies to the tap created below. Absent when the kernel has no IPv6.
  for (const char* p : {"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/default/disable_ipv6"}) {
    Status st = write_sysctl(p, "1");
    if (!st.ok() && st.code() != Errc::not_found) return st;
  }
  AIRLOCK_ASSIGN_OR_RETURN(Tap tap, create_tap(config_.tap_name));
  AIRLOCK_ASSIGN_OR_RETURN(Rtnetlink rt, Rtnetlink::open());
  AIRLOCK_RETURN_IF_ERROR(rt.set_link_up(1));  // lo is always index 1 in a new namespace
  AIRLOCK_RETURN_IF_ERROR(rt.add_ipv4_address(tap.ifindex, host_, config_.prefix_len));
  AIRLOCK_RETURN_IF_ERROR(rt.set_link_up(tap.ifindex));
  tap_ = std::move(tap.fd);
  tap_name_ = tap.name;
  return ok_status();
}

Status SandboxNetwork::open_sockets() {
  const std::pair<ListenMode, uint16_t> specs[] = {
      {ListenMode::explicit_proxy, config_.explicit_proxy_port},
      {ListenMode::transparent_https, config_.transparent_https_port},
      {ListenMode::transparent_http, config_.transparent_http_port},
  };
  std::vector<UniqueFd> fds;
  for (auto [mode, port] : specs) {
    AIRLOCK_ASSIGN_OR_RETURN(UniqueFd fd,
                             bound_socket(SOCK_STREAM, host_, port, config_.listen_backlog));
    fds.push_back(std::move(fd));
  }
  if (config_.dns) {
    AIRLOCK_ASSIGN_OR_RETURN(dns_socket_, bound_socket(SOCK_DGRAM, host_, 53, 0));
  }
  std::string host = ipv4_text(host_);
  for (size_t i = 0; i < fds.size(); ++i) {
    ListenerSpec l;
    l.mode = specs[i].first;
    l.address = host + ":" + std::to_string(specs[i].second);
    l.fd = fds[i].release();
    listeners_.push_back(l);
  }
  return ok_status();
}

UniqueFd SandboxNetwork::take_tap() {
  return std::move(tap_);
}

std::vector<ListenerSpec> SandboxNetwork::take_proxy_listeners() {
  std::vector<ListenerSpec> out;
  out.swap(listeners_);
  return out;
}

dns::ResponderStats SandboxNetwork::dns_stats() const noexcept {
  return dns_ ? dns_->stats() : dns::ResponderStats{};
}

SandboxNetwork::~SandboxNetwork() {
  if (dns_) dns_->stop();
  dns_.reset();
  for (auto& l : listeners_)
    if (l.fd >= 0) ::close(l.fd);
  listeners_.clear();
}

}  // namespace airlock::net
