#include "devices/net.h"

#include <errno.h>
#include <linux/virtio_ids.h>
// <linux/virtio_net.h> has a struct member named `class`, which C++ cannot parse.
#define class class_
#include <linux/virtio_net.h>
#undef class
#include <poll.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cstring>

#include "base/log.h"

namespace airlock::devices {

namespace {

constexpr uint64_t bit(unsigned b) {
  return 1ull << b;
}

constexpr uint64_t kHostOffloads = bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4) |
                                   bit(VIRTIO_NET_F_HOST_TSO6) | bit(VIRTIO_NET_F_HOST_ECN);
constexpr uint64_t kGuestOffloads = bit(VIRTIO_NET_F_GUEST_CSUM) | bit(VIRTIO_NET_F_GUEST_TSO4) |
                                    bit(VIRTIO_NET_F_GUEST_TSO6) | bit(VIRTIO_NET_F_GUEST_ECN);

// Drops offload bits whose prerequisites are missing (virtio 1.2 §5.1.3.1).
uint64_t consistent_offloads(uint64_t f) {
  f &= kHostOffloads | kGuestOffloads;
  if (!(f & bit(VIRTIO_NET_F_CSUM)))
    f &= ~(bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6) | bit(VIRTIO_NET_F_HOST_ECN));
  if (!(f & (bit(VIRTIO_NET_F_HOST_TSO4) | bit(VIRTIO_NET_F_HOST_TSO6))))
    f &= ~bit(VIRTIO_NET_F_HOST_ECN);
  if (!(f & bit(VIRTIO_NET_F_GUEST_CSUM)))
    f &= ~(bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6) |
           bit(VIRTIO_NET_F_GUEST_ECN));
  if (!(f & (bit(VIRTIO_NET_F_GUEST_TSO4) | bit(VIRTIO_NET_F_GUEST_TSO6))))
    f &= ~bit(VIRTIO_NET_F_GUEST_ECN);
  return f;
}

enum EpollTag : uint64_t { kStopTag, kRxKickTag, kTxKickTag, kBackendTag };

constexpr size_t kMinFrame = kVirtioNetHdrSize + 14;  // header + Ethernet header
constexpr size_t kMaxSegments = 1024;                 // UIO_MAXIOV

uint16_t le16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | p[1] << 8);
}

// Host mappings of [addr, addr+len), split where guest RAM regions meet.
bool map_guest_range(const GuestMemory& mem, uint64_t addr, uint64_t len, std::vector<iovec>& out) {
  while (len > 0) {
    const MemoryRegion* hit = nullptr;
    for (const auto& r : mem.regions())
      if (addr >= r.guest_addr && addr - r.guest_addr < r.size) hit = &r;
    if (!hit) return false;
    const uint64_t n = std::min(len, hit->size - (addr - hit->guest_addr));
    out.push_back({hit->host + (addr - hit->guest_addr), n});
    addr += n;
    len -= n;
  }
  return true;
}

// Whether a transmit header asks only for what was negotiated, and makes sense for a frame of
// `frame_len` bytes. The kernel checks again; this keeps the guest's mistakes ours.
bool tx_header_ok(uint8_t* hdr, uint64_t acked, size_t frame_len) {
  uint8_t& flags = hdr[0];
  const uint8_t gso = hdr[1] & ~VIRTIO_NET_HDR_GSO_ECN;
  const bool ecn = hdr[1] & VIRTIO_NET_HDR_GSO_ECN;
  flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;  // DATA_VALID/RSC_INFO mean nothing on transmit
  hdr[10] = hdr[11] = 0;                 // num_buffers is receive-only
  if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
    if (!(acked & bit(VIRTIO_NET_F_CSUM))) return false;
    if (size_t{le16(hdr + 6)} + le16(hdr + 8) + 2 > frame_len) return false;
  }
  switch (gso) {
    case VIRTIO_NET_HDR_GSO_NONE:
      return !ecn;
    case VIRTIO_NET_HDR_GSO_TCPV4:
      if (!(acked & bit(VIRTIO_NET_F_HOST_TSO4))) return false;
      break;
    case VIRTIO_NET_HDR_GSO_TCPV6:
      if (!(acked & bit(VIRTIO_NET_F_HOST_TSO6))) return false;
      break;
    default:
      return false;  // UFO and unknown types are not offered
  }
  if (ecn && !(acked & bit(VIRTIO_NET_F_HOST_ECN))) return false;
  return (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && le16(hdr + 4) != 0;  // gso_size
}

}  // namespace

NetDevice::NetDevice(std::unique_ptr<NetBackend> backend, NetDeviceOptions options)
    : backend_(std::move(backend)),
      options_(options),
      features_(
          bit(VIRTIO_NET_F_MAC) | bit(VIRTIO_NET_F_STATUS) | bit(VIRTIO_NET_F_MRG_RXBUF) |
          (options.offloads && backend_ ? consistent_offloads(backend_->offload_features()) : 0)) {
  rx_frame_.resize(kMaxFrame);
  epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
  auto stop = make_eventfd(), rx = make_eventfd(), tx = make_eventfd();
  if (!epoll_ || !stop.ok() || !rx.ok() || !tx.ok() || !backend_) return;
  stop_fd_ = std::move(stop).value();
  rx_kick_ = std::move(rx).value();
  tx_kick_ = std::move(tx).value();
  for (auto [fd, tag] : {std::pair{stop_fd_.get(), kStopTag}, std::pair{rx_kick_.get(), kRxKickTag},
                         std::pair{tx_kick_.get(), kTxKickTag}}) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = tag;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) return;
  }
  init_ok_ = true;
}

NetDevice::~NetDevice() {
  stop_worker();
}

uint32_t NetDevice::device_id() const {
  return VIRTIO_ID_NET;
}

uint64_t NetDevice::device_features() const {
  return features_;
}

void NetDevice::read_config(uint64_t offset, uint8_t* data, size_t len) {
  // struct virtio_net_config: mac[6], status, max_virtqueue_pairs (little endian).
  uint8_t cfg[10] = {};
  memcpy(cfg, options_.mac.data(), 6);
  cfg[6] = link_up_.load() ? VIRTIO_NET_S_LINK_UP : 0;
  cfg[8] = 1;
  for (size_t i = 0; i < len; ++i)
    data[i] = offset < sizeof cfg && i < sizeof cfg - offset ? cfg[offset + i] : 0;
}

Status NetDevice::activate(const virtio::ActivateContext& ctx) {
  if (!init_ok_) return Status(Errc::resource_exhausted, "net: device has no event fds");
  if (!ctx.memory || !ctx.interrupt || ctx.queues.size() != 2 || !ctx.queues[kRxQueue]->ready ||
      !ctx.queues[kTxQueue]->ready)
    return Status(Errc::protocol, "net: the receive and transmit queues must both be set up");
  stop_worker();
  mem_ = ctx.memory;
  rxq_ = ctx.queues[kRxQueue];
  txq_ = ctx.queues[kTxQueue];
  acked_ = ctx.acked_features & features_;
  AIRLOCK_RETURN_IF_ERROR(backend_->set_guest_offloads(acked_));
  tx_pending_.reset();
  rx_len_ = 0;
  rx_chains_.clear();
  rx_wait_buffers_ = false;
  rx_kicks_ = true;  // a queue starts with kicks asked for
  used_rx_ = used_tx_ = false;
  drain_eventfd(stop_fd_.get());
  drain_eventfd(rx_kick_.get());
  drain_eventfd(tx_kick_.get());
  {
    std::lock_guard lock(interrupt_mu_);
    interrupt_ = ctx.interrupt;
  }
  try {
    worker_ = std::thread([this] { run(); });
  } catch (const std::system_error& e) {
    return Status(Errc::resource_exhausted, std::string("net: worker thread: ") + e.what());
  }
  return ok_status();
}

void NetDevice::queue_notify(size_t index) {
  if (index == kRxQueue) signal_eventfd(rx_kick_.get());
  if (index == kTxQueue) signal_eventfd(tx_kick_.get());
}

void NetDevice::reset() {
  stop_worker();
  {
    std::lock_guard lock(interrupt_mu_);
    interrupt_ = nullptr;
  }
  if (interest_ != 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, backend_->fd(), nullptr);
  interest_ = 0;
  tx_pending_.reset();
  rx_chains_.clear();
  rx_len_ = 0;
  mem_ = nullptr;
  rxq_ = txq_ = nullptr;
  if (backend_) (void)backend_->set_guest_offloads(0);
}

void NetDevice::stop_worker() {
  if (!worker_.joinable()) return;
  signal_eventfd(stop_fd_.get());
  worker_.join();
  drain_eventfd(stop_fd_.get());
}

void NetDevice::set_link_up(bool up) {
  if (link_up_.exchange(up) == up) return;
  std::lock_guard lock(interrupt_mu_);
  if (interrupt_) interrupt_->signal_config_change();
}

NetStats NetDevice::stats() const noexcept {
  return {rx_frames_.load(), rx_bytes_.load(),   rx_dropped_.load(), tx_frames_.load(),
          tx_bytes_.load(),  tx_dropped_.load(), rx_direct_.load()};
}

void NetDevice::run() noexcept {
  update_interest();
  bool more = true;  // look at the queues once: the driver may have filled them before DRIVER_OK
  for (;;) {
    epoll_event events[8];
    int n = ::epoll_wait(epoll_.get(), events, 8, more ? 0 : -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail(errno_status("net: epoll_wait"));
      return;
    }
    for (int i = 0; i < n; ++i) {
      switch (events[i].data.u64) {
        case kStopTag:
          return;
        case kRxKickTag:
          drain_eventfd(rx_kick_.get());
          rx_wait_buffers_ = false;
          break;
        case kTxKickTag:
          drain_eventfd(tx_kick_.get());
          break;
        default:
          break;  // the backend: the processing below finds out what it can do
      }
    }
    auto tx = process_tx();
    auto rx = tx.ok() ? process_rx() : Result<bool>(false);
    if (used_tx_ && txq_->should_notify(*mem_)) interrupt_->signal_used_queue();
    if (used_rx_ && rxq_->should_notify(*mem_)) interrupt_->signal_used_queue();
    used_tx_ = used_rx_ = false;
    if (!tx.ok() || !rx.ok()) {
      fail(tx.ok() ? rx.status() : tx.status());
      return;
    }
    more = *tx || *rx;
    update_interest();
  }
}

// A broken queue needs a driver reset; a broken backend just ends traffic. Either way the
// worker stops touching the queues and waits for reset().
void NetDevice::fail(const Status& st) {
  AIRLOCK_LOG_WARN("net", "device stopped: {}", st.to_string());
  if (st.code() == Errc::protocol) {
    interrupt_->signal_needs_reset();
  } else {
    set_link_up(false);  // the guest sees its carrier go, not a silent black hole
  }
  pollfd p{stop_fd_.get(), POLLIN, 0};
  while (::poll(&p, 1, -1) < 0 && errno == EINTR) {
  }
}

void NetDevice::update_interest() {
  uint32_t want = 0;
  if (!rx_wait_buffers_) want |= EPOLLIN;
  if (tx_pending_) want |= EPOLLOUT;
  if (want == interest_) return;
  epoll_event ev{};
  ev.events = want;
  ev.data.u64 = kBackendTag;
  int op = want == 0 ? EPOLL_CTL_DEL : interest_ == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_.get(), op, backend_->fd(), &ev) == 0) interest_ = want;
}

Result<bool> NetDevice::process_tx() {
  bool written = false;
  if (tx_pending_) {
    AIRLOCK_RETURN_IF_ERROR(transmit_pending(written));
    if (!written) return false;  // the backend is still full: wait for EPOLLOUT
  }
  txq_->set_notification(*mem_, false);
  for (int i = 0; i < kBatch; ++i) {
    AIRLOCK_ASSIGN_OR_RETURN(auto chain, txq_->pop(*mem_));
    if (!chain) {
      // Ask for kicks again, then look once more: the driver may have added a chain meanwhile.
      txq_->set_notification(*mem_, true);
      if (txq_->available(*mem_) == 0) return false;
      txq_->set_notification(*mem_, false);
      continue;
    }
    AIRLOCK_RETURN_IF_ERROR(build_tx(*chain));
    if (!tx_pending_) continue;  // dropped
    AIRLOCK_RETURN_IF_ERROR(transmit_pending(written));
    if (!written) return false;
  }
  return true;
}

Status NetDevice::build_tx(const virtio::DescriptorChain& chain) {
  const uint64_t total = chain.readable_bytes();
  bool ok = total >= kMinFrame && total <= kMaxFrame;
  if (ok) {
    virtio::ChainReader reader(*mem_, chain);
    AIRLOCK_RETURN_IF_ERROR(reader.read_exact(tx_hdr_.data(), tx_hdr_.size()));
    ok = tx_header_ok(tx_hdr_.data(), acked_, total - kVirtioNetHdrSize);
  }
  if (ok) {
    tx_iov_.clear();
    tx_iov_.push_back({tx_hdr_.data(), tx_hdr_.size()});
    uint64_t skip = kVirtioNetHdrSize;  // the header comes from our validated copy
    for (const auto& d : chain.readable) {
      const uint64_t s = std::min<uint64_t>(skip, d.len);
      skip -= s;
      if (d.len > s && !map_guest_range(*mem_, d.addr + s, d.len - s, tx_iov_))
        return Status(Errc::protocol, "net: transmit buffer outside guest RAM");
    }
    ok = tx_iov_.size() <= kMaxSegments;
  }
  if (!ok) {
    tx_dropped_.fetch_add(1, std::memory_order_relaxed);
    used_tx_ = true;
    return txq_->add_used(*mem_, chain.head, 0);
  }
  tx_pending_ = chain;
  return ok_status();
}

Status NetDevice::transmit_pending(bool& written) {
  written = false;
  auto n = backend_->write_frame(tx_iov_.data(), tx_iov_.size());
  if (!n.ok() && n.status().code() != Errc::invalid_argument) return n.status().prefix("net");
  if (n.ok() && *n == 0) return ok_status();
  if (n.ok()) {
    tx_frames_.fetch_add(1, std::memory_order_relaxed);
    tx_bytes_.fetch_add(*n - kVirtioNetHdrSize, std::memory_order_relaxed);
  } else {
    tx_dropped_.fetch_add(1, std::memory_order_relaxed);
  }
  written = true;
  used_tx_ = true;
  const uint16_t head = tx_pending_->head;
  tx_pending_.reset();
  return txq_->add_used(*mem_, head, 0);
}

// Pops the next receive chain that has room; false when the ring is empty, and then the driver
// is asked to kick when it adds buffers. Chains without a writable part are handed straight back.
Result<bool> NetDevice::pop_rx_chain() {
  for (;;) {
    AIRLOCK_ASSIGN_OR_RETURN(auto chain, rxq_->pop(*mem_));
    if (!chain) {
      if (rx_kicks_) return false;
      // Ask for kicks again, then look once more: the driver may have added a chain meanwhile.
      rxq_->set_notification(*mem_, true);
      rx_kicks_ = true;
      if (rxq_->available(*mem_) == 0) return false;
      rxq_->set_notification(*mem_, false);
      rx_kicks_ = false;
      continue;
    }
    if (chain->writable_bytes() != 0) {
      rx_chains_.push_back(std::move(*chain));
      return true;
    }
    used_rx_ = true;
    AIRLOCK_RETURN_IF_ERROR(rxq_->add_used(*mem_, chain->head, 0));
  }
}

Result<bool> NetDevice::process_rx() {
  if (rx_wait_buffers_) return false;
  // While the device has buffers a driver's refill needs no kick: pop_rx_chain() asks for kicks
  // again once the ring runs dry.
  if (rx_kicks_) {
    rxq_->set_notification(*mem_, false);
    rx_kicks_ = false;
  }
  for (int i = 0; i < kBatch; ++i) {
    if (rx_len_ == 0) {
      // Read the backend only once the guest has somewhere to put the frame.
      if (rx_chains_.empty()) {
        AIRLOCK_ASSIGN_OR_RETURN(bool got, pop_rx_chain());
        if (!got) {
          rx_wait_buffers_ = true;
          return false;
        }
      }
      AIRLOCK_ASSIGN_OR_RETURN(bool direct, map_rx_direct());
      if (direct) {
        bool none_waiting = false;
        AIRLOCK_RETURN_IF_ERROR(receive_direct(none_waiting));
        if (none_waiting) return false;  // EPOLLIN wakes us
        continue;
      }
      iovec iov{rx_frame_.data(), rx_frame_.size()};
      auto n = backend_->read_frame(&iov, 1);
      if (!n.ok() && n.status().code() == Errc::resource_exhausted) {
        rx_dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      if (!n.ok()) return n.status().prefix("net");
      if (*n == 0) return false;  // nothing waiting: EPOLLIN wakes us
      if (*n < kMinFrame) {
        rx_dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      rx_len_ = *n;
      // Only what the guest accepted may reach it: without GUEST_CSUM, no checksum flags.
      if (!(acked_ & bit(VIRTIO_NET_F_GUEST_CSUM))) rx_frame_[0] = 0;
    }
    bool delivered = false;
    AIRLOCK_RETURN_IF_ERROR(deliver_pending_rx(delivered));
    if (!delivered) {
      rx_wait_buffers_ = true;
      return false;
    }
  }
  return true;
}

// How many held chains, from the front, the pending frame needs (0: not enough yet).
size_t NetDevice::rx_chains_needed() const {
  const bool mergeable = acked_ & bit(VIRTIO_NET_F_MRG_RXBUF);
  uint64_t room = 0;
  for (size_t i = 0; i < rx_chains_.size() && (mergeable || i == 0); ++i) {
    room += rx_chains_[i].writable_bytes();
    if (room >= rx_len_) return i + 1;
  }
  return 0;
}

Status NetDevice::deliver_pending_rx(bool& delivered) {
  delivered = false;
  const bool mergeable = acked_ & bit(VIRTIO_NET_F_MRG_RXBUF);
  size_t chains = rx_chains_needed();
  // Without mergeable buffers one chain must hold the whole frame.
  const bool hopeless = !mergeable && !rx_chains_.empty() && chains == 0;
  while (chains == 0 && !hopeless) {
    if (rx_chains_.size() >= rxq_->size) break;  // the whole ring is not enough
    AIRLOCK_ASSIGN_OR_RETURN(bool got, pop_rx_chain());
    if (!got) return ok_status();  // wait for the driver to add buffers
    chains = rx_chains_needed();
  }
  delivered = true;
  if (chains == 0) {  // this frame can never fit: it is lost, as on a wire
    rx_dropped_.fetch_add(1, std::memory_order_relaxed);
    rx_len_ = 0;
    return ok_status();
  }
  rx_frame_[10] = static_cast<uint8_t>(chains);
  rx_frame_[11] = static_cast<uint8_t>(chains >> 8);
  return complete_rx(chains, rx_len_, true);
}

// Whether the next frame can be read straight into the held chains: they (the first one alone
// without mergeable buffers) must cover the largest frame, and the first buffer must hold the
// whole header, which is patched in place after the read. Pops more chains as needed (never
// more than the ring holds) and maps their writable buffers into rx_iov_.
Result<bool> NetDevice::map_rx_direct() {
  const bool mergeable = acked_ & bit(VIRTIO_NET_F_MRG_RXBUF);
  if (rx_chains_.empty() || rx_chains_[0].writable.empty() ||
      rx_chains_[0].writable[0].len < kVirtioNetHdrSize)
    return false;
  uint64_t room = 0;
  for (size_t i = 0; i < rx_chains_.size() && (mergeable || i == 0); ++i)
    room += rx_chains_[i].writable_bytes();
  while (mergeable && room < kMaxFrame && rx_chains_.size() < rxq_->size) {
    AIRLOCK_ASSIGN_OR_RETURN(bool got, pop_rx_chain());
    if (!got) break;
    room += rx_chains_.back().writable_bytes();
  }
  if (room < kMaxFrame) return false;
  rx_iov_.clear();
  uint64_t mapped = 0;
  for (const auto& chain : rx_chains_) {
    for (const auto& d : chain.writable)
      if (!map_guest_range(*mem_, d.addr, d.len, rx_iov_))
        return Status(Errc::protocol, "net: receive buffer outside guest RAM");
    mapped += chain.writable_bytes();
    if (mapped >= kMaxFrame || rx_iov_.size() > kMaxSegments) break;
  }
  return rx_iov_.size() <= kMaxSegments;
}

// Reads one frame into the iovecs map_rx_direct() prepared, then fixes up the header in guest
// memory (num_buffers; no checksum flags without GUEST_CSUM) and returns the chains it used.
// Nothing the guest may have changed in those buffers meanwhile is read back.
Status NetDevice::receive_direct(bool& none_waiting) {
  none_waiting = false;
  auto n = backend_->read_frame(rx_iov_.data(), rx_iov_.size());
  if (!n.ok() && n.status().code() == Errc::resource_exhausted) {
    rx_dropped_.fetch_add(1, std::memory_order_relaxed);
    return ok_status();
  }
  if (!n.ok()) return n.status().prefix("net");
  if (*n == 0) {
    none_waiting = true;
    return ok_status();
  }
  if (*n < kMinFrame || *n > kMaxFrame) {  // the buffers stay held for the next frame
    rx_dropped_.fetch_add(1, std::memory_order_relaxed);
    return ok_status();
  }
  size_t chains = 0;
  for (uint64_t covered = 0; covered < *n && chains < rx_chains_.size(); ++chains)
    covered += rx_chains_[chains].writable_bytes();
  const uint64_t hdr = rx_chains_[0].writable[0].addr;
  const uint8_t num_buffers[2] = {static_cast<uint8_t>(chains), static_cast<uint8_t>(chains >> 8)};
  if (!mem_->write(hdr + 10, num_buffers, 2).ok())
    return Status(Errc::protocol, "net: receive buffer outside guest RAM");
  if (!(acked_ & bit(VIRTIO_NET_F_GUEST_CSUM))) {
    const uint8_t no_flags = 0;
    if (!mem_->write(hdr, &no_flags, 1).ok())
      return Status(Errc::protocol, "net: receive buffer outside guest RAM");
  }
  rx_direct_.fetch_add(1, std::memory_order_relaxed);
  return complete_rx(chains, *n, false);
}

// Returns the first `chains` held chains with the frame's `len` bytes, copying them from
// rx_frame_ first when `copy` (the direct path already has them in place).
Status NetDevice::complete_rx(size_t chains, size_t len, bool copy) {
  size_t off = 0;
  for (size_t i = 0; i < chains; ++i) {
    const auto& chain = rx_chains_[i];
    virtio::ChainWriter writer(*mem_, chain);
    const size_t n = std::min<uint64_t>(writer.remaining(), len - off);
    if (copy) AIRLOCK_RETURN_IF_ERROR(writer.write_exact(rx_frame_.data() + off, n));
    off += n;
    AIRLOCK_RETURN_IF_ERROR(rxq_->add_used(*mem_, chain.head, static_cast<uint32_t>(n)));
  }
  rx_chains_.erase(rx_chains_.begin(), rx_chains_.begin() + static_cast<ptrdiff_t>(chains));
  used_rx_ = true;
  rx_frames_.fetch_add(1, std::memory_order_relaxed);
  rx_bytes_.fetch_add(len - kVirtioNetHdrSize, std::memory_order_relaxed);
  rx_len_ = 0;
  return ok_status();
}

}  // namespace airlock::devices
