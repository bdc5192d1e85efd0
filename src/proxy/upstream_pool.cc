#include "proxy/upstream_pool.h"

#include <openssl/err.h>
#include <sys/socket.h>

#include "proxy/tls.h"

namespace airlock::proxy {

// An idle connection must have nothing to say. A TLS 1.3 server may still send a session
// ticket (no application data); anything else, or EOF, ends it.
bool UpstreamPool::still_idle(Entry& e) {
  char buf[4096];
  ssize_t n = ::recv(e.fd.get(), buf, sizeof buf, MSG_PEEK | MSG_DONTWAIT);
  if (n == 0) return false;  // the server closed it
  if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK;
  if (!e.ssl) return false;  // plain HTTP: nothing may arrive unasked
  // TLS: move what arrived into the session's input and let it consume non-application
  // records; any application byte means the connection is out of step.
  n = ::recv(e.fd.get(), buf, sizeof buf, MSG_DONTWAIT);
  if (n <= 0 || !feed_tls_input(e.ssl.get(), buf, static_cast<size_t>(n))) return false;
  char byte;
  int r = SSL_read(e.ssl.get(), &byte, 1);
  int err = r > 0 ? SSL_ERROR_NONE : SSL_get_error(e.ssl.get(), r);
  ERR_clear_error();
  return r <= 0 && err == SSL_ERROR_WANT_READ;
}

void UpstreamPool::Entry::on_io(int, uint32_t events) {
  if ((events & (EPOLLERR | EPOLLHUP)) || !still_idle(*this)) pool->evict(this);
}

void UpstreamPool::put(const std::string& key, UniqueFd fd, bssl::UniquePtr<SSL> ssl) {
  auto& list = idle_[key];
  if (list.size() >= kMaxPerKey || total_ >= kMaxTotal) return;  // closes fd and ssl
  auto entry = std::make_unique<Entry>();
  entry->pool = this;
  entry->key = key;
  entry->fd = std::move(fd);
  entry->ssl = std::move(ssl);
  if (!loop_->add(entry->fd.get(), EPOLLIN | EPOLLRDHUP, entry.get()).ok()) return;
  Entry* raw = entry.get();
  entry->timer = loop_->schedule(Clock::now() + kIdleTimeout, [this, raw] {
    raw->timer = 0;
    evict(raw);
  });
  list.push_front(std::move(entry));
  ++total_;
}

bool UpstreamPool::take(const std::string& key, UniqueFd* fd, bssl::UniquePtr<SSL>* ssl) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return false;
  auto& list = it->second;
  while (!list.empty()) {
    std::unique_ptr<Entry> e = std::move(list.front());
    list.pop_front();
    --total_;
    loop_->remove(e->fd.get());
    if (e->timer) loop_->cancel(e->timer);
    if (!still_idle(*e)) continue;  // closed while idle: try the next one
    *fd = std::move(e->fd);
    *ssl = std::move(e->ssl);
    if (list.empty()) idle_.erase(it);
    return true;
  }
  idle_.erase(it);
  return false;
}

void UpstreamPool::evict(Entry* entry) {
  auto it = idle_.find(entry->key);
  if (it == idle_.end()) return;
  auto& list = it->second;
  for (auto e = list.begin(); e != list.end(); ++e) {
    if (e->get() != entry) continue;
    loop_->remove(entry->fd.get());
    if (entry->timer) loop_->cancel(entry->timer);
    list.erase(e);  // frees entry (closes its socket)
    --total_;
    break;
  }
  if (list.empty()) idle_.erase(it);
}

void UpstreamPool::clear() noexcept {
  for (auto& [key, list] : idle_) {
    for (auto& e : list) {
      loop_->remove(e->fd.get());
      if (e->timer) loop_->cancel(e->timer);
    }
  }
  idle_.clear();
  total_ = 0;
}

}  // namespace airlock::proxy
