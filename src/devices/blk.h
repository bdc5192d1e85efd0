// virtio-blk (virtio 1.2 §5.2): a disk backed by one host file (raw image, 512-byte sectors).
//
// One request queue. Requests: read, write, flush, get-id, discard and write-zeroes (both
// punch holes, keeping the image sparse). The driver is hostile: every request is checked
// against the image's capacity before any byte moves (a request past the end fails with
// VIRTIO_BLK_S_IOERR and touches nothing), the header and status byte are located by byte
// position whatever the descriptor layout, and data moves with preadv/pwritev straight
// between the file and guest memory. A read-only device answers every writing request with
// VIRTIO_BLK_S_IOERR (§5.2.6.2) and its file is opened O_RDONLY.
//
// The image file is locked with flock(): LOCK_EX for a writable device (one writer, no
// readers), LOCK_SH for a read-only one (many readers, no writer). A conflicting open fails
// with Errc::unavailable, so a volume can be attached to one sandbox at a time.
//
// Threads: open() from any thread. read_config/activate/reset on a vCPU thread under the
// transport's lock, queue_notify() on the machine's event thread (it only wakes the worker).
// All file I/O runs on the device's own worker thread, started by activate() and joined by
// reset() and the destructor, so a slow disk never stalls a vCPU or the event loop.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "base/fd.h"
#include "virtio/device.h"

namespace airlock::devices {

struct BlkOptions {
  std::string path;        // raw image; its size must be a non-zero multiple of 512
  bool read_only = false;  // offer VIRTIO_BLK_F_RO, open O_RDONLY, take a shared lock
  // Answer to VIRTIO_BLK_T_GET_ID: up to 20 bytes, shown by Linux in /sys/block/vdX/serial
  // and /dev/disk/by-id/virtio-<serial>. Longer serials are refused.
  std::string serial;
  // How errors name the image ("volume data"); the path when empty.
  std::string display_name;
  // Offer DISCARD and WRITE_ZEROES (hole punching). Where the host filesystem cannot punch
  // holes, discard does nothing and write-zeroes writes zeros, so this is a space choice only.
  bool discard = true;
};

class BlkDevice final : public virtio::Device {
 public:
  static constexpr uint64_t kSectorSize = 512;
  static constexpr uint16_t kQueueSize = 256;
  // Data segments per request the driver may use (the header and status take two more
  // descriptors of a direct chain).
  static constexpr uint32_t kSegMax = kQueueSize - 2;
  // Bounds for one discard / write-zeroes request: one segment, at most 1 GiB.
  static constexpr uint32_t kMaxDiscardSectors = (1u << 30) / kSectorSize;

  static Result<std::shared_ptr<BlkDevice>> open(const BlkOptions& options);
  ~BlkDevice() override;
  BlkDevice(const BlkDevice&) = delete;
  BlkDevice& operator=(const BlkDevice&) = delete;

  uint32_t device_id() const override;
  const char* name() const override { return "blk"; }
  uint64_t device_features() const override;
  size_t num_queues() const override { return 1; }
  uint16_t queue_max_size(size_t) const override { return kQueueSize; }
  void read_config(uint64_t offset, uint8_t* data, size_t len) override;

  Status activate(const virtio::ActivateContext& ctx) override;
  void queue_notify(size_t index) override;
  void reset() override;

  // The machine has stopped for good (its vCPUs joined): stops serving requests and drops the
  // image's lock, so another sandbox may attach the image while this object still lives (the
  // machine holds it until destroyed). Later activations fail. Call only with no vCPU running.
  void release();

  uint64_t capacity_sectors() const noexcept { return capacity_bytes_ / kSectorSize; }
  bool read_only() const noexcept { return options_.read_only; }
  const std::string& serial() const noexcept { return options_.serial; }

  // Counters for tests, metering and benchmarks.
  struct Stats {
    uint64_t requests = 0;
    uint64_t bytes_read = 0;
    uint64_t bytes_written = 0;
    uint64_t errors = 0;  // requests answered with IOERR or UNSUPP
  };
  Stats stats() const noexcept;

 private:
  struct Request;
  BlkDevice(BlkOptions options, UniqueFd file, uint64_t capacity_bytes);

  void run_worker();
  Status process_queue(bool& used_any);
  // Serves one chain and returns the used length to report. A malformed request is the
  // driver's problem: it gets an error status (or, with no room for one, nothing) and the
  // queue carries on.
  uint32_t serve(const virtio::DescriptorChain& chain);
  uint8_t do_read(const Request& req, uint64_t& data_len);
  uint8_t do_write(const Request& req);
  uint8_t do_flush();
  uint8_t do_get_id(const Request& req, uint64_t& data_len);
  uint8_t do_discard(const Request& req, bool write_zeroes);
  bool in_bounds(uint64_t sector, uint64_t bytes) const noexcept;
  void stop_worker();

  const BlkOptions options_;
  const UniqueFd file_;
  const uint64_t capacity_bytes_;

  const GuestMemory* memory_ = nullptr;
  virtio::Queue* queue_ = nullptr;
  virtio::Interrupt* interrupt_ = nullptr;
  UniqueFd kick_fd_;
  UniqueFd stop_fd_;
  std::thread worker_;
  std::atomic<bool> stopping_{false};
  bool released_ = false;

  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_read_{0};
  std::atomic<uint64_t> bytes_written_{0};
  std::atomic<uint64_t> errors_{0};
};

}  // namespace airlock::devices
