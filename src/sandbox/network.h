// A sandbox's way out: the host side (a SandboxNetwork namespace with the tap, the egress proxy
// serving that namespace's listening sockets with its upstream sockets in the host's namespace,
// and the virtio-net device on the tap) and the guest side (eth0, route, resolver, the proxy's CA
// in the trust store, and the environment every command gets).
//
// Only made when SandboxOptions::allow_net is non-empty; otherwise the guest has no network
// device at all. The real secret values go to the proxy only; the guest gets placeholders.
//
// Threads: create() from any thread before the machine starts; configure_guest() once, from the
// thread booting the sandbox; stop() from any thread (idempotent).
#pragma once

#include <map>
#include <memory>
#include <string>

#include "airlock/proxy.hpp"
#include "airlock/sandbox.hpp"
#include "airlock/status.hpp"
#include "devices/net.h"
#include "net/sandbox_network.h"

namespace airlock::sandbox {

// Where the guest finds the proxy's CA (alone, and appended to the system bundle).
inline constexpr const char* kGuestCaPath = "/etc/airlock/ca.pem";
inline constexpr const char* kGuestCaBundle = "/etc/ssl/certs/ca-certificates.crt";

class GuestNetwork {
 public:
  // Creates the namespace, starts the proxy on its listeners and makes the virtio-net device.
  // Errors: invalid_argument for bad options (secrets without allow_net, bad secret names),
  // permission_denied/unavailable when the namespace or tap cannot be made.
  static Result<std::unique_ptr<GuestNetwork>> create(const SandboxOptions& options);
  // Checks SandboxOptions::tap_fd without touching the fd (no ownership taken, no setting
  // changed), so that a wrong fd is reported before anything boots: ok when tap_fd is -1;
  // invalid_argument naming tap_fd when it is not open, not a tun/tap opened with
  // IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, or given without allow_net.
  static Status check_caller_tap(const SandboxOptions& options);
  ~GuestNetwork();
  GuestNetwork(const GuestNetwork&) = delete;
  GuestNetwork& operator=(const GuestNetwork&) = delete;

  // For Machine::add_virtio_device before the machine starts.
  std::shared_ptr<devices::NetDevice> device() const { return device_; }
  Proxy& proxy() { return *proxy_; }

  // The environment every guest command gets: CA variables, proxy variables and one
  // placeholder per secret.
  std::map<std::string, std::string> guest_env() const;

  // Brings up eth0 (address, default route via the host side), writes /etc/resolv.conf, installs
  // the CA, and sets guest_env() as the sandbox's default environment, except for keys in
  // `keep` (the caller's own SandboxOptions::env wins).
  Status configure_guest(Sandbox& sb, const std::map<std::string, std::string>& keep);

  // Stops the proxy (every connection closed). Idempotent.
  void stop();

 private:
  GuestNetwork() = default;

  std::unique_ptr<net::SandboxNetwork> network_;
  std::unique_ptr<Proxy> proxy_;
  std::shared_ptr<devices::NetDevice> device_;
  std::map<std::string, std::string> placeholders_;  // secret name -> placeholder
  std::string host_address_, guest_address_;
  unsigned prefix_len_ = 30;
  uint16_t explicit_port_ = 3128;
};

}  // namespace airlock::sandbox
