// airlock::Proxy: builds the shared context (policy, secrets, CA, TLS, audit), binds the
// listeners and runs the workers. See include/airlock/proxy.hpp for the contract.
#include "airlock/proxy.hpp"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mutex>

#include "base/log.h"
#include "base/secret.h"
#include "proxy/server.h"

namespace airlock {

namespace {

using proxy::IpAddress;
using proxy::Listener;
using proxy::ProxyContext;
using proxy::Worker;

Result<std::string> bound_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0)
    return errno_status("getsockname");
  uint16_t port = 0;
  auto ip = proxy::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len, &port);
  if (!ip) return Status(Errc::internal, "listener has no IP address");
  return ip->to_uri_host() + ":" + std::to_string(port);
}

Result<UniqueFd> bind_listener(const std::string& address) {
  // "ip:port" or "[v6]:port"; port 0 picks a free one.
  size_t colon = address.rfind(':');
  auto bad = [&] {
    return Status(Errc::invalid_argument, "listener address must be ip:port: " + address);
  };
  if (colon == std::string::npos || colon + 1 >= address.size()) return bad();
  std::string host = address.substr(0, colon);
  std::string port_text = address.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  if (port_text.size() > 5 || port_text.find_first_not_of("0123456789") != std::string::npos)
    return bad();
  int port = std::stoi(port_text);
  auto ip = proxy::parse_ip_literal(host);
  if (!ip || port > 65535) return bad();
  sockaddr_storage ss{};
  socklen_t len = proxy::to_sockaddr(*ip, static_cast<uint16_t>(port), &ss);
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno_status("socket");
  UniqueFd sock(fd);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0) return errno_status("bind " + address);
  if (::listen(fd, 1024) < 0) return errno_status("listen " + address);
  return sock;
}

class ProxyImpl final : public Proxy {
 public:
  ~ProxyImpl() override { stop(); }

  Status init(ProxyOptions options) {
    ctx_ = std::make_unique<ProxyContext>();
    AIRLOCK_ASSIGN_OR_RETURN(ctx_->policy, proxy::Policy::parse(options.allow_net));
    if (!options.secrets.empty()) {
      AIRLOCK_ASSIGN_OR_RETURN(ctx_->secrets, proxy::SecretSet::create(options.secrets));
    }
    // The context keeps no copy of the values outside SecretSet: wipe the option strings.
    for (auto& s : options.secrets) {
      secure_wipe(s.value.data(), s.value.size());
      s.value.clear();
    }
    AIRLOCK_ASSIGN_OR_RETURN(ctx_->resolver, proxy::Resolver::create(options.resolve_override));
    AIRLOCK_ASSIGN_OR_RETURN(ctx_->ca, proxy::CertificateAuthority::create());
    AIRLOCK_ASSIGN_OR_RETURN(
        ctx_->tls,
        proxy::TlsContexts::create(ctx_->ca.get(), options.ca_bundle, options.extra_ca_files));
    AIRLOCK_ASSIGN_OR_RETURN(ctx_->audit,
                             proxy::AuditLog::create(options.on_audit, options.audit_jsonl_path));
    if (options.worker_threads == 0) options.worker_threads = 1;
    if (options.worker_threads > 64) options.worker_threads = 64;
    if (options.listeners.empty()) return Status(Errc::invalid_argument, "no listener");

    for (auto& spec : options.listeners) {
      auto l = std::make_unique<Listener>();
      l->spec = spec;
      if (spec.fd >= 0) {
        l->fd.reset(spec.fd);
        spec.fd = -1;
        AIRLOCK_RETURN_IF_ERROR(set_nonblocking(l->fd.get()));
      } else {
        AIRLOCK_ASSIGN_OR_RETURN(l->fd, bind_listener(spec.address));
      }
      AIRLOCK_ASSIGN_OR_RETURN(l->bound, bound_address(l->fd.get()));
      l->upstream_port = spec.upstream_port
                             ? spec.upstream_port
                             : (spec.mode == ListenMode::transparent_http ? 80 : 443);
      listeners_.push_back(std::move(l));
    }
    ctx_->options = std::move(options);
    ctx_->options.listeners.clear();
    ctx_->pool = std::make_unique<proxy::BlockingPool>(4);
    for (unsigned i = 0; i < ctx_->options.worker_threads; ++i) {
      auto w = std::make_unique<Worker>(ctx_.get(), i);
      AIRLOCK_RETURN_IF_ERROR(w->init(listeners_));
      workers_.push_back(std::move(w));
    }
    std::vector<Worker*> peers;
    for (auto& w : workers_) peers.push_back(w.get());
    for (auto& w : workers_) w->set_peers(peers);
    for (auto& w : workers_) w->start();
    running_ = true;
    return ok_status();
  }

  std::string ca_pem() const override { return ctx_->ca->pem(); }

  std::string placeholder(const std::string& name) const override {
    return ctx_->secrets.placeholder(name);
  }

  std::vector<std::string> listen_addresses() const override {
    std::vector<std::string> out;
    for (const auto& l : listeners_) out.push_back(l->bound);
    return out;
  }

  ProxyStats stats() const override {
    ProxyStats s;
    const auto& c = ctx_->counters;
    s.connections = c.connections.load();
    s.requests = c.requests.load();
    s.denied = c.denied.load();
    s.bytes_up = c.bytes_up.load();
    s.bytes_down = c.bytes_down.load();
    if (ctx_->audit) s.requests_per_host = ctx_->audit->requests_per_host();
    return s;
  }

  void stop() override {
    std::lock_guard lock(stop_mu_);
    if (!ctx_) return;
    for (auto& w : workers_) w->stop();
    for (auto& w : workers_) w->join();
    if (ctx_->pool) ctx_->pool->stop();  // pending results post into loops that are still alive
    workers_.clear();
    listeners_.clear();
    running_ = false;
  }

 private:
  std::mutex stop_mu_;
  std::unique_ptr<ProxyContext> ctx_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool running_ = false;
};

}  // namespace

Result<std::unique_ptr<Proxy>> Proxy::start(ProxyOptions options) {
  try {
    auto impl = std::make_unique<ProxyImpl>();
    AIRLOCK_RETURN_IF_ERROR(impl->init(std::move(options)));
    return std::unique_ptr<Proxy>(std::move(impl));
  } catch (const std::exception& e) {
    return Status(Errc::internal, std::string("proxy start failed: ") + e.what());
  } catch (...) {
    return Status(Errc::internal, "proxy start failed");
  }
}

}  // namespace airlock
