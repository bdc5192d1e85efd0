#include "devices/rng.h"

#include <linux/virtio_ids.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>

#include "base/fd.h"
#include "base/log.h"

namespace airlock::devices {

uint32_t RngDevice::device_id() const {
  return VIRTIO_ID_RNG;
}

Status RngDevice::activate(const virtio::ActivateContext& ctx) {
  if (ctx.memory == nullptr || ctx.interrupt == nullptr || ctx.queues.size() != 1 ||
      !ctx.queues[0]->ready)
    return Status(Errc::protocol, "rng: the request queue is not set up");
  memory_ = ctx.memory;
  queue_ = ctx.queues[0];
  interrupt_ = ctx.interrupt;
  broken_ = false;
  return ok_status();
}

void RngDevice::reset() {
  memory_ = nullptr;
  queue_ = nullptr;
  interrupt_ = nullptr;
  broken_ = false;
}

void RngDevice::queue_notify(size_t index) {
  if (index != 0 || queue_ == nullptr || broken_) return;
  bool used_any = false;
  const Status status = process_queue(used_any);
  // Whatever was completed before a failure still belongs to the driver.
  if (used_any && queue_->should_notify(*memory_)) interrupt_->signal_used_queue();
  if (!status.ok()) {
    AIRLOCK_LOG_WARN("virtio", "rng: stopping: {}", status.to_string());
    broken_ = true;
    interrupt_->signal_needs_reset();
  }
}

Status RngDevice::process_queue(bool& used_any) {
  for (;;) {
    AIRLOCK_ASSIGN_OR_RETURN(auto chain, queue_->pop(*memory_));
    if (!chain) return ok_status();
    uint32_t written = 0;
    AIRLOCK_RETURN_IF_ERROR(serve(*chain, written));
    AIRLOCK_RETURN_IF_ERROR(queue_->add_used(*memory_, chain->head, written));
    used_any = true;
    ++requests_served_;
  }
}

// Fills the chain's writable part (a chain without one is returned with 0 bytes).
Status RngDevice::serve(const virtio::DescriptorChain& chain, uint32_t& written) {
  virtio::ChainWriter writer(*memory_, chain);
  uint8_t buf[4096];
  size_t wanted = std::min(writer.remaining(), kMaxBytesPerRequest);
  while (wanted > 0) {
    const ssize_t got = ::getrandom(buf, std::min(wanted, sizeof buf), 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      return errno_status("getrandom");
    }
    AIRLOCK_RETURN_IF_ERROR(writer.write_exact(buf, static_cast<size_t>(got)));
    wanted -= static_cast<size_t>(got);
  }
  written = static_cast<uint32_t>(writer.written());
  return ok_status();
}

}  // namespace airlock::devices
