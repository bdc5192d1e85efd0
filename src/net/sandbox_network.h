// The network a sandbox's guest sees: a network namespace of its own holding a tap (the guest's
// link) with the host side of a point-to-point IPv4 /30, the proxy's guest-facing listening
// sockets and airlock's DNS responder -- and nothing else. No default route, forwarding off, no
// NAT: a packet to any other address dies in this namespace. IPv6 is disabled there.
//
// The namespace is made without spawning anything and without touching the host's namespaces
// (netns.h); the proxy's upstream sockets stay in the host's namespace. When the listening
// sockets (handed to the proxy), the tap (handed to virtio-net) and this object are all gone,
// the namespace disappears.
//
// Keep the object alive as long as the guest runs: it owns the DNS responder. Guest side (for
// the agent): address guest_address/prefix_len on the virtio-net interface, default route and
// nameserver host_address, HTTP(S)_PROXY http://host_address:explicit_proxy_port.
//
// Privileges: the default mode needs CAP_SYS_ADMIN (unshare) and CAP_NET_ADMIN (tap, address).
// Caller-tap mode (NetworkConfig::tap_fd) needs none: a privileged helper made the tap and gave
// its host side the address; listeners and DNS are then opened in the caller's current
// namespace, bound to that address, and the helper is responsible for forwarding/NAT being off.
//
// Threads: create() and the destructor from any thread; accessors and take_*() from one thread
// at a time.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "airlock/proxy.hpp"
#include "airlock/status.hpp"
#include "base/fd.h"
#include "net/dns.h"

namespace airlock::net {

struct NetworkConfig {
  std::string tap_name = "airlock0";
  std::string host_address = "10.213.0.1";   // the proxy and DNS live here
  std::string guest_address = "10.213.0.2";  // for the guest agent to configure
  uint8_t prefix_len = 30;
  uint16_t explicit_proxy_port = 3128;  // HTTP(S)_PROXY in the guest
  uint16_t transparent_https_port = 443;
  uint16_t transparent_http_port = 80;
  bool dns = true;  // UDP 53 on host_address
  uint32_t dns_ttl = 5;
  int listen_backlog = 128;
  // Caller-tap mode: a tap opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR by a privileged
  // helper. Ownership moves to the network (closed even if create() fails).
  int tap_fd = -1;
};

class SandboxNetwork {
 public:
  static Result<std::unique_ptr<SandboxNetwork>> create(NetworkConfig config);
  ~SandboxNetwork();
  SandboxNetwork(const SandboxNetwork&) = delete;
  SandboxNetwork& operator=(const SandboxNetwork&) = delete;

  // The tap for the virtio-net backend (non-blocking, 12-byte vnet header, offloads off).
  // Ownership moves out; later calls return an invalid fd.
  UniqueFd take_tap();
  // Listening sockets for ProxyOptions::listeners (explicit, transparent HTTPS, transparent
  // HTTP; non-blocking). The proxy takes ownership of the fds. Later calls return nothing.
  std::vector<ListenerSpec> take_proxy_listeners();

  // The namespace (owned; -1 in caller-tap mode), e.g. for run_in_netns().
  int netns_fd() const noexcept { return netns_.get(); }
  bool owns_namespace() const noexcept { return netns_.valid(); }
  const std::string& tap_name() const noexcept { return tap_name_; }
  const NetworkConfig& config() const noexcept { return config_; }
  in_addr host_address() const noexcept { return host_; }
  in_addr guest_address() const noexcept { return guest_; }
  dns::ResponderStats dns_stats() const noexcept;

 private:
  SandboxNetwork() = default;
  Status configure_namespace();  // runs inside the new namespace
  Status open_sockets();         // runs in the namespace the sockets must live in

  NetworkConfig config_;
  in_addr host_{};
  in_addr guest_{};
  UniqueFd netns_;
  UniqueFd tap_;
  std::string tap_name_;
  std::vector<ListenerSpec> listeners_;  // fds owned until taken
  UniqueFd dns_socket_;
  std::unique_ptr<dns::Responder> dns_;
};

}  // namespace airlock::net
