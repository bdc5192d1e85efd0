// The proxy's running parts: the shared, read-only context (policy, secrets, TLS, audit), the
// listeners and the worker threads. Each worker owns an epoll loop and its connections;
// listening sockets sit in every worker's epoll with EPOLLEXCLUSIVE, so whichever worker wakes
// accepts, then hands the connection to the worker that owns the fewest (itself on a tie).
// Without that, connections opened together (or one after another while a worker idles) all
// land on one worker, whose requests then queue behind each other while the other workers
// sleep. Threads: ProxyContext is read-only after start except its atomics; a Worker's
// connections are touched only by that worker's thread; load() by any (the open-connection count
// that max_connections and the hand-over use).
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

  // All workers of the proxy (this one included), set before start().
  void set_peers(std::vector<Worker*> peers) { peers_ = std::move(peers); }
  // Connections this worker owns or has been handed and not yet adopted.
  size_t load() const { return load_.load(std::memory_order_relaxed); }

  void accept_from(const Listener& listener);
  Connection* find(uint64_t id);
  // Connections call this when they are done; freed after the current loop iteration.
  void retire(uint64_t id);

 private:
  void close_all() noexcept;
  // Creates the Connection for an accepted socket; this worker's thread only.
  void adopt(UniqueFd client, const Listener& listener, std::string peer);
  // The worker to own a new connection: the least loaded, this one on a tie.
  Worker* least_loaded();

  ProxyContext* ctx_;
  unsigned index_;
  EventLoop loop_;
  UpstreamPool upstream_pool_{&loop_};
  std::thread thread_;
  std::vector<Worker*> peers_;
  std::atomic<size_t> load_{0};
  std::vector<std::unique_ptr<ListenerHandler>> listener_handlers_;
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::vector<std::unique_ptr<Connection>> graveyard_;
};

}  // namespace airlock::proxy
