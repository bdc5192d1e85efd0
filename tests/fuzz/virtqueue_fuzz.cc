// libFuzzer target: a hostile driver controls the whole guest memory holding a split
// virtqueue (descriptor table, available ring, indirect tables, buffers). The device side
// must never crash, hang or touch memory outside guest RAM, and whatever chain it accepts
// must satisfy the invariants checked below.
//
// Input: byte 0 picks the queue size (a power of 2 up to 256), byte 1 the negotiated ring
// features, the rest is the initial content of the 64 KiB guest memory.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "memory/guest_memory.h"
#include "virtio/queue.h"

namespace {

using airlock::GuestMemory;
using airlock::virtio::ChainReader;
using airlock::virtio::ChainWriter;
using airlock::virtio::Descriptor;
using airlock::virtio::DescriptorChain;
using airlock::virtio::Queue;

constexpr uint64_t kRam = 64 * 1024;

void require(bool condition) {
  if (!condition) __builtin_trap();
}

void check_descriptors(const std::vector<Descriptor>& descs, bool writable) {
  for (const Descriptor& d : descs) {
    require(d.device_writable == writable);
    require(d.addr <= kRam && d.len <= kRam - d.addr);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  static GuestMemory mem = GuestMemory::create(kRam).value();
  std::vector<uint8_t> image(kRam, 0);
  std::copy_n(data + 2, std::min<size_t>(size - 2, kRam), image.begin());
  require(mem.write(0, image.data(), image.size()).ok());

  Queue q;
  q.max_size = 256;
  q.size = static_cast<uint16_t>(1u << (data[0] % 9));
  q.desc_table = 0;
  q.avail_ring = 0x1000;
  q.used_ring = 0x2000;
  q.event_idx = data[1] & 1;
  q.indirect_desc = data[1] & 2;
  q.ready = true;
  require(q.validate(mem).ok());

  std::vector<uint8_t> buf(4096);
  // A well-behaved ring yields at most `size` chains; go a little further to cover errors.
  for (int i = 0; i < 2 * q.size + 4; ++i) {
    const uint16_t avail = q.available(mem);
    require(avail <= q.size);
    auto chain = q.pop(mem);
    if (!chain.ok() || !chain.value().has_value()) break;
    const DescriptorChain& c = *chain.value();
    require(c.head < q.size);
    require(c.readable.size() + c.writable.size() <= q.size + Queue::kMaxIndirectEntries);
    check_descriptors(c.readable, false);
    check_descriptors(c.writable, true);

    ChainReader reader(mem, c);
    auto got = reader.read(buf.data(), buf.size());
    require(got.ok());
    ChainWriter writer(mem, c);
    auto put = writer.write(buf.data(), std::min<size_t>(got.value() + 7, buf.size()));
    require(put.ok());
    require(q.add_used(mem, c.head, static_cast<uint32_t>(writer.written())).ok());
    if (i % 3 == 0) q.set_notification(mem, i % 2 == 0);
    (void)q.should_notify(mem);
  }
  return 0;
}
