// virtio-vsock (virtio 1.2 §5.10), in userspace: the guest's stream sockets to CID 2 end here,
// in the host process, as VsockStream objects (no vhost, no host sockets).
//
// The device speaks the connection protocol of §5.10.6 (REQUEST, RESPONSE, RW, CREDIT_UPDATE,
// CREDIT_REQUEST, SHUTDOWN, RST) with credit-based flow control both ways: the guest never gets
// more than it advertised room for (buf_alloc - (sent - fwd_cnt)), and a guest that sends past
// the room we advertised is reset. Every buffer is bounded: per connection kRxBufferBytes from
// the guest and kTxPendingBytes toward it; host writers block (with a timeout) instead.
// Packets to unknown ports or connections are answered with RST. The guest is hostile: a
// malformed packet is dropped (or resets its connection); a broken queue stops the device.
//
// Threads: the Device methods follow device.h. One worker thread (started at activate(),
// joined at reset()/destruction) moves packets between the queues and the connections, so host
// writes need no vCPU exit. listen()/connect() and every VsockStream/VsockListener method may be
// called from any thread; a stream allows one reader and one writer at a time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "virtio/device.h"

namespace airlock::devices {

class VsockDevice;
struct VsockConnection;
struct VsockListenState;

using Millis = std::chrono::milliseconds;

// The host end of one connection. Closing (or destroying) it resets the guest's end.
class VsockStream {
 public:
  VsockStream(std::shared_ptr<VsockDevice> device, std::shared_ptr<VsockConnection> conn);
  ~VsockStream();
  VsockStream(const VsockStream&) = delete;
  VsockStream& operator=(const VsockStream&) = delete;

  // Reads up to len bytes; 0 means the guest shut down its sending side (end of stream).
  // Errc::timeout after `timeout`; Errc::closed when the connection was reset or closed.
  Result<size_t> read(void* buf, size_t len, Millis timeout);
  // Writes all of data, waiting for the guest's credit; Errc::timeout leaves an unknown
  // prefix written.
  Status write(std::string_view data, Millis timeout);
  // No more data from us (SHUTDOWN with SEND once queued data went out).
  void shutdown_write();
  // Resets the connection; pending and later calls fail with Errc::closed. Idempotent.
  void close();

  uint32_t local_port() const;
  uint32_t peer_port() const;

 private:
  std::shared_ptr<VsockDevice> device_;
  std::shared_ptr<VsockConnection> conn_;
};

// Guest-initiated connections to one host port.
class VsockListener {
 public:
  VsockListener(std::shared_ptr<VsockDevice> device, std::shared_ptr<VsockListenState> state);
  ~VsockListener();
  VsockListener(const VsockListener&) = delete;
  VsockListener& operator=(const VsockListener&) = delete;

  Result<std::unique_ptr<VsockStream>> accept(Millis timeout);
  void close();
  uint32_t port() const;

 private:
  std::shared_ptr<VsockDevice> device_;
  std::shared_ptr<VsockListenState> state_;
};

class VsockDevice final : public virtio::Device, public std::enable_shared_from_this<VsockDevice> {
 public:
  static constexpr uint64_t kHostCid = 2;
  static constexpr uint64_t kDefaultGuestCid = 3;
  // Room we advertise to the guest per connection, and the most we queue toward it.
  static constexpr uint32_t kRxBufferBytes = 1u << 20;
  static constexpr uint32_t kTxPendingBytes = 1u << 20;
  static constexpr uint32_t kMaxPacketPayload = 64 * 1024;  // Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE
  static constexpr size_t kMaxConnections = 256;
  static constexpr size_t kAcceptBacklog = 16;
  // Replies waiting for rx buffers; beyond it we stop reading the tx queue (backpressure).
  static constexpr size_t kMaxControlPackets = 256;
  // Used tx buffers are signalled with the next rx interrupt, or after this long, or once this
  // many wait (signal_used()).
  static constexpr std::chrono::milliseconds kTxSignalDelay{5};
  static constexpr size_t kTxSignalBatch = 16;

  static std::shared_ptr<VsockDevice> create(uint64_t guest_cid = kDefaultGuestCid);
  ~VsockDevice() override;

  // virtio::Device
  uint32_t device_id() const override;
  const char* name() const override { return "vsock"; }
  uint64_t device_features() const override { return 0; }  // stream sockets only
  size_t num_queues() const override { return 3; }         // rx, tx, event
  void read_config(uint64_t offset, uint8_t* data, size_t len) override;
  Status activate(const virtio::ActivateContext& ctx) override;
  void queue_notify(size_t index) override;
  void reset() override;

  // Accepts guest connections to host port `port`.
  Result<std::unique_ptr<VsockListener>> listen(uint32_t port);
  // Connects to the guest's port; waits for its RESPONSE (or RST: Errc::unavailable).
  Result<std::unique_ptr<VsockStream>> connect(uint32_t guest_port, Millis timeout);
  // Fails every connection, listener and later call with Errc::closed and `reason` (the
  // sandbox is going away or died). Idempotent.
  void shutdown(const std::string& reason);

  uint64_t guest_cid() const noexcept { return guest_cid_; }
  // Counters for tests and diagnostics.
  uint64_t packets_dropped() const;
  uint64_t resets_sent() const;
  size_t connection_count() const;

 private:
  friend class VsockStream;
  friend class VsockListener;
  struct Header;  // virtio_vsock_hdr in host byte order

  explicit VsockDevice(uint64_t guest_cid);

  // Everything below runs with mutex_ held.
  void worker_loop();
  Status process_tx(size_t& used);
  Status process_rx(bool& used_any);
  void handle_packet(const Header& h, std::string_view payload);
  void queue_control(uint16_t op, uint32_t local_port, uint32_t peer_port, uint32_t flags,
                     const VsockConnection* conn);
  void queue_rst(uint32_t local_port, uint32_t peer_port);
  void drop_connection(const std::shared_ptr<VsockConnection>& conn, std::string why);
  bool has_rx_work() const;
  void signal_used(bool rx_used, size_t tx_used);
  void wake_worker();
  uint32_t allocate_local_port();

  // Called by streams (take the lock themselves).
  void stream_close(const std::shared_ptr<VsockConnection>& conn);
  void stream_shutdown_write(const std::shared_ptr<VsockConnection>& conn);
  void maybe_credit_update(VsockConnection& conn);

  const uint64_t guest_cid_;
  mutable std::mutex mutex_;
  std::condition_variable worker_cv_;
  bool worker_kicked_ = false;
  bool worker_stop_ = false;
  std::thread worker_;

  // Set at activate(), cleared at reset().
  const GuestMemory* memory_ = nullptr;
  virtio::Queue* rx_ = nullptr;
  virtio::Queue* tx_ = nullptr;
  virtio::Interrupt* interrupt_ = nullptr;
  bool broken_ = false;

  std::string shutdown_reason_;  // non-empty once shut down
  // Key: (host port, guest port).
  std::map<std::pair<uint32_t, uint32_t>, std::shared_ptr<VsockConnection>> connections_;
  std::map<uint32_t, std::shared_ptr<VsockListenState>> listeners_;
  std::deque<std::vector<uint8_t>> control_;  // encoded headers waiting for rx buffers
  uint32_t next_local_port_ = 1u << 30;
  size_t rr_cursor_ = 0;       // round-robin among connections with data for the guest
  size_t tx_unsignalled_ = 0;  // used tx buffers the guest has not been interrupted for
  std::optional<std::chrono::steady_clock::time_point> tx_signal_due_;
  uint64_t packets_dropped_ = 0;
  uint64_t resets_sent_ = 0;
};

}  // namespace airlock::devices
