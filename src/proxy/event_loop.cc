#include "proxy/event_loop.h"

#include <errno.h>
#include <unistd.h>

#include "base/log.h"

namespace airlock::proxy {

Status EventLoop::init() {
  int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) return errno_status("epoll_create1");
  epoll_.reset(fd);
  AIRLOCK_ASSIGN_OR_RETURN(wake_, make_eventfd(true));
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.ptr = nullptr;  // the wake eventfd
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev) < 0)
    return errno_status("epoll_ctl(wake)");
  return ok_status();
}

Status EventLoop::add(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) < 0) return errno_status("epoll_ctl(add)");
  return ok_status();
}

Status EventLoop::modify(int fd, uint32_t events, IoHandler* handler) {
  epoll_event ev{};
  ev.events = events;
  ev.data.ptr = handler;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) < 0) return errno_status("epoll_ctl(mod)");
  return ok_status();
}

void EventLoop::remove(int fd) noexcept {
  if (fd >= 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

EventLoop::TimerId EventLoop::schedule(Clock::time_point when, std::function<void()> fn) {
  TimerId id = next_timer_++;
  timers_.emplace(std::make_pair(when, id), std::move(fn));
  timer_index_.emplace(id, when);
  return id;
}

void EventLoop::cancel(TimerId id) noexcept {
  auto it = timer_index_.find(id);
  if (it == timer_index_.end()) return;
  timers_.erase(std::make_pair(it->second, id));
  timer_index_.erase(it);
}

void EventLoop::post(std::function<void()> fn) {
  {
    std::lock_guard lock(posted_mu_);
    posted_.push_back(std::move(fn));
  }
  signal_eventfd(wake_.get());
}

void EventLoop::stop() noexcept {
  stopping_.store(true);
  signal_eventfd(wake_.get());
}

void EventLoop::run_timers() {
  auto now = Clock::now();
  while (!timers_.empty() && timers_.begin()->first.first <= now) {
    auto node = timers_.extract(timers_.begin());
    timer_index_.erase(node.key().second);
    try {
      node.mapped()();
    } catch (...) {
      AIRLOCK_LOG_ERROR("proxy", "timer callback threw");
    }
  }
}

void EventLoop::run_posted() {
  std::vector<std::function<void()>> batch;
  {
    std::lock_guard lock(posted_mu_);
    batch.swap(posted_);
  }
  for (auto& fn : batch) {
    try {
      fn();
    } catch (...) {
      AIRLOCK_LOG_ERROR("proxy", "posted task threw");
    }
  }
}

void EventLoop::run(const std::function<void()>& after_iteration) {
  constexpr int kMaxEvents = 128;
  epoll_event events[kMaxEvents];
  while (!stopping_.load()) {
    int timeout_ms = -1;
    if (!timers_.empty()) {
      auto wait = timers_.begin()->first.first - Clock::now();
      auto ms = std::chrono::ceil<std::chrono::milliseconds>(wait).count();
      timeout_ms = ms < 0 ? 0 : static_cast<int>(std::min<long long>(ms, 60000));
    }
    int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, timeout_ms);
    if (n < 0) {
      if (errno == EINTR) continue;
      AIRLOCK_LOG_ERROR("proxy", "epoll_wait failed: errno {}", errno);
      break;
    }
    for (int i = 0; i < n; ++i) {
      auto* handler = static_cast<IoHandler*>(events[i].data.ptr);
      if (handler == nullptr) {
        drain_eventfd(wake_.get());
        continue;
      }
      handler->on_io(-1, events[i].events);
    }
    run_posted();
    run_timers();
    if (after_iteration) after_iteration();
  }
  run_posted();
}

}  // namespace airlock::proxy
