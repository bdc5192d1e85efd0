// GuestNetwork: wires net::SandboxNetwork, the egress Proxy and devices::NetDevice together, and
// configures the guest through the agent (busybox `ip`, files, the default environment).
#include "sandbox/network.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>

#include <utility>

#include "base/log.h"
#include "devices/net_tap.h"

namespace airlock::sandbox {

namespace {

bool valid_env_name(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    bool ok =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

// Fails with the command's stderr (no secret is ever part of these commands).
Status run_checked(Sandbox& sb, const std::string& what, const std::string& script) {
  ExecOptions eo;
  eo.timeout = Millis(30000);
  AIRLOCK_ASSIGN_OR_RETURN(auto r, sb.sh(script, eo));
  if (!r.success())
    return Status(Errc::unavailable, "guest network setup: " + what + " failed (exit " +
                                         std::to_string(r.exit_code) + "): " + r.stderr + r.stdout);
  return ok_status();
}

}  // namespace

GuestNetwork::~GuestNetwork() {
  stop();
}

Status GuestNetwork::check_caller_tap(const SandboxOptions& options) {
  if (options.tap_fd < 0) return ok_status();
  if (options.allow_net.empty())
    return Status(Errc::invalid_argument,
                  "tap_fd needs allow_net (the guest has no network without it)");
  const std::string what = "SandboxOptions::tap_fd (" + std::to_string(options.tap_fd) + ")";
  if (::fcntl(options.tap_fd, F_GETFD) < 0)
    return Status(Errc::invalid_argument, what + " is not an open fd");
  ifreq ifr{};
  if (::ioctl(options.tap_fd, TUNGETIFF, &ifr) != 0)
    return Status(Errc::invalid_argument, what + " is not an attached tun/tap device (TUNGETIFF: " +
                                              errno_status("").message().substr(2) + ")");
  const int need = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if ((ifr.ifr_flags & need) != need)
    return Status(Errc::invalid_argument,
                  what + " must be opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR");
  return ok_status();
}

Result<std::unique_ptr<GuestNetwork>> GuestNetwork::create(const SandboxOptions& options) {
  if (options.allow_net.empty())
    return Status(Errc::invalid_argument,
                  options.tap_fd >= 0
                      ? "tap_fd needs allow_net (the guest has no network without it)"
                      : "secrets need allow_net (the guest has no network without it)");
  for (const auto& s : options.secrets) {
    if (!valid_env_name(s.name))
      return Status(Errc::invalid_argument,
                    "secret name '" + s.name + "' is not a valid environment variable name");
  }
  net::NetworkConfig config;
  if (options.tap_fd >= 0) {
    // The caller keeps its fd; the network owns (and closes) this copy.
    config.tap_fd = ::fcntl(options.tap_fd, F_DUPFD_CLOEXEC, 0);
    if (config.tap_fd < 0) return errno_status("SandboxOptions::tap_fd: cannot duplicate the fd");
  }
  std::unique_ptr<GuestNetwork> g(new GuestNetwork());
  AIRLOCK_ASSIGN_OR_RETURN(g->network_, net::SandboxNetwork::create(std::move(config)));
  const net::NetworkConfig& nc = g->network_->config();
  g->host_address_ = nc.host_address;
  g->guest_address_ = nc.guest_address;
  g->prefix_len_ = nc.prefix_len;
  g->explicit_port_ = nc.explicit_proxy_port;

  ProxyOptions po;
  po.allow_net = options.allow_net;
  po.secrets = options.secrets;
  po.listeners = g->network_->take_proxy_listeners();
  po.resolve_override = options.resolve_override;
  po.extra_ca_files = options.extra_ca_files;
  po.on_audit = options.on_audit;
  po.hook = options.hook;
  po.hook_deadline = options.hook_deadline;
  AIRLOCK_ASSIGN_OR_RETURN(g->proxy_, Proxy::start(std::move(po)));
  for (const auto& s : options.secrets) g->placeholders_[s.name] = g->proxy_->placeholder(s.name);

  AIRLOCK_ASSIGN_OR_RETURN(auto backend, devices::TapBackend::create(g->network_->take_tap()));
  g->device_ = std::make_shared<devices::NetDevice>(std::move(backend));
  return g;
}

std::map<std::string, std::string> GuestNetwork::guest_env() const {
  std::map<std::string, std::string> env;
  const std::string proxy_url = "http://" + host_address_ + ":" + std::to_string(explicit_port_);
  for (const char* k : {"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"})
    env[k] = proxy_url;
  // Tools that replace the system bundle get the full bundle (system CAs + the proxy's); tools
  // that add to their built-in roots get the proxy's CA alone.
  for (const char* k : {"SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"})
    env[k] = kGuestCaBundle;
  for (const char* k : {"NODE_EXTRA_CA_CERTS", "DENO_CERT"}) env[k] = kGuestCaPath;
  for (const auto& [name, placeholder] : placeholders_) env[name] = placeholder;
  return env;
}

Status GuestNetwork::configure_guest(Sandbox& sb, const std::map<std::string, std::string>& keep) {
  AIRLOCK_RETURN_IF_ERROR(sb.fs().write(kGuestCaPath, proxy_->ca_pem(), 0644));
  // The driver binds while init loads modules; wait briefly for eth0 in case it is still coming.
  const std::string script =
      "set -e\n"
      // A Debian root image has no iproute2; its busybox has the applet.
      "command -v ip >/dev/null 2>&1 || ip() { busybox ip \"$@\"; }\n"
      "i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done\n"
      "ip link set lo up\n"
      "ip link set eth0 up\n"
      "ip addr add " +
      guest_address_ + "/" + std::to_string(prefix_len_) +
      " dev eth0\n"
      "ip route add default via " +
      host_address_ +
      "\n"
      "mkdir -p /etc/ssl/certs\n"
      "echo 'nameserver " +
      host_address_ +
      "' > /etc/resolv.conf\n"
      "cat " +
      std::string(kGuestCaPath) + " >> " + kGuestCaBundle + "\n";
  AIRLOCK_RETURN_IF_ERROR(run_checked(sb, "interface, route, resolver and CA", script));
  std::map<std::string, std::string> env;
  for (auto& [k, v] : guest_env())
    if (!keep.count(k)) env[k] = v;
  AIRLOCK_RETURN_IF_ERROR(sb.env().set(env));
  for (const char* k : {"NO_PROXY", "no_proxy"})
    if (!keep.count(k)) AIRLOCK_RETURN_IF_ERROR(sb.env().unset(k));
  AIRLOCK_LOG_DEBUG("sandbox", "guest network up: {} via {}", guest_address_, host_address_);
  return ok_status();
}

void GuestNetwork::stop() {
  if (proxy_) proxy_->stop();
}

}  // namespace airlock::sandbox
