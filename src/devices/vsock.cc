#include "devices/vsock.h"

#include <linux/virtio_ids.h>
#include <linux/virtio_vsock.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"

namespace airlock::devices {

namespace {

constexpr size_t kHeaderBytes = sizeof(virtio_vsock_hdr);  // 44
static_assert(kHeaderBytes == 44);

// Bytes in order, stored as the chunks they arrived in (no ring to size up front).
class ChunkQueue {
 public:
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  void append(std::string_view data) {
    if (data.empty()) return;
    chunks_.emplace_back(data);
    size_ += data.size();
  }
  size_t take(void* dst, size_t len) {
    auto* out = static_cast<uint8_t*>(dst);
    size_t done = 0;
    while (done < len && !chunks_.empty()) {
      std::string& front = chunks_.front();
      size_t n = std::min(len - done, front.size() - offset_);
      std::memcpy(out + done, front.data() + offset_, n);
      done += n;
      offset_ += n;
      if (offset_ == front.size()) {
        chunks_.pop_front();
        offset_ = 0;
      }
    }
    size_ -= done;
    return done;
  }
  void clear() {
    chunks_.clear();
    offset_ = 0;
    size_ = 0;
  }

 private:
  std::deque<std::string> chunks_;
  size_t offset_ = 0;
  size_t size_ = 0;
};

}  // namespace

struct VsockDevice::Header {
  uint64_t src_cid = 0, dst_cid = 0;
  uint32_t src_port = 0, dst_port = 0, len = 0;
  uint16_t type = 0, op = 0;
  uint32_t flags = 0, buf_alloc = 0, fwd_cnt = 0;

  static Header parse(const uint8_t* p) {
    virtio_vsock_hdr raw;
    std::memcpy(&raw, p, sizeof raw);
    // x86_64 only: little endian like the wire format.
    return Header{raw.src_cid, raw.dst_cid, raw.src_port, raw.dst_port,  raw.len,
                  raw.type,    raw.op,      raw.flags,    raw.buf_alloc, raw.fwd_cnt};
  }
  std::vector<uint8_t> encode() const {
    virtio_vsock_hdr raw{};
    raw.src_cid = src_cid;
    raw.dst_cid = dst_cid;
    raw.src_port = src_port;
    raw.dst_port = dst_port;
    raw.len = len;
    raw.type = type;
    raw.op = op;
    raw.flags = flags;
    raw.buf_alloc = buf_alloc;
    raw.fwd_cnt = fwd_cnt;
    std::vector<uint8_t> out(kHeaderBytes);
    std::memcpy(out.data(), &raw, kHeaderBytes);
    return out;
  }
};

struct VsockConnection {
  enum class State { kConnecting, kEstablished, kClosed };

  uint32_t local_port = 0;
  uint32_t peer_port = 0;
  State state = State::kConnecting;
  std::string error;  // why it closed (reset, device gone); empty while open

  // Guest -> host.
  ChunkQueue rx;
  uint32_t fwd_cnt = 0;            // bytes the host consumed
  uint32_t last_fwd_cnt_sent = 0;  // what the guest last heard from us
  bool peer_done_sending = false;  // SHUTDOWN with SEND: end of stream after rx drains

  // Host -> guest.
  ChunkQueue tx;
  uint32_t tx_cnt = 0;  // bytes placed in the guest's rx queue
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  bool peer_done_receiving = false;  // SHUTDOWN with RCV
  bool shutdown_write_requested = false;
  bool shutdown_write_sent = false;

  std::condition_variable cv;  // readers, writers and connect() wait here

  // What the guest can still take from us, minus what is already queued.
  uint32_t peer_credit() const {
    uint32_t in_flight = tx_cnt - peer_fwd_cnt;
    if (in_flight >= peer_buf_alloc) return 0;
    return peer_buf_alloc - in_flight;
  }
  bool has_data_to_send() const {
    return state == State::kEstablished && !tx.empty() && peer_credit() > 0;
  }
  bool wants_shutdown_packet() const {
    return state == State::kEstablished && shutdown_write_requested && !shutdown_write_sent &&
           tx.empty();
  }
};

struct VsockListenState {
  uint32_t port = 0;
  bool closed = false;
  std::string error;
  std::deque<std::shared_ptr<VsockConnection>> backlog;
  std::condition_variable cv;
};

// ---------------------------------------------------------------------------------------------
// VsockStream

VsockStream::VsockStream(std::shared_ptr<VsockDevice> device, std::shared_ptr<VsockConnection> conn)
    : device_(std::move(device)), conn_(std::move(conn)) {}

VsockStream::~VsockStream() {
  close();
}

uint32_t VsockStream::local_port() const {
  return conn_->local_port;
}
uint32_t VsockStream::peer_port() const {
  return conn_->peer_port;
}

Result<size_t> VsockStream::read(void* buf, size_t len, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(device_->mutex_);
  VsockConnection& c = *conn_;
  for (;;) {
    if (!c.rx.empty()) {
      size_t n = c.rx.take(buf, len);
      c.fwd_cnt += static_cast<uint32_t>(n);
      device_->maybe_credit_update(c);
      return n;
    }
    if (c.peer_done_sending) return size_t{0};
    if (c.state == VsockConnection::State::kClosed)
      return Status(Errc::closed, "vsock: " + c.error);
    if (len == 0) return size_t{0};
    if (c.cv.wait_until(lock, deadline) == std::cv_status::timeout && c.rx.empty() &&
        !c.peer_done_sending && c.state != VsockConnection::State::kClosed)
      return Status(Errc::timeout, "vsock: read timed out");
  }
}

Status VsockStream::write(std::string_view data, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(device_->mutex_);
  VsockConnection& c = *conn_;
  while (!data.empty()) {
    if (c.state == VsockConnection::State::kClosed)
      return Status(Errc::closed, "vsock: " + c.error);
    if (c.peer_done_receiving || c.shutdown_write_requested)
      return Status(Errc::closed, "vsock: connection shut down for writing");
    // Queue no more than the guest can take plus a bounded backlog.
    size_t room = 0;
    if (c.tx.size() < VsockDevice::kTxPendingBytes) {
      room = std::min<size_t>(VsockDevice::kTxPendingBytes - c.tx.size(),
                              c.peer_credit() > c.tx.size() ? c.peer_credit() - c.tx.size() : 0);
    }
    if (room == 0) {
      AIRLOCK_LOG_DEBUG(
          "vsock", "write to guest port {} waits: peer buf_alloc {} fwd_cnt {}, sent {}, queued {}",
          c.peer_port, c.peer_buf_alloc, c.peer_fwd_cnt, c.tx_cnt, c.tx.size());
      if (c.cv.wait_until(lock, deadline) == std::cv_status::timeout)
        return Status(Errc::timeout, "vsock: write timed out waiting for the guest's credit");
      continue;
    }
    size_t n = std::min(room, data.size());
    c.tx.append(data.substr(0, n));
    data.remove_prefix(n);
    device_->wake_worker();
  }
  return ok_status();
}

void VsockStream::shutdown_write() {
  device_->stream_shutdown_write(conn_);
}

void VsockStream::close() {
  if (conn_) device_->stream_close(conn_);
}

// ---------------------------------------------------------------------------------------------
// VsockListener

VsockListener::VsockListener(std::shared_ptr<VsockDevice> device,
                             std::shared_ptr<VsockListenState> state)
    : device_(std::move(device)), state_(std::move(state)) {}

VsockListener::~VsockListener() {
  close();
}

uint32_t VsockListener::port() const {
  return state_->port;
}

Result<std::unique_ptr<VsockStream>> VsockListener::accept(Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(device_->mutex_);
  for (;;) {
    if (!state_->backlog.empty()) {
      auto conn = std::move(state_->backlog.front());
      state_->backlog.pop_front();
      return std::make_unique<VsockStream>(device_, std::move(conn));
    }
    if (state_->closed) return Status(Errc::closed, "vsock: listener closed: " + state_->error);
    if (state_->cv.wait_until(lock, deadline) == std::cv_status::timeout &&
        state_->backlog.empty() && !state_->closed)
      return Status(Errc::timeout, "vsock: no connection from the guest in time");
  }
}

void VsockListener::close() {
  std::lock_guard lock(device_->mutex_);
  if (state_->closed) return;
  state_->closed = true;
  state_->error = "closed by the host";
  auto it = device_->listeners_.find(state_->port);
  if (it != device_->listeners_.end() && it->second == state_) device_->listeners_.erase(it);
  // Connections accepted by the device but never by the host are reset.
  for (auto& conn : state_->backlog) {
    device_->queue_rst(conn->local_port, conn->peer_port);
    device_->drop_connection(conn, "listener closed");
  }
  state_->backlog.clear();
  state_->cv.notify_all();
  device_->wake_worker();
}

// ---------------------------------------------------------------------------------------------
// VsockDevice: host API

std::shared_ptr<VsockDevice> VsockDevice::create(uint64_t guest_cid) {
  return std::shared_ptr<VsockDevice>(new VsockDevice(guest_cid));
}

VsockDevice::VsockDevice(uint64_t guest_cid) : guest_cid_(guest_cid) {}

VsockDevice::~VsockDevice() {
  reset();
}

uint32_t VsockDevice::device_id() const {
  return VIRTIO_ID_VSOCK;
}

void VsockDevice::read_config(uint64_t offset, uint8_t* data, size_t len) {
  // struct virtio_vsock_config { le64 guest_cid; }
  uint8_t config[8];
  std::memcpy(config, &guest_cid_, sizeof config);
  for (size_t i = 0; i < len; ++i) data[i] = (offset + i < sizeof config) ? config[offset + i] : 0;
}

Result<std::unique_ptr<VsockListener>> VsockDevice::listen(uint32_t port) {
  std::lock_guard lock(mutex_);
  if (!shutdown_reason_.empty()) return Status(Errc::closed, "vsock: " + shutdown_reason_);
  if (listeners_.count(port))
    return Status(Errc::invalid_argument, "vsock: port already listened on");
  auto state = std::make_shared<VsockListenState>();
  state->port = port;
  listeners_[port] = state;
  return std::make_unique<VsockListener>(shared_from_this(), std::move(state));
}

Result<std::unique_ptr<VsockStream>> VsockDevice::connect(uint32_t guest_port, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mutex_);
  if (!shutdown_reason_.empty()) return Status(Errc::closed, "vsock: " + shutdown_reason_);
  if (connections_.size() >= kMaxConnections)
    return Status(Errc::resource_exhausted, "vsock: too many connections");
  auto conn = std::make_shared<VsockConnection>();
  conn->local_port = allocate_local_port();
  conn->peer_port = guest_port;
  connections_[{conn->local_port, guest_port}] = conn;
  queue_control(VIRTIO_VSOCK_OP_REQUEST, conn->local_port, guest_port, 0, conn.get());
  wake_worker();
  while (conn->state == VsockConnection::State::kConnecting) {
    if (conn->cv.wait_until(lock, deadline) == std::cv_status::timeout &&
        conn->state == VsockConnection::State::kConnecting) {
      queue_rst(conn->local_port, guest_port);
      drop_connection(conn, "connect timed out");
      wake_worker();
      return Status(Errc::timeout,
                    "vsock: guest port " + std::to_string(guest_port) + " did not answer in time");
    }
  }
  if (conn->state == VsockConnection::State::kClosed)
    return Status(Errc::unavailable, "vsock: connect to guest port " + std::to_string(guest_port) +
                                         " failed: " + conn->error);
  return std::make_unique<VsockStream>(shared_from_this(), std::move(conn));
}

void VsockDevice::shutdown(const std::string& reason) {
  std::lock_guard lock(mutex_);
  if (!shutdown_reason_.empty()) return;
  shutdown_reason_ = reason.empty() ? std::string("device shut down") : reason;
  auto conns = connections_;
  for (auto& [key, conn] : conns) drop_connection(conn, shutdown_reason_);
  for (auto& [port, l] : listeners_) {
    l->closed = true;
    l->error = shutdown_reason_;
    for (auto& conn : l->backlog) drop_connection(conn, shutdown_reason_);
    l->backlog.clear();
    l->cv.notify_all();
  }
  listeners_.clear();
  control_.clear();
}

uint64_t VsockDevice::packets_dropped() const {
  std::lock_guard lock(mutex_);
  return packets_dropped_;
}
uint64_t VsockDevice::resets_sent() const {
  std::lock_guard lock(mutex_);
  return resets_sent_;
}
size_t VsockDevice::connection_count() const {
  std::lock_guard lock(mutex_);
  return connections_.size();
}

void VsockDevice::stream_close(const std::shared_ptr<VsockConnection>& conn) {
  std::lock_guard lock(mutex_);
  if (conn->state == VsockConnection::State::kClosed) return;
  // A full close per §5.10.6.6 would be SHUTDOWN then the peer's RST; an RST right away tells
  // the guest the same and needs no lingering state.
  queue_rst(conn->local_port, conn->peer_port);
  drop_connection(conn, "closed by the host");
  wake_worker();
}

void VsockDevice::stream_shutdown_write(const std::shared_ptr<VsockConnection>& conn) {
  std::lock_guard lock(mutex_);
  if (conn->state == VsockConnection::State::kClosed || conn->shutdown_write_requested) return;
  conn->shutdown_write_requested = true;
  conn->cv.notify_all();
  wake_worker();
}

// Tells the guest about consumed bytes once a quarter of its window is free again; every data
// packet carries fwd_cnt too, so this only matters when the host has nothing to send.
void VsockDevice::maybe_credit_update(VsockConnection& conn) {
  if (conn.state != VsockConnection::State::kEstablished) return;
  if (conn.fwd_cnt - conn.last_fwd_cnt_sent >= kRxBufferBytes / 4) {
    queue_control(VIRTIO_VSOCK_OP_CREDIT_UPDATE, conn.local_port, conn.peer_port, 0, &conn);
    wake_worker();
  }
}

uint32_t VsockDevice::allocate_local_port() {
  for (;;) {
    uint32_t port = next_local_port_++;
    if (next_local_port_ == 0) next_local_port_ = 1u << 30;
    if (listeners_.count(port)) continue;
    bool used = false;
    for (const auto& [key, c] : connections_)
      if (key.first == port) used = true;
    if (!used) return port;
  }
}

void VsockDevice::drop_connection(const std::shared_ptr<VsockConnection>& conn, std::string why) {
  auto it = connections_.find({conn->local_port, conn->peer_port});
  if (it != connections_.end() && it->second == conn) connections_.erase(it);
  if (conn->state != VsockConnection::State::kClosed) {
    conn->state = VsockConnection::State::kClosed;
    conn->error = std::move(why);
  }
  conn->tx.clear();
  conn->cv.notify_all();
}

void VsockDevice::queue_control(uint16_t op, uint32_t local_port, uint32_t peer_port,
                                uint32_t flags, const VsockConnection* conn) {
  Header h;
  h.src_cid = kHostCid;
  h.dst_cid = guest_cid_;
  h.src_port = local_port;
  h.dst_port = peer_port;
  h.type = VIRTIO_VSOCK_TYPE_STREAM;
  h.op = op;
  h.flags = flags;
  if (conn) {
    h.buf_alloc = kRxBufferBytes;
    h.fwd_cnt = conn->fwd_cnt;
    const_cast<VsockConnection*>(conn)->last_fwd_cnt_sent = conn->fwd_cnt;
  }
  control_.push_back(h.encode());
}

void VsockDevice::queue_rst(uint32_t local_port, uint32_t peer_port) {
  ++resets_sent_;
  queue_control(VIRTIO_VSOCK_OP_RST, local_port, peer_port, 0, nullptr);
}

// ---------------------------------------------------------------------------------------------
// VsockDevice: queues and worker

Status VsockDevice::activate(const virtio::ActivateContext& ctx) {
  if (ctx.memory == nullptr || ctx.interrupt == nullptr || ctx.queues.size() != 3 ||
      !ctx.queues[0]->ready || !ctx.queues[1]->ready)
    return Status(Errc::protocol, "vsock: the rx and tx queues are not set up");
  reset();  // a second DRIVER_OK without a reset in between: start over cleanly
  std::lock_guard lock(mutex_);
  memory_ = ctx.memory;
  rx_ = ctx.queues[0];
  tx_ = ctx.queues[1];
  interrupt_ = ctx.interrupt;
  broken_ = false;
  worker_stop_ = false;
  worker_kicked_ = true;  // the guest may have queued packets before DRIVER_OK was seen
  worker_ = std::thread([this] { worker_loop(); });
  return ok_status();
}

void VsockDevice::reset() {
  {
    std::lock_guard lock(mutex_);
    worker_stop_ = true;
    worker_cv_.notify_all();
  }
  if (worker_.joinable()) worker_.join();
  std::lock_guard lock(mutex_);
  memory_ = nullptr;
  rx_ = tx_ = nullptr;
  interrupt_ = nullptr;
  tx_unsignalled_ = 0;
  tx_signal_due_.reset();
  // The guest forgot every connection when its driver reset (§5.10.6.7).
  auto conns = connections_;
  for (auto& [key, conn] : conns) drop_connection(conn, "the guest reset its vsock device");
  control_.clear();
}

void VsockDevice::queue_notify(size_t index) {
  // rx: new buffers to fill; tx: packets to read; event: nothing to do (we send no events).
  if (index > 1) return;
  std::lock_guard lock(mutex_);
  wake_worker();
}

void VsockDevice::wake_worker() {
  worker_kicked_ = true;
  worker_cv_.notify_one();
}

void VsockDevice::worker_loop() {
  std::unique_lock lock(mutex_);
  while (!worker_stop_) {
    auto woken = [this] { return worker_kicked_ || worker_stop_; };
    if (tx_signal_due_)
      worker_cv_.wait_until(lock, *tx_signal_due_, woken);
    else
      worker_cv_.wait(lock, woken);
    if (worker_stop_) break;
    worker_kicked_ = false;
    if (broken_ || memory_ == nullptr) {
      tx_unsignalled_ = 0;
      tx_signal_due_.reset();
      continue;
    }
    bool rx_used = false;
    size_t tx_used = 0;
    Status st;
    // Alternate until neither side makes progress: replies to tx packets need rx buffers, and
    // tx processing pauses while too many replies wait.
    for (int round = 0; round < 64 && st.ok(); ++round) {
      bool rx_progress = false;
      size_t tx_progress = 0;
      st = process_rx(rx_progress);
      if (st.ok()) st = process_tx(tx_progress);
      rx_used |= rx_progress;
      tx_used += tx_progress;
      if (!rx_progress && !tx_progress) break;
      if (round == 63) {
        worker_kicked_ = true;  // yield the lock to host threads, then go on
        AIRLOCK_LOG_DEBUG("vsock", "busy: {} replies queued, {} connections, rx {} tx {} available",
                          control_.size(), connections_.size(), rx_->available(*memory_),
                          tx_->available(*memory_));
      }
    }
    signal_used(rx_used, tx_used);
    if (!st.ok()) {
      AIRLOCK_LOG_WARN("vsock", "stopping the device: {}", st.to_string());
      broken_ = true;
      auto conns = connections_;
      for (auto& [key, conn] : conns) drop_connection(conn, "the guest broke its vsock queues");
      interrupt_->signal_needs_reset();
    }
    if (worker_kicked_) {
      lock.unlock();
      std::this_thread::yield();
      lock.lock();
    }
  }
}

// One interrupt covers both queues (the driver scans every queue on it), so a round that
// consumed a request and queued its reply raises one, not two. Used tx buffers alone wait a
// little (kTxSignalDelay) for a reason to interrupt anyway: the guest only reclaims their memory,
// nothing waits on them, and under a request-reply load the next request comes within that
// time, so one interrupt per exchange instead of two (each costs the guest an interrupt and a
// kworker wake-up, dear when emulated). kTxSignalBatch bounds what the guest cannot reclaim.
void VsockDevice::signal_used(bool rx_used, size_t tx_used) {
  const auto now = std::chrono::steady_clock::now();
  tx_unsignalled_ += tx_used;
  bool notify = rx_used && rx_->should_notify(*memory_);
  const bool tx_due = tx_unsignalled_ > 0 && (rx_used || tx_unsignalled_ >= kTxSignalBatch ||
                                              (tx_signal_due_ && now >= *tx_signal_due_));
  if (tx_due) {
    notify |= tx_->should_notify(*memory_);
    tx_unsignalled_ = 0;
    tx_signal_due_.reset();
  } else if (tx_unsignalled_ > 0 && !tx_signal_due_) {
    tx_signal_due_ = now + kTxSignalDelay;
  }
  if (notify) interrupt_->signal_used_queue();
}

Status VsockDevice::process_tx(size_t& used) {
  std::vector<uint8_t> buf;
  while (control_.size() < kMaxControlPackets) {
    AIRLOCK_ASSIGN_OR_RETURN(auto chain, tx_->pop(*memory_));
    if (!chain) return ok_status();
    virtio::ChainReader reader(*memory_, *chain);
    size_t total = std::min<size_t>(reader.remaining(), kHeaderBytes + kMaxPacketPayload);
    buf.resize(total);
    AIRLOCK_RETURN_IF_ERROR(reader.read_exact(buf.data(), total));
    AIRLOCK_RETURN_IF_ERROR(tx_->add_used(*memory_, chain->head, 0));
    ++used;
    if (total < kHeaderBytes) {
      ++packets_dropped_;
      continue;
    }
    Header h = Header::parse(buf.data());
    if (h.len > total - kHeaderBytes) {
      // Claims more payload than it carries (or more than a packet may): drop it, and reset
      // its connection since the stream has now lost bytes.
      ++packets_dropped_;
      if (h.src_cid == guest_cid_ && h.op != VIRTIO_VSOCK_OP_RST) {
        auto it = connections_.find({h.dst_port, h.src_port});
        if (it != connections_.end()) drop_connection(it->second, "guest sent a malformed packet");
        queue_rst(h.dst_port, h.src_port);
      }
      continue;
    }
    handle_packet(
        h, std::string_view(reinterpret_cast<const char*>(buf.data()) + kHeaderBytes, h.len));
  }
  return ok_status();
}

void VsockDevice::handle_packet(const Header& h, std::string_view payload) {
  // Only the guest's own CID may speak, only to us (§5.10.6.3: the device checks src_cid).
  if (h.src_cid != guest_cid_ || h.dst_cid != kHostCid) {
    ++packets_dropped_;
    return;
  }
  if (h.type != VIRTIO_VSOCK_TYPE_STREAM) {
    ++packets_dropped_;
    if (h.op != VIRTIO_VSOCK_OP_RST) queue_rst(h.dst_port, h.src_port);
    return;
  }
  auto key = std::make_pair(h.dst_port, h.src_port);
  auto it = connections_.find(key);
  std::shared_ptr<VsockConnection> conn = it == connections_.end() ? nullptr : it->second;

  if (h.op == VIRTIO_VSOCK_OP_REQUEST) {
    if (conn) {  // a second REQUEST on a live connection
      queue_rst(h.dst_port, h.src_port);
      drop_connection(conn, "guest re-requested an open connection");
      return;
    }
    auto lit = listeners_.find(h.dst_port);
    if (lit == listeners_.end() || lit->second->backlog.size() >= kAcceptBacklog ||
        connections_.size() >= kMaxConnections || !shutdown_reason_.empty()) {
      queue_rst(h.dst_port, h.src_port);
      return;
    }
    conn = std::make_shared<VsockConnection>();
    conn->local_port = h.dst_port;
    conn->peer_port = h.src_port;
    conn->state = VsockConnection::State::kEstablished;
    conn->peer_buf_alloc = h.buf_alloc;
    conn->peer_fwd_cnt = h.fwd_cnt;
    connections_[key] = conn;
    queue_control(VIRTIO_VSOCK_OP_RESPONSE, h.dst_port, h.src_port, 0, conn.get());
    lit->second->backlog.push_back(conn);
    lit->second->cv.notify_all();
    return;
  }

  if (!conn) {
    // Unknown connection: answer anything but an RST with an RST (§5.10.6.4).
    if (h.op != VIRTIO_VSOCK_OP_RST)
      queue_rst(h.dst_port, h.src_port);
    else
      ++packets_dropped_;
    return;
  }

  // Every packet carries the peer's credit.
  conn->peer_buf_alloc = h.buf_alloc;
  conn->peer_fwd_cnt = h.fwd_cnt;
  conn->cv.notify_all();

  switch (h.op) {
    case VIRTIO_VSOCK_OP_RESPONSE:
      if (conn->state != VsockConnection::State::kConnecting) {
        queue_rst(h.dst_port, h.src_port);
        drop_connection(conn, "guest sent an unexpected RESPONSE");
        return;
      }
      conn->state = VsockConnection::State::kEstablished;
      return;
    case VIRTIO_VSOCK_OP_RST:
      drop_connection(conn, conn->state == VsockConnection::State::kConnecting
                                ? "connection refused by the guest"
                                : "connection reset by the guest");
      return;
    case VIRTIO_VSOCK_OP_RW:
      if (conn->state != VsockConnection::State::kEstablished || conn->peer_done_sending) {
        queue_rst(h.dst_port, h.src_port);
        drop_connection(conn, "guest sent data on a connection not open for it");
        return;
      }
      // The guest may only send what we advertised room for; past that it is misbehaving.
      if (conn->rx.size() + payload.size() > kRxBufferBytes) {
        queue_rst(h.dst_port, h.src_port);
        drop_connection(conn, "guest exceeded the advertised credit");
        return;
      }
      conn->rx.append(payload);
      return;
    case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
      return;  // credit already taken above
    case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
      queue_control(VIRTIO_VSOCK_OP_CREDIT_UPDATE, h.dst_port, h.src_port, 0, conn.get());
      return;
    case VIRTIO_VSOCK_OP_SHUTDOWN:
      if (h.flags & VIRTIO_VSOCK_SHUTDOWN_RCV) conn->peer_done_receiving = true;
      if (h.flags & VIRTIO_VSOCK_SHUTDOWN_SEND) conn->peer_done_sending = true;
      if (conn->peer_done_receiving && conn->peer_done_sending) {
        // The guest closed: it waits for our RST (§5.10.6.6). Buffered data stays readable.
        queue_rst(h.dst_port, h.src_port);
        connections_.erase(key);
        conn->tx.clear();
      }
      return;
    default:
      ++packets_dropped_;
      queue_rst(h.dst_port, h.src_port);
      drop_connection(conn, "guest sent an unknown operation");
      return;
  }
}

bool VsockDevice::has_rx_work() const {
  if (!control_.empty()) return true;
  for (const auto& [key, c] : connections_)
    if (c->has_data_to_send() || c->wants_shutdown_packet()) return true;
  return false;
}

Status VsockDevice::process_rx(bool& used_any) {
  std::vector<uint8_t> payload;
  while (has_rx_work()) {
    AIRLOCK_ASSIGN_OR_RETURN(auto chain, rx_->pop(*memory_));
    if (!chain) return ok_status();  // the guest kicks rx when it adds buffers
    virtio::ChainWriter writer(*memory_, *chain);
    if (writer.remaining() < kHeaderBytes) {
      // Too small to hold a header: hand it back empty and move on.
      AIRLOCK_RETURN_IF_ERROR(rx_->add_used(*memory_, chain->head, 0));
      used_any = true;
      continue;
    }
    if (!control_.empty()) {
      AIRLOCK_RETURN_IF_ERROR(writer.write_exact(control_.front().data(), kHeaderBytes));
      control_.pop_front();
    } else {
      // Data (or a deferred SHUTDOWN) from the next connection in round-robin order.
      std::vector<std::shared_ptr<VsockConnection>> ready;
      for (const auto& [key, c] : connections_)
        if (c->has_data_to_send() || c->wants_shutdown_packet()) ready.push_back(c);
      VsockConnection& c = *ready[rr_cursor_++ % ready.size()];
      Header h;
      h.src_cid = kHostCid;
      h.dst_cid = guest_cid_;
      h.src_port = c.local_port;
      h.dst_port = c.peer_port;
      h.type = VIRTIO_VSOCK_TYPE_STREAM;
      h.buf_alloc = kRxBufferBytes;
      h.fwd_cnt = c.fwd_cnt;
      c.last_fwd_cnt_sent = c.fwd_cnt;
      if (c.has_data_to_send()) {
        size_t n = std::min<size_t>(
            {c.tx.size(), c.peer_credit(), kMaxPacketPayload, writer.remaining() - kHeaderBytes});
        payload.resize(n);
        c.tx.take(payload.data(), n);
        c.tx_cnt += static_cast<uint32_t>(n);
        h.op = VIRTIO_VSOCK_OP_RW;
        h.len = static_cast<uint32_t>(n);
        c.cv.notify_all();  // writers waiting for room
      } else {
        h.op = VIRTIO_VSOCK_OP_SHUTDOWN;
        h.flags = VIRTIO_VSOCK_SHUTDOWN_SEND;
        c.shutdown_write_sent = true;
        payload.clear();
      }
      AIRLOCK_RETURN_IF_ERROR(writer.write_exact(h.encode().data(), kHeaderBytes));
      if (!payload.empty())
        AIRLOCK_RETURN_IF_ERROR(writer.write_exact(payload.data(), payload.size()));
    }
    AIRLOCK_RETURN_IF_ERROR(
        rx_->add_used(*memory_, chain->head, static_cast<uint32_t>(writer.written())));
    used_any = true;
  }
  return ok_status();
}

}  // namespace airlock::devices
