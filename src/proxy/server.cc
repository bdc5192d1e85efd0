#include "proxy/server.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "proxy/connection.h"

namespace airlock::proxy {

void ProxyContext::record(const AuditEvent& event) noexcept {
  counters.requests.fetch_add(1, std::memory_order_relaxed);
  if (audit) audit->record(event);
}

void ListenerHandler::on_io(int, uint32_t) {
  worker_->accept_from(*listener_);
}

Worker::Worker(ProxyContext* ctx, unsigned index) : ctx_(ctx), index_(index) {}

Worker::~Worker() {
  stop();
  join();
  close_all();
}

Status Worker::init(const std::vector<std::unique_ptr<Listener>>& listeners) {
  AIRLOCK_RETURN_IF_ERROR(loop_.init());
  for (const auto& l : listeners) {
    auto handler = std::make_unique<ListenerHandler>(this, l.get());
    // EPOLLEXCLUSIVE: one worker wakes per incoming connection, not all of them.
    AIRLOCK_RETURN_IF_ERROR(loop_.add(l->fd.get(), EPOLLIN | EPOLLEXCLUSIVE, handler.get()));
    listener_handlers_.push_back(std::move(handler));
  }
  return ok_status();
}

void Worker::start() {
  thread_ = std::thread([this] {
    // BoringSSL writes to sockets with write(2): a peer that went away must give EPIPE, not a
    // SIGPIPE that kills the host application. Blocked for this thread only.
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
    loop_.run([this] { graveyard_.clear(); });
    close_all();
  });
}

void Worker::stop() noexcept {
  loop_.stop();
}

void Worker::join() noexcept {
  if (thread_.joinable()) thread_.join();
}

void Worker::close_all() noexcept {
  for (auto& [id, conn] : connections_) conn->tear_down();
  load_.fetch_sub(connections_.size(), std::memory_order_relaxed);
  connections_.clear();
  graveyard_.clear();
  upstream_pool_.clear();
}

void Worker::accept_from(const Listener& listener) {
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = ::accept4(listener.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        AIRLOCK_LOG_WARN("proxy", "accept failed: errno {}", errno);
      return;
    }
    UniqueFd client(fd);
    int one = 1;  // small request/response writes must not wait for Nagle
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // Connections owned or on their way to an owner, so a burst cannot overshoot the limit.
    size_t total = peers_.empty() ? load() : 0;
    for (Worker* w : peers_) total += w->load();
    if (total >= ctx_->options.limits.max_connections) {
      // Over the limit: refuse at once rather than queue without bound.
      linger l{1, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
      continue;
    }
    uint16_t port = 0;
    std::string peer;
    if (auto ip = from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len, &port))
      peer = ip->to_uri_host() + ":" + std::to_string(port);
    Worker* owner = least_loaded();
    owner->load_.fetch_add(1, std::memory_order_relaxed);
    if (owner == this) {
      adopt(std::move(client), listener, std::move(peer));
      continue;
    }
    // The socket travels in a shared box (posted tasks are copyable std::functions): if the
    // owner's loop has stopped and never runs the task, destroying the task closes the socket.
    auto box = std::make_shared<UniqueFd>(std::move(client));
    const Listener* from = &listener;
    owner->loop().post([owner, box, from, peer = std::move(peer)]() mutable {
      owner->adopt(std::move(*box), *from, std::move(peer));
    });
  }
}

Worker* Worker::least_loaded() {
  Worker* best = this;
  for (Worker* w : peers_)
    if (w->load() < best->load()) best = w;
  return best;
}

void Worker::adopt(UniqueFd client, const Listener& listener, std::string peer) {
  uint64_t id = ctx_->counters.next_connection_id.fetch_add(1, std::memory_order_relaxed);
  auto conn = std::make_unique<Connection>(this, id, std::move(client), listener, std::move(peer));
  Connection* raw = conn.get();
  connections_.emplace(id, std::move(conn));
  raw->start();
}

Connection* Worker::find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : it->second.get();
}

void Worker::retire(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return;
  graveyard_.push_back(std::move(it->second));
  connections_.erase(it);
  load_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace airlock::proxy
