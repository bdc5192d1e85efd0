// One epoll loop per worker thread: fd readiness, timers and tasks posted from other threads.
//
// Handlers are plain interfaces; a handler that closes itself must stay alive until the loop
// iteration ends (connections defer their own deletion). Timers are a deadline-ordered map so
// every connection phase has a bounded wait. Threads: post() and stop() may be called from any
// thread; everything else only from the loop's own thread.
#pragma once

#include <sys/epoll.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/fd.h"

namespace airlock::proxy {

using Clock = std::chrono::steady_clock;

class IoHandler {
 public:
  virtual ~IoHandler() = default;
  virtual void on_io(int fd, uint32_t events) = 0;
};

class EventLoop {
 public:
  using TimerId = uint64_t;

  EventLoop() = default;
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  Status init();

  Status add(int fd, uint32_t events, IoHandler* handler);
  Status modify(int fd, uint32_t events, IoHandler* handler);
  void remove(int fd) noexcept;

  // Runs `fn` at `when` on this loop; cancel() before then to drop it.
  TimerId schedule(Clock::time_point when, std::function<void()> fn);
  void cancel(TimerId id) noexcept;

  // Any thread: runs `fn` on the loop thread soon.
  void post(std::function<void()> fn);
  // Any thread: makes run() return after the current iteration.
  void stop() noexcept;

  // Runs until stop(). `after_iteration` runs after each batch of events (deferred frees).
  void run(const std::function<void()>& after_iteration);

 private:
  void run_timers();
  void run_posted();

  UniqueFd epoll_;
  UniqueFd wake_;
  std::atomic<bool> stopping_{false};
  std::mutex posted_mu_;
  std::vector<std::function<void()>> posted_;
  TimerId next_timer_ = 1;
  std::map<std::pair<Clock::time_point, TimerId>, std::function<void()>> timers_;
  std::unordered_map<TimerId, Clock::time_point> timer_index_;
};

}  // namespace airlock::proxy
