#include "devices/blk.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/virtio_blk.h>
#include <linux/virtio_ids.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "base/log.h"

namespace airlock::devices {

namespace {

constexpr uint64_t kHeaderSize = sizeof(virtio_blk_outhdr);  // type, ioprio, sector: 16 bytes
constexpr uint64_t kSegmentSize = sizeof(virtio_blk_discard_write_zeroes);
// Hole punching works in host pages; telling the guest so keeps its discards aligned.
constexpr uint32_t kDiscardAlignmentSectors = 4096 / BlkDevice::kSectorSize;

static_assert(kHeaderSize == 16 && kSegmentSize == 16);

// Appends host iovecs for guest range [gpa, gpa+len), split where it crosses RAM regions.
bool map_guest_range(const GuestMemory& mem, uint64_t gpa, uint64_t len, std::vector<iovec>& out) {
  while (len > 0) {
    const MemoryRegion* hit = nullptr;
    for (const auto& r : mem.regions()) {
      if (gpa >= r.guest_addr && gpa - r.guest_addr < r.size) {
        hit = &r;
        break;
      }
    }
    if (hit == nullptr) return false;
    const uint64_t offset = gpa - hit->guest_addr;
    const uint64_t n = std::min(len, hit->size - offset);
    out.push_back({hit->host + offset, n});
    gpa += n;
    len -= n;
  }
  return true;
}

// Host iovecs for bytes [skip, skip+len) of a chain part, as if its buffers were one.
bool map_chain_bytes(const GuestMemory& mem, const std::vector<virtio::Descriptor>& descs,
                     uint64_t skip, uint64_t len, std::vector<iovec>& out) {
  for (const auto& d : descs) {
    if (len == 0) break;
    if (skip >= d.len) {
      skip -= d.len;
      continue;
    }
    const uint64_t n = std::min<uint64_t>(d.len - skip, len);
    if (!map_guest_range(mem, d.addr + skip, n, out)) return false;
    len -= n;
    skip = 0;
  }
  return len == 0;
}

// Moves every byte of `iov` to or from the file at `offset`. An early end of file (the image
// shrank under us) is an error, never a partial success.
Status transfer(int fd, bool to_file, std::vector<iovec> iov, uint64_t offset) {
  size_t index = 0;
  while (index < iov.size()) {
    const int count = static_cast<int>(std::min<size_t>(iov.size() - index, IOV_MAX));
    const auto file_offset = static_cast<off_t>(offset);
    const ssize_t n = to_file ? ::pwritev(fd, &iov[index], count, file_offset)
                              : ::preadv(fd, &iov[index], count, file_offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(to_file ? "pwritev" : "preadv");
    }
    if (n == 0) return Status(Errc::io, "image ends before the request does");
    offset += static_cast<uint64_t>(n);
    auto left = static_cast<size_t>(n);
    while (left > 0 && index < iov.size()) {
      if (left >= iov[index].iov_len) {
        left -= iov[index].iov_len;
        ++index;
      } else {
        iov[index].iov_base = static_cast<uint8_t*>(iov[index].iov_base) + left;
        iov[index].iov_len -= left;
        left = 0;
      }
    }
  }
  return ok_status();
}

Status write_zeros(int fd, uint64_t offset, uint64_t len) {
  static const std::vector<uint8_t> zeros(64 * 1024, 0);
  while (len > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(len, zeros.size()));
    const ssize_t w = ::pwrite(fd, zeros.data(), n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno_status("pwrite");
    }
    offset += static_cast<uint64_t>(w);
    len -= static_cast<uint64_t>(w);
  }
  return ok_status();
}

}  // namespace

// One request as parsed from its chain (§5.2.6): a 16-byte driver-readable header, then data,
// then one device-writable status byte. With VIRTIO_F_VERSION_1 the driver may split or merge
// those across descriptors at will, so every part is located by byte position.
struct BlkDevice::Request {
  const virtio::DescriptorChain& chain;
  virtio::ChainReader& reader;  // positioned just after the header
  uint32_t type = 0;
  uint64_t sector = 0;
  uint64_t out_bytes = 0;  // driver-readable bytes after the header
  uint64_t in_bytes = 0;   // device-writable bytes before the status byte
};

Result<std::shared_ptr<BlkDevice>> BlkDevice::open(const BlkOptions& options) {
  const std::string what =
      options.display_name.empty() ? "image " + options.path : options.display_name;
  if (options.serial.size() > VIRTIO_BLK_ID_BYTES)
    return Status(Errc::invalid_argument, "blk: serial '" + options.serial + "' is longer than " +
                                              std::to_string(VIRTIO_BLK_ID_BYTES) + " bytes");
  const int flags = (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  UniqueFd fd(::open(options.path.c_str(), flags));
  if (!fd) return errno_status("opening " + what).prefix("blk");
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return errno_status("stat of " + what).prefix("blk");
  if (!S_ISREG(st.st_mode))
    return Status(Errc::invalid_argument, "blk: " + what + " is not a regular file");
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size == 0 || size % kSectorSize != 0)
    return Status(Errc::bad_image, "blk: " + what + " has size " + std::to_string(size) +
                                       ", not a non-zero multiple of 512 bytes");
  // One writer and no readers, or readers only: a second sandbox attaching the same volume,
  // or writing a base image others boot from, is refused instead of corrupting it.
  if (::flock(fd.get(), (options.read_only ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK)
      return Status(Errc::unavailable,
                    what + (options.read_only ? " is being written by another sandbox"
                                              : " is in use by another sandbox"));
    return errno_status("locking " + what).prefix("blk");
  }
  return std::shared_ptr<BlkDevice>(new BlkDevice(options, std::move(fd), size));
}

BlkDevice::BlkDevice(BlkOptions options, UniqueFd file, uint64_t capacity_bytes)
    : options_(std::move(options)), file_(std::move(file)), capacity_bytes_(capacity_bytes) {}

BlkDevice::~BlkDevice() {
  stop_worker();
}

uint32_t BlkDevice::device_id() const {
  return VIRTIO_ID_BLOCK;
}

uint64_t BlkDevice::device_features() const {
  uint64_t f = (1ull << VIRTIO_BLK_F_FLUSH) | (1ull << VIRTIO_BLK_F_SEG_MAX) |
               (1ull << VIRTIO_BLK_F_BLK_SIZE);
  if (options_.read_only) f |= 1ull << VIRTIO_BLK_F_RO;
  if (options_.discard && !options_.read_only)
    f |= (1ull << VIRTIO_BLK_F_DISCARD) | (1ull << VIRTIO_BLK_F_WRITE_ZEROES);
  return f;
}

// Config space (§5.2.4), little endian like the host.
void BlkDevice::read_config(uint64_t offset, uint8_t* data, size_t len) {
  virtio_blk_config config{};
  config.capacity = capacity_sectors();
  config.seg_max = kSegMax;
  config.blk_size = kSectorSize;
  config.num_queues = 1;
  if (options_.discard && !options_.read_only) {
    config.max_discard_sectors = kMaxDiscardSectors;
    config.max_discard_seg = 1;
    config.discard_sector_alignment = kDiscardAlignmentSectors;
    config.max_write_zeroes_sectors = kMaxDiscardSectors;
    config.max_write_zeroes_seg = 1;
    config.write_zeroes_may_unmap = 1;
  }
  const auto* bytes = reinterpret_cast<const uint8_t*>(&config);
  for (size_t i = 0; i < len; ++i)
    data[i] = (offset < sizeof config && i < sizeof config - offset) ? bytes[offset + i] : 0;
}

Status BlkDevice::activate(const virtio::ActivateContext& ctx) {
  if (ctx.memory == nullptr || ctx.interrupt == nullptr || ctx.queues.size() != 1 ||
      ctx.queues[0] == nullptr || !ctx.queues[0]->ready)
    return Status(Errc::protocol, "blk: the request queue is not set up");
  if (released_) return Status(Errc::closed, "blk: the device was released");
  stop_worker();
  AIRLOCK_ASSIGN_OR_RETURN(kick_fd_, make_eventfd(true));
  AIRLOCK_ASSIGN_OR_RETURN(stop_fd_, make_eventfd(true));
  memory_ = ctx.memory;
  queue_ = ctx.queues[0];
  interrupt_ = ctx.interrupt;
  stopping_ = false;
  try {
    worker_ = std::thread([this] { run_worker(); });
  } catch (const std::system_error& e) {
    return Status(Errc::resource_exhausted, std::string("blk: cannot start worker: ") + e.what());
  }
  return ok_status();
}

void BlkDevice::queue_notify(size_t index) {
  if (index == 0) signal_eventfd(kick_fd_.get());
}

void BlkDevice::reset() {
  stop_worker();
  memory_ = nullptr;
  queue_ = nullptr;
  interrupt_ = nullptr;
}

void BlkDevice::release() {
  stop_worker();
  released_ = true;
  ::flock(file_.get(), LOCK_UN);
}

void BlkDevice::stop_worker() {
  if (!worker_.joinable()) return;
  stopping_ = true;
  signal_eventfd(stop_fd_.get());
  worker_.join();
}

BlkDevice::Stats BlkDevice::stats() const noexcept {
  return {requests_.load(), bytes_read_.load(), bytes_written_.load(), errors_.load()};
}

void BlkDevice::run_worker() {
  pollfd fds[2] = {{kick_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  bool broken = false;
  // The driver may have queued requests before its first kick reached us.
  bool pending = true;
  while (!stopping_) {
    if (pending && !broken) {
      bool used_any = false;
      const Status status = process_queue(used_any);
      // Whatever completed before a failure still belongs to the driver.
      if (used_any && queue_->should_notify(*memory_)) interrupt_->signal_used_queue();
      if (!status.ok()) {
        AIRLOCK_LOG_WARN("virtio", "blk: stopping: {}", status.to_string());
        broken = true;
        interrupt_->signal_needs_reset();
      }
    }
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) {
      AIRLOCK_LOG_ERROR("virtio", "blk: poll failed: {}", errno_status("poll").to_string());
      return;
    }
    pending = drain_eventfd(kick_fd_.get()) != 0;
  }
}

Status BlkDevice::process_queue(bool& used_any) {
  for (;;) {
    // No kicks while we are draining the ring anyway; re-enable, then look once more for
    // chains added in between.
    queue_->set_notification(*memory_, false);
    for (;;) {
      if (stopping_) return ok_status();
      AIRLOCK_ASSIGN_OR_RETURN(auto chain, queue_->pop(*memory_));
      if (!chain) break;
      const uint32_t used_len = serve(*chain);
      AIRLOCK_RETURN_IF_ERROR(queue_->add_used(*memory_, chain->head, used_len));
      used_any = true;
    }
    queue_->set_notification(*memory_, true);
    if (queue_->available(*memory_) == 0) return ok_status();
  }
}

uint32_t BlkDevice::serve(const virtio::DescriptorChain& chain) {
  ++requests_;
  const uint64_t readable = chain.readable_bytes();
  const uint64_t writable = chain.writable_bytes();
  // The status byte is the last writable byte; without one the driver cannot learn anything.
  const virtio::Descriptor* status_desc = nullptr;
  for (const auto& d : chain.writable)
    if (d.len > 0) status_desc = &d;
  if (status_desc == nullptr) {
    ++errors_;
    AIRLOCK_LOG_DEBUG("virtio", "blk: request without a status byte");
    return 0;
  }

  virtio::ChainReader reader(*memory_, chain);
  Request req{chain, reader};
  uint8_t status = VIRTIO_BLK_S_IOERR;
  uint64_t data_in = 0;  // bytes written into the data part, for the used length
  virtio_blk_outhdr header{};
  if (readable >= kHeaderSize && reader.read_exact(&header, sizeof header).ok()) {
    req.type = header.type;
    req.sector = header.sector;
    req.out_bytes = readable - kHeaderSize;
    req.in_bytes = writable - 1;
    switch (req.type) {
      case VIRTIO_BLK_T_IN:
        status = do_read(req, data_in);
        break;
      case VIRTIO_BLK_T_OUT:
        status = do_write(req);
        break;
      case VIRTIO_BLK_T_FLUSH:
        status = do_flush();
        break;
      case VIRTIO_BLK_T_GET_ID:
        status = do_get_id(req, data_in);
        break;
      case VIRTIO_BLK_T_DISCARD:
        status = do_discard(req, false);
        break;
      case VIRTIO_BLK_T_WRITE_ZEROES:
        status = do_discard(req, true);
        break;
      default:
        status = VIRTIO_BLK_S_UNSUPP;
        break;
    }
  }
  if (status != VIRTIO_BLK_S_OK) ++errors_;
  // Checked by the queue when the chain was popped; a failure here cannot happen short of a
  // bug, and the driver then simply sees its old status byte.
  (void)memory_->write(status_desc->addr + status_desc->len - 1, &status, 1);
  return static_cast<uint32_t>(data_in + 1);
}

bool BlkDevice::in_bounds(uint64_t sector, uint64_t bytes) const noexcept {
  const uint64_t sectors = capacity_sectors();
  return sector <= sectors && bytes <= (sectors - sector) * kSectorSize;
}

uint8_t BlkDevice::do_read(const Request& req, uint64_t& data_len) {
  if (req.in_bytes % kSectorSize != 0 || !in_bounds(req.sector, req.in_bytes))
    return VIRTIO_BLK_S_IOERR;
  std::vector<iovec> iov;
  if (!map_chain_bytes(*memory_, req.chain.writable, 0, req.in_bytes, iov))
    return VIRTIO_BLK_S_IOERR;
  const Status s = transfer(file_.get(), false, std::move(iov), req.sector * kSectorSize);
  if (!s.ok()) {
    AIRLOCK_LOG_WARN("virtio", "blk: read at sector {}: {}", req.sector, s.to_string());
    return VIRTIO_BLK_S_IOERR;
  }
  data_len = req.in_bytes;
  bytes_read_ += req.in_bytes;
  return VIRTIO_BLK_S_OK;
}

uint8_t BlkDevice::do_write(const Request& req) {
  if (options_.read_only) return VIRTIO_BLK_S_IOERR;  // §5.2.6.2: and write nothing
  if (req.out_bytes % kSectorSize != 0 || !in_bounds(req.sector, req.out_bytes))
    return VIRTIO_BLK_S_IOERR;
  std::vector<iovec> iov;
  if (!map_chain_bytes(*memory_, req.chain.readable, kHeaderSize, req.out_bytes, iov))
    return VIRTIO_BLK_S_IOERR;
  const Status s = transfer(file_.get(), true, std::move(iov), req.sector * kSectorSize);
  if (!s.ok()) {
    AIRLOCK_LOG_WARN("virtio", "blk: write at sector {}: {}", req.sector, s.to_string());
    return VIRTIO_BLK_S_IOERR;
  }
  bytes_written_ += req.out_bytes;
  return VIRTIO_BLK_S_OK;
}

uint8_t BlkDevice::do_flush() {
  if (options_.read_only) return VIRTIO_BLK_S_OK;
  if (::fdatasync(file_.get()) != 0) {
    AIRLOCK_LOG_WARN("virtio", "blk: {}", errno_status("fdatasync").to_string());
    return VIRTIO_BLK_S_IOERR;
  }
  return VIRTIO_BLK_S_OK;
}

// The ID is NUL-padded to 20 bytes, with no terminator when it is exactly 20 long (§5.2.6).
uint8_t BlkDevice::do_get_id(const Request& req, uint64_t& data_len) {
  char id[VIRTIO_BLK_ID_BYTES] = {};
  std::memcpy(id, options_.serial.data(), std::min(options_.serial.size(), sizeof id));
  const uint64_t n = std::min<uint64_t>(req.in_bytes, sizeof id);
  virtio::ChainWriter writer(*memory_, req.chain);
  if (!writer.write_exact(id, static_cast<size_t>(n)).ok()) return VIRTIO_BLK_S_IOERR;
  data_len = n;
  return VIRTIO_BLK_S_OK;
}

// Discard and write-zeroes both punch a hole: it reads back as zeros and frees host space.
uint8_t BlkDevice::do_discard(const Request& req, bool write_zeroes) {
  if (!options_.discard) return VIRTIO_BLK_S_UNSUPP;
  if (options_.read_only) return VIRTIO_BLK_S_IOERR;
  if (req.out_bytes != kSegmentSize) return VIRTIO_BLK_S_IOERR;  // max_*_seg is 1
  virtio_blk_discard_write_zeroes seg{};
  if (!req.reader.read_exact(&seg, sizeof seg).ok()) return VIRTIO_BLK_S_IOERR;
  const uint32_t known = write_zeroes ? VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
  // §5.2.6.2: unknown flags, and unmap on a discard, are unsupported.
  if ((seg.flags & ~known) != 0) return VIRTIO_BLK_S_UNSUPP;
  if (seg.num_sectors > kMaxDiscardSectors) return VIRTIO_BLK_S_IOERR;
  const uint64_t bytes = uint64_t{seg.num_sectors} * kSectorSize;
  if (!in_bounds(seg.sector, bytes)) return VIRTIO_BLK_S_IOERR;
  if (bytes == 0) return VIRTIO_BLK_S_OK;
  const auto offset = static_cast<off_t>(seg.sector * kSectorSize);
  if (::fallocate(file_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset,
                  static_cast<off_t>(bytes)) == 0)
    return VIRTIO_BLK_S_OK;
  const int err = errno;
  if (err == EOPNOTSUPP) {
    // A discard is only a hint; zeros must still be written.
    if (!write_zeroes) return VIRTIO_BLK_S_OK;
    if (write_zeros(file_.get(), seg.sector * kSectorSize, bytes).ok()) return VIRTIO_BLK_S_OK;
  }
  AIRLOCK_LOG_WARN("virtio", "blk: {}", errno_status(err, "fallocate").to_string());
  return VIRTIO_BLK_S_IOERR;
}

}  // namespace airlock::devices
