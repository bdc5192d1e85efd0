// Idle upstream connections kept for reuse, per worker, keyed by scheme and authority
// ("https://api.example.com:443"). A connection enters the pool only after a complete response
// on a keep-alive connection, with nothing buffered either way; the address it was dialed to
// was checked against the policy when it was opened, and policy does not change during the
// proxy's life. An idle connection that becomes readable (the server closed it or sent
// something unexpected) or stays idle too long is closed. Bounded per key and in total.
// Threads: owned and used by one worker's loop thread only.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "base/fd.h"
#include "proxy/event_loop.h"

namespace airlock::proxy {

class UpstreamPool {
 public:
  static constexpr size_t kMaxPerKey = 16;
  static constexpr size_t kMaxTotal = 512;
  static constexpr std::chrono::seconds kIdleTimeout{30};

  explicit UpstreamPool(EventLoop* loop) : loop_(loop) {}
  ~UpstreamPool() { clear(); }
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // Takes ownership; closes the connection instead if the pool is full.
  void put(const std::string& key, UniqueFd fd, bssl::UniquePtr<SSL> ssl);
  // The most recently pooled live connection for `key`, if any.
  bool take(const std::string& key, UniqueFd* fd, bssl::UniquePtr<SSL>* ssl);
  void clear() noexcept;
  size_t size() const { return total_; }

 private:
  struct Entry : IoHandler {
    UpstreamPool* pool = nullptr;
    std::string key;
    UniqueFd fd;
    bssl::UniquePtr<SSL> ssl;
    EventLoop::TimerId timer = 0;
    void on_io(int, uint32_t events) override;
  };
  void evict(Entry* entry);
  static bool still_idle(Entry& entry);

  EventLoop* loop_;
  std::unordered_map<std::string, std::list<std::unique_ptr<Entry>>> idle_;
  size_t total_ = 0;
};

}  // namespace airlock::proxy
