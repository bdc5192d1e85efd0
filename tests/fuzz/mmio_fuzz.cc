// libFuzzer target: a hostile guest drives a virtio-mmio transport (with the rng device
// behind it) through arbitrary register and config accesses, queue kicks and writes to its
// own memory (rings, descriptors). Nothing it does may crash or hang the host side.
//
// Input: a sequence of 12-byte operations: kind, 2-byte offset, access size, 8-byte value.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "devices/rng.h"
#include "memory/guest_memory.h"
#include "virtio/mmio.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr uint64_t kRam = 64 * 1024;
  static airlock::GuestMemory mem = airlock::GuestMemory::create(kRam).value();
  std::vector<uint8_t> zeros(kRam, 0);
  (void)mem.write(0, zeros.data(), zeros.size());

  auto rng = std::make_shared<airlock::devices::RngDevice>();
  airlock::virtio::MmioTransport transport(rng, mem);
  int interrupts = 0;
  transport.set_interrupt_trigger([&] { ++interrupts; });

  constexpr size_t kOp = 12;
  for (size_t at = 0; at + kOp <= size; at += kOp) {
    const uint8_t* op = data + at;
    uint16_t offset;
    std::memcpy(&offset, op + 1, 2);
    const size_t len = op[3] % 9;
    uint8_t value[8];
    std::memcpy(value, op + 4, 8);
    switch (op[0] % 4) {
      case 0: {
        uint8_t out[8];
        transport.read(offset % 0x200, out, len);
        break;
      }
      case 1:
        transport.write(offset % 0x200, value, len);
        break;
      case 2:
        transport.notify(value[0] % 3);
        break;
      case 3:
        (void)mem.write((uint64_t{offset} * 8) % kRam, value, 8);
        break;
    }
  }
  return 0;
}
