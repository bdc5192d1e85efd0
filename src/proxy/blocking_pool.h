// A few threads for work that may block (DNS resolution, host hooks), so event loops never do.
// Results go back to the owning loop with EventLoop::post. Threads: submit() from any thread;
// stop() joins (a job that never returns blocks stop: hooks are trusted host code).
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace airlock::proxy {

class BlockingPool {
 public:
  explicit BlockingPool(unsigned threads);
  ~BlockingPool();
  BlockingPool(const BlockingPool&) = delete;
  BlockingPool& operator=(const BlockingPool&) = delete;

  // False when stopping (the job is dropped).
  bool submit(std::function<void()> job);
  void stop() noexcept;

 private:
  void run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace airlock::proxy
