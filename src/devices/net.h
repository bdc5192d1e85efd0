// virtio-net (virtio 1.2 §5.1): queue 0 receives (backend -> guest), queue 1 transmits
// (guest -> backend). No control queue, one queue pair.
//
// Features: MAC and STATUS (config space: mac[6], status, max_virtqueue_pairs), MRG_RXBUF, and
// the checksum/segmentation offloads the backend can carry (CSUM, HOST_TSO4/6/ECN for what the
// guest sends; GUEST_CSUM, GUEST_TSO4/6/ECN for what it receives, switched on in the backend
// only once the driver accepted them). UFO is not offered.
//
// A worker thread (started in activate(), joined in reset()/destructor) epolls the backend's
// fd, one eventfd per queue (queue_notify() only signals it) and a stop eventfd. Backpressure
// without unbounded buffering: when the guest has no receive buffers the backend is not read
// (at most one frame waits in the device) until the driver adds buffers and kicks; when the
// backend cannot take a frame, that one transmit chain is held and retried when the backend's
// fd becomes writable, and no further chain is popped.
//
// Receive: when the held chains cover the largest frame (and the first buffer holds the whole
// header), the backend reads straight into the guest's buffers (one readv over their iovecs, no
// bounce copy); otherwise the frame goes through a host buffer as before. Receive kicks are
// asked for only while the device is out of buffers (as QEMU does), so a driver refilling its
// ring does not exit to us each time.
//
// The driver is hostile: a queue it breaks marks the device as needing reset (the worker stops
// touching the queues); a malformed frame (bad header, too short or too long) is dropped and
// counted. The transmit header is copied and checked before the backend sees it, so the guest
// cannot change it after validation.
//
// Threads: device methods as in virtio/device.h (vCPU thread with the transport's lock; the
// event thread for queue_notify). set_link_up() and stats() from any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "base/fd.h"
#include "devices/net_backend.h"
#include "virtio/device.h"

namespace airlock::devices {

struct NetDeviceOptions {
  std::array<uint8_t, 6> mac = {0x02, 0x41, 0x4c, 0x00, 0x00, 0x02};  // locally administered
  uint16_t queue_size = 256;
  bool offloads = true;  // offer the backend's offloads (off: plain 1514-byte frames only)
};

struct NetStats {
  uint64_t rx_frames = 0, rx_bytes = 0, rx_dropped = 0;
  uint64_t tx_frames = 0, tx_bytes = 0, tx_dropped = 0;
  uint64_t rx_direct = 0;  // of rx_frames: read by the backend straight into guest buffers
};

class NetDevice final : public virtio::Device {
 public:
  static constexpr size_t kRxQueue = 0;
  static constexpr size_t kTxQueue = 1;
  // Largest frame, header included: a 64 KiB GSO super-frame plus Ethernet/VLAN headers.
  static constexpr size_t kMaxFrame = kVirtioNetHdrSize + 65536 + 14 + 4;
  // Chains handled per queue before the worker looks at the other queue and the stop fd.
  static constexpr int kBatch = 64;

  NetDevice(std::unique_ptr<NetBackend> backend, NetDeviceOptions options = {});
  ~NetDevice() override;

  uint32_t device_id() const override;
  const char* name() const override { return "net"; }
  uint64_t device_features() const override;
  size_t num_queues() const override { return 2; }
  uint16_t queue_max_size(size_t) const override { return options_.queue_size; }
  void read_config(uint64_t offset, uint8_t* data, size_t len) override;

  Status activate(const virtio::ActivateContext& ctx) override;
  void queue_notify(size_t index) override;
  void reset() override;

  // Link status as the guest sees it (VIRTIO_NET_S_LINK_UP); a change raises a config
  // interrupt when the device is running.
  void set_link_up(bool up);
  NetStats stats() const noexcept;

 private:
  void run() noexcept;
  // Each returns true when it stopped for its batch bound (more work is waiting).
  Result<bool> process_tx();
  Result<bool> process_rx();
  Status transmit_pending(bool& written);
  Status build_tx(const virtio::DescriptorChain& chain);
  Result<bool> pop_rx_chain();
  Result<bool> map_rx_direct();
  Status receive_direct(bool& none_waiting);
  size_t rx_chains_needed() const;
  Status deliver_pending_rx(bool& delivered);
  Status complete_rx(size_t chains, size_t len, bool copy);
  void update_interest();
  void stop_worker();
  void fail(const Status& st);

  std::unique_ptr<NetBackend> backend_;
  const NetDeviceOptions options_;
  const uint64_t features_;

  // Fixed for the device's life; the worker waits on all of them.
  UniqueFd epoll_, stop_fd_, rx_kick_, tx_kick_;

  // Set at activate(), used only by the worker until reset().
  const GuestMemory* mem_ = nullptr;
  virtio::Queue* rxq_ = nullptr;
  virtio::Queue* txq_ = nullptr;
  uint64_t acked_ = 0;
  std::thread worker_;

  // Worker state. tx: at most one chain held while the backend is full.
  std::optional<virtio::DescriptorChain> tx_pending_;
  std::array<uint8_t, kVirtioNetHdrSize> tx_hdr_{};
  std::vector<iovec> tx_iov_;
  // rx: at most one frame read from the backend and not yet delivered, plus the chains popped
  // for it (never more than the queue holds).
  std::vector<uint8_t> rx_frame_;
  size_t rx_len_ = 0;
  std::vector<virtio::DescriptorChain> rx_chains_;
  bool rx_wait_buffers_ = false;
  bool rx_kicks_ = true;  // the driver is asked to kick the receive queue
  // Direct receive: host mappings of the held chains' writable buffers, in order.
  std::vector<iovec> rx_iov_;
  uint32_t interest_ = 0;  // current epoll events on the backend fd
  bool used_tx_ = false, used_rx_ = false;

  std::mutex interrupt_mu_;  // guards interrupt_ against set_link_up()
  virtio::Interrupt* interrupt_ = nullptr;
  std::atomic<bool> link_up_{true};
  std::atomic<uint64_t> rx_frames_{0}, rx_bytes_{0}, rx_dropped_{0};
  std::atomic<uint64_t> tx_frames_{0}, tx_bytes_{0}, tx_dropped_{0};
  std::atomic<uint64_t> rx_direct_{0};
  bool init_ok_ = false;
};

}  // namespace airlock::devices
