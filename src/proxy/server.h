// The proxy's running parts: the shared, read-only context (policy, secrets, TLS, audit), the
// listeners and the worker threads. Each worker owns an epoll loop and the connections it
// accepted; listening sockets sit in every worker's epoll with EPOLLEXCLUSIVE, so whichever
// worker wakes accepts. Threads: ProxyContext is read-only after start except its atomics;
// a Worker's connections are touched only by that worker's thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "airlock/proxy.hpp"
#include "base/fd.h"
#include "proxy/audit.h"
#include "proxy/blocking_pool.h"
#include "proxy/ca.h"
#include "proxy/event_loop.h"
#include "proxy/policy.h"
#include "proxy/resolver.h"
#include "proxy/secrets.h"
#include "proxy/tls.h"
#include "proxy/upstream_pool.h"

namespace airlock::proxy {

struct ProxyCounters {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> active_connections{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> denied{0};
  std::atomic<uint64_t> bytes_up{0};
  std::atomic<uint64_t> bytes_down{0};
  std::atomic<uint64_t> next_connection_id{1};
};

struct ProxyContext {
  ProxyOptions options;  // hook, limits, flags (secret values are cleared from this copy)
  Policy policy;
  SecretSet secrets;
  Resolver resolver;
  std::unique_ptr<CertificateAuthority> ca;
  std::unique_ptr<TlsContexts> tls;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<BlockingPool> pool;
  ProxyCounters counters;

  void record(const AuditEvent& event) noexcept;
};

struct Listener {
  ListenerSpec spec;
  UniqueFd fd;
  std::string bound;           // "ip:port"
  uint16_t upstream_port = 0;  // transparent modes: the port clients meant
};

class Connection;
class Worker;

class ListenerHandler : public IoHandler {
 public:
  ListenerHandler(Worker* worker, const Listener* listener)
      : worker_(worker), listener_(listener) {}
  void on_io(int fd, uint32_t events) override;

 private:
  Worker* worker_;
  const Listener* listener_;
};

class Worker {
 public:
  Worker(ProxyContext* ctx, unsigned index);
  ~Worker();

  Status init(const std::vector<std::unique_ptr<Listener>>& listeners);
  void start();
  void stop() noexcept;  // any thread
  void join() noexcept;

  EventLoop& loop() { return loop_; }
  UpstreamPool& upstream_pool() { return upstream_pool_; }
  ProxyContext& ctx() { return *ctx_; }
  unsigned index() const { return index_; }

  void accept_from(const Listener& listener);
  Connection* find(uint64_t id);
  // Connections call this when they are done; freed after the current loop iteration.
  void retire(uint64_t id);

 private:
  void close_all() noexcept;

  ProxyContext* ctx_;
  unsigned index_;
  EventLoop loop_;
  UpstreamPool upstream_pool_{&loop_};
  std::thread thread_;
  std::vector<std::unique_ptr<ListenerHandler>> listener_handlers_;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> graveyard_;
};

}  // namespace airlock::proxy
