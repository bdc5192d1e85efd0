// A driver thread and a device thread share one split ring with EVENT_IDX, each suppressing the
// other's notifications as Linux and this Queue do. If the device stopped moving avail_event
// or misjudged used_event, a notification would be lost and the ring would stall with work
// pending: that is what this detects. (A missing store-load fence is a much narrower race that
// this test rarely provokes on x86.)
#include <doctest/doctest.h>
#include <poll.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "base/fd.h"
#include "mock_driver.h"
#include "virtio/queue.h"

namespace airlock::virtio {
namespace {

constexpr uint16_t kSize = 8;
constexpr uint32_t kRequests = 100000;
constexpr uint64_t kData = 0x40000;

std::atomic_ref<uint16_t> word(const GuestMemory& mem, uint64_t gpa) {
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(mem.host_ptr(gpa, 2)));
}

// Waits up to `ms` for the eventfd; true when it fired.
bool wait_fd(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return false;
  drain_eventfd(fd);
  return true;
}

}  // namespace

TEST_CASE("event-idx suppression never loses a kick or an interrupt under concurrency") {
  GuestMemory mem = GuestMemory::create(1 << 20).value();
  testing::MockDriver layout(mem, kSize);
  Queue q;
  layout.configure(q, /*event_idx=*/true);
  REQUIRE(q.validate(mem).ok());
  auto kick = make_eventfd();
  auto irq = make_eventfd();
  REQUIRE(kick.ok());
  REQUIRE(irq.ok());

  const uint64_t avail_idx = layout.avail + 2;
  const uint64_t used_event = layout.avail + 4 + 2 * kSize;
  const uint64_t used_idx = layout.used + 2;
  const uint64_t avail_event = layout.used + 4 + 8 * kSize;
  std::atomic<bool> lost_kick{false}, lost_interrupt{false}, device_error{false};
  std::atomic<uint32_t> completed{0};

  std::thread device([&] {
    while (completed.load() < kRequests && !lost_kick && !lost_interrupt) {
      if (!wait_fd(kick->get(), 2000)) {
        // No kick for 2 s: fine if there is nothing to do, a lost kick if there is.
        if (q.available(mem) > 0) lost_kick = true;
        continue;
      }
      bool used_any = false;
      for (;;) {
        auto chain = q.pop(mem);
        if (!chain.ok()) {
          device_error = true;
          return;
        }
        if (!chain.value()) break;
        if (!q.add_used(mem, chain.value()->head, 8).ok()) {
          device_error = true;
          return;
        }
        used_any = true;
        ++completed;
      }
      if (used_any && q.should_notify(mem)) signal_eventfd(irq->get());
    }
  });

  // The driver, written like Linux's virtio_ring with callbacks always enabled.
  uint16_t next_avail = 0, last_used = 0;
  for (uint32_t i = 0; i < kRequests && !lost_kick && !device_error; ++i) {
    // Wait for a free slot: ask for an interrupt on the next used entry, then re-check.
    while (static_cast<uint16_t>(next_avail - last_used) == kSize && !lost_kick) {
      word(mem, used_event).store(last_used, std::memory_order_relaxed);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      const uint16_t seen = word(mem, used_idx).load(std::memory_order_acquire);
      if (seen != last_used) {
        last_used = seen;
        break;
      }
      if (!wait_fd(irq->get(), 2000)) {
        if (word(mem, used_idx).load(std::memory_order_acquire) != last_used) lost_interrupt = true;
        if (lost_interrupt || device_error) break;
      }
    }
    if (lost_interrupt || lost_kick) break;
    const uint16_t slot = next_avail % kSize;
    layout.set_desc(slot, kData + slot * 64, 8, VRING_DESC_F_WRITE);
    (void)mem.write_obj<uint16_t>(layout.avail + 4 + 2 * slot, slot);
    const uint16_t old = next_avail++;
    std::atomic_thread_fence(std::memory_order_release);
    word(mem, avail_idx).store(next_avail, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t event = word(mem, avail_event).load(std::memory_order_relaxed);
    if (vring_need_event(event, next_avail, old)) signal_eventfd(kick->get());
  }
  // Let the device finish what is queued.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (completed.load() < kRequests && !lost_kick && !lost_interrupt && !device_error &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const bool finished = completed.load() == kRequests;
  if (!finished) signal_eventfd(kick->get());  // unblock the device thread to end it
  lost_kick = lost_kick || !finished;
  device.join();

  CHECK_FALSE(device_error.load());
  CHECK_FALSE(lost_kick.load());
  CHECK_FALSE(lost_interrupt.load());
  CHECK(completed.load() == kRequests);
  CHECK(word(mem, used_idx).load() == static_cast<uint16_t>(kRequests));
}

}  // namespace airlock::virtio
