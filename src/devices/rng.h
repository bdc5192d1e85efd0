// virtio-entropy (virtio 1.2 §5.4): one request queue whose device-writable buffers the
// device fills from the host's getrandom(). No config space, no features.
//
// Threads: activate()/reset() on a vCPU thread under the transport's lock; queue_notify() on
// the machine's event thread, never at the same time as those (the transport guarantees it).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "virtio/device.h"

namespace airlock::devices {

class RngDevice final : public virtio::Device {
 public:
  // At most this many bytes are produced per request, whatever the buffer's size, so that one
  // huge buffer cannot keep the event thread busy.
  static constexpr size_t kMaxBytesPerRequest = 64 * 1024;

  uint32_t device_id() const override;
  const char* name() const override { return "rng"; }
  uint64_t device_features() const override { return 0; }
  size_t num_queues() const override { return 1; }

  Status activate(const virtio::ActivateContext& ctx) override;
  void queue_notify(size_t index) override;
  void reset() override;

  // Requests completed since creation (for tests and metrics).
  uint64_t requests_served() const noexcept { return requests_served_.load(); }

 private:
  Status serve(const virtio::DescriptorChain& chain, uint32_t& written);
  Status process_queue(bool& used_any);

  const GuestMemory* memory_ = nullptr;
  virtio::Queue* queue_ = nullptr;
  virtio::Interrupt* interrupt_ = nullptr;
  bool broken_ = false;
  std::atomic<uint64_t> requests_served_{0};
};

}  // namespace airlock::devices
