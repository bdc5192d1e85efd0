#include "virtio/mmio.h"

#include <linux/virtio_config.h>
#include <linux/virtio_mmio.h>
#define VIRTIO_RING_NO_LEGACY  // the legacy helpers in this header are not valid C++
#include <linux/virtio_ring.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "base/log.h"

namespace airlock::virtio {

namespace {

constexpr uint64_t bit(unsigned n) {
  return 1ull << n;
}

// Ring features this transport's Queue implements.
constexpr uint64_t kTransportFeatures =
    bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_RING_F_INDIRECT_DESC);

bool config_access_size_ok(size_t len) {
  return len == 1 || len == 2 || len == 4 || len == 8;
}

uint32_t low_half(uint64_t v) {
  return static_cast<uint32_t>(v);
}
uint32_t high_half(uint64_t v) {
  return static_cast<uint32_t>(v >> 32);
}
void set_low_half(uint64_t& v, uint32_t half) {
  v = (v & ~0xffffffffull) | half;
}
void set_high_half(uint64_t& v, uint32_t half) {
  v = (v & 0xffffffffull) | uint64_t{half} << 32;
}

}  // namespace

MmioTransport::MmioTransport(std::shared_ptr<Device> device, const GuestMemory& memory)
    : device_(std::move(device)),
      memory_(memory),
      offered_features_(device_->device_features() | kTransportFeatures),
      queues_(device_->num_queues()) {
  for (size_t i = 0; i < queues_.size(); ++i) {
    queues_[i].max_size = std::min(device_->queue_max_size(i), Queue::kMaxQueueSize);
    queues_[i].reset();
  }
}

MmioTransport::~MmioTransport() {
  shutdown();
}

void MmioTransport::read(uint64_t offset, uint8_t* data, size_t len) {
  if (data == nullptr) return;
  std::memset(data, 0, len);
  std::lock_guard lock(mutex_);
  if (offset >= VIRTIO_MMIO_CONFIG) {
    if (config_access_size_ok(len)) device_->read_config(offset - VIRTIO_MMIO_CONFIG, data, len);
    return;
  }
  if (len != 4 || offset % 4 != 0) return;
  const uint32_t value = read_register(offset);
  std::memcpy(data, &value, sizeof value);
}

void MmioTransport::write(uint64_t offset, const uint8_t* data, size_t len) {
  if (data == nullptr) return;
  int64_t kicked_queue = -1;
  {
    std::lock_guard lock(mutex_);
    if (offset >= VIRTIO_MMIO_CONFIG) {
      if (config_access_size_ok(len)) device_->write_config(offset - VIRTIO_MMIO_CONFIG, data, len);
      return;
    }
    if (len != 4 || offset % 4 != 0) return;
    uint32_t value;
    std::memcpy(&value, data, sizeof value);
    kicked_queue = write_register(offset, value);
  }
  // The device runs outside the register lock, as it does for ioeventfd kicks.
  if (kicked_queue >= 0) notify(static_cast<uint32_t>(kicked_queue));
}

uint32_t MmioTransport::read_register(uint64_t offset) {
  const Queue* queue = selected_queue();
  switch (offset) {
    case VIRTIO_MMIO_MAGIC_VALUE:
      return kMagic;
    case VIRTIO_MMIO_VERSION:
      return kVersion;
    case VIRTIO_MMIO_DEVICE_ID:
      return device_->device_id();
    case VIRTIO_MMIO_VENDOR_ID:
      return kVendorId;
    case VIRTIO_MMIO_DEVICE_FEATURES:
      if (device_features_sel_ == 0) return low_half(offered_features_);
      if (device_features_sel_ == 1) return high_half(offered_features_);
      return 0;
    case VIRTIO_MMIO_QUEUE_NUM_MAX:
      return queue ? queue->max_size : 0;
    case VIRTIO_MMIO_QUEUE_READY:
      return queue && queue->ready ? 1 : 0;
    case VIRTIO_MMIO_INTERRUPT_STATUS:
      return interrupt_status_.load();
    case VIRTIO_MMIO_STATUS:
      return device_status_ | (needs_reset_.load() ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
    // No shared memory regions: a non-existent region reads as length and base -1 (§4.2.2).
    case VIRTIO_MMIO_SHM_LEN_LOW:
    case VIRTIO_MMIO_SHM_LEN_HIGH:
    case VIRTIO_MMIO_SHM_BASE_LOW:
    case VIRTIO_MMIO_SHM_BASE_HIGH:
      return 0xffffffff;
    case VIRTIO_MMIO_CONFIG_GENERATION:
      return config_generation_.load();
    default:  // write-only, legacy (version 1) and reserved registers
      return 0;
  }
}

int64_t MmioTransport::write_register(uint64_t offset, uint32_t value) {
  Queue* queue = selected_queue();
  const bool queue_ok = queue_writable(queue);
  switch (offset) {
    case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
      device_features_sel_ = value;
      break;
    case VIRTIO_MMIO_DRIVER_FEATURES:
      // Features are negotiated between DRIVER and FEATURES_OK (§3.1.1).
      if ((device_status_ & VIRTIO_CONFIG_S_DRIVER) &&
          !(device_status_ & VIRTIO_CONFIG_S_FEATURES_OK)) {
        if (driver_features_sel_ == 0) set_low_half(driver_features_, value);
        if (driver_features_sel_ == 1) set_high_half(driver_features_, value);
      }
      break;
    case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
      driver_features_sel_ = value;
      break;
    case VIRTIO_MMIO_QUEUE_SEL:
      queue_sel_ = value;
      break;
    case VIRTIO_MMIO_QUEUE_NUM:
      // Out-of-range sizes become 0 so that validation refuses them at DRIVER_OK.
      if (queue_ok) queue->size = value <= 0xffff ? static_cast<uint16_t>(value) : 0;
      break;
    case VIRTIO_MMIO_QUEUE_READY:
      if (queue && !(device_status_ & VIRTIO_CONFIG_S_DRIVER_OK)) queue->ready = value == 1;
      break;
    case VIRTIO_MMIO_QUEUE_NOTIFY:
      return value;
    case VIRTIO_MMIO_INTERRUPT_ACK:
      interrupt_status_.fetch_and(~value);
      break;
    case VIRTIO_MMIO_STATUS:
      write_status(value);
      break;
    case VIRTIO_MMIO_QUEUE_DESC_LOW:
      if (queue_ok) set_low_half(queue->desc_table, value);
      break;
    case VIRTIO_MMIO_QUEUE_DESC_HIGH:
      if (queue_ok) set_high_half(queue->desc_table, value);
      break;
    case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
      if (queue_ok) set_low_half(queue->avail_ring, value);
      break;
    case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
      if (queue_ok) set_high_half(queue->avail_ring, value);
      break;
    case VIRTIO_MMIO_QUEUE_USED_LOW:
      if (queue_ok) set_low_half(queue->used_ring, value);
      break;
    case VIRTIO_MMIO_QUEUE_USED_HIGH:
      if (queue_ok) set_high_half(queue->used_ring, value);
      break;
    case VIRTIO_MMIO_SHM_SEL:
      shm_sel_ = value;
      break;
    default:  // read-only, legacy (version 1) and reserved registers
      break;
  }
  return -1;
}

Queue* MmioTransport::selected_queue() {
  return queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
}

// Queue registers change only while the queue is off and the device is not running (§4.2.3.2).
bool MmioTransport::queue_writable(const Queue* queue) const {
  return queue && !queue->ready && !(device_status_ & VIRTIO_CONFIG_S_DRIVER_OK);
}

void MmioTransport::write_status(uint32_t value) {
  if (value == 0) {
    reset_locked();
    return;
  }
  value &= ~VIRTIO_CONFIG_S_NEEDS_RESET;  // the device's bit, not the driver's
  const uint32_t old = device_status_;
  if (old & ~value) return;  // only a reset clears bits (§2.1.1)
  if (value & VIRTIO_CONFIG_S_FAILED) {
    device_status_ = old | VIRTIO_CONFIG_S_FAILED;  // the driver gave up
    return;
  }
  // Each step of the initialisation needs the one before (§3.1.1).
  if ((value & VIRTIO_CONFIG_S_DRIVER) && !(value & VIRTIO_CONFIG_S_ACKNOWLEDGE)) return;
  if ((value & VIRTIO_CONFIG_S_FEATURES_OK) && !(value & VIRTIO_CONFIG_S_DRIVER)) return;
  if ((value & VIRTIO_CONFIG_S_DRIVER_OK) && !(value & VIRTIO_CONFIG_S_FEATURES_OK)) return;
  const uint32_t added = value & ~old;
  // A refused FEATURES_OK stays clear; the driver reads status back to learn it (§3.1.1).
  if ((added & VIRTIO_CONFIG_S_FEATURES_OK) && !accept_features())
    value &= ~(VIRTIO_CONFIG_S_FEATURES_OK | VIRTIO_CONFIG_S_DRIVER_OK);
  device_status_ = value;
  if (value & added & VIRTIO_CONFIG_S_DRIVER_OK) {
    driver_ok_ = true;
    activate();
  }
}

bool MmioTransport::accept_features() const {
  if (driver_features_ & ~offered_features_) return false;
  return (driver_features_ & bit(VIRTIO_F_VERSION_1)) != 0;  // no legacy drivers
}

void MmioTransport::activate() {
  ActivateContext ctx;
  ctx.memory = &memory_;
  ctx.interrupt = this;
  ctx.acked_features = driver_features_;
  Status status;
  for (size_t i = 0; i < queues_.size(); ++i) {
    Queue& queue = queues_[i];
    queue.event_idx = (driver_features_ & bit(VIRTIO_RING_F_EVENT_IDX)) != 0;
    queue.indirect_desc = (driver_features_ & bit(VIRTIO_RING_F_INDIRECT_DESC)) != 0;
    // Queues the driver left off are the device's business (it may not need them all).
    if (queue.ready && status.ok()) {
      status = queue.validate(memory_);
      if (!status.ok()) status.prefix("queue " + std::to_string(i));
    }
    ctx.queues.push_back(&queue);
  }
  if (status.ok()) {
    std::lock_guard notify_lock(notify_mutex_);
    // A driver may have queued buffers (and kicked, which we ignored) before DRIVER_OK; no
    // further kick may come for them, so those queues get one kick after activation. Which
    // ones is decided now: once activate() returns, a device worker may be popping from them.
    std::vector<bool> kick(queues_.size());
    for (size_t i = 0; i < queues_.size(); ++i)
      kick[i] = queues_[i].ready && queues_[i].available(memory_) > 0;
    status = device_->activate(ctx);
    activated_ = status.ok();
    for (size_t i = 0; activated_ && i < queues_.size(); ++i) {
      if (kick[i] && !needs_reset_.load()) device_->queue_notify(i);
    }
  }
  if (!status.ok()) {
    AIRLOCK_LOG_WARN("virtio", "{}: activation failed: {}", device_->name(), status.to_string());
    signal_needs_reset();
  }
}

void MmioTransport::reset_locked() {
  {
    std::lock_guard notify_lock(notify_mutex_);
    // Only a device that was asked to activate has anything to stop; Linux resets every
    // device once before probing it.
    if (device_status_ & VIRTIO_CONFIG_S_DRIVER_OK) device_->reset();
    activated_ = false;
    for (auto& queue : queues_) queue.reset();
  }
  device_status_ = 0;
  device_features_sel_ = driver_features_sel_ = 0;
  driver_features_ = 0;
  queue_sel_ = shm_sel_ = 0;
  driver_ok_ = false;
  needs_reset_ = false;
  interrupt_status_ = 0;
}

void MmioTransport::shutdown() {
  std::lock_guard lock(mutex_);
  reset_locked();
}

uint32_t MmioTransport::status() const {
  std::lock_guard lock(mutex_);
  return device_status_ | (needs_reset_.load() ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
}

void MmioTransport::set_interrupt_trigger(std::function<void()> raise) {
  raise_ = std::move(raise);
}

void MmioTransport::notify(uint32_t queue_index) {
  std::lock_guard notify_lock(notify_mutex_);
  if (!activated_ || needs_reset_.load()) return;
  if (queue_index >= queues_.size() || !queues_[queue_index].ready) return;
  device_->queue_notify(queue_index);
}

void MmioTransport::signal_used_queue() noexcept {
  interrupt_status_.fetch_or(VIRTIO_MMIO_INT_VRING);
  if (raise_) raise_();
}

void MmioTransport::signal_config_change() noexcept {
  config_generation_.fetch_add(1);
  interrupt_status_.fetch_or(VIRTIO_MMIO_INT_CONFIG);
  if (raise_) raise_();
}

void MmioTransport::signal_needs_reset() noexcept {
  needs_reset_ = true;
  // Once DRIVER_OK is set the driver learns of it through a config change interrupt (§2.1.2).
  if (driver_ok_.load()) {
    interrupt_status_.fetch_or(VIRTIO_MMIO_INT_CONFIG);
    if (raise_) raise_();
  }
}

}  // namespace airlock::virtio
