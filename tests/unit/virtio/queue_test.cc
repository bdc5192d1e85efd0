// Split virtqueue walking against a real GuestMemory, with MockDriver playing the guest.
#include <doctest/doctest.h>

#include <cstring>
#include <string>

#include "mock_driver.h"
#include "virtio/queue.h"

namespace airlock::virtio {
namespace {

using testing::Buffer;
using testing::MockDriver;

constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kData = 0x40000;  // buffers live above the rings

GuestMemory make_memory() {
  auto mem = GuestMemory::create(kRam);
  REQUIRE(mem.ok());
  return std::move(mem).value();
}

Queue make_queue(uint16_t max_size = 256) {
  Queue q;
  q.max_size = max_size;
  return q;
}

DescriptorChain pop_one(Queue& q, const GuestMemory& mem) {
  auto r = q.pop(mem);
  REQUIRE(r.ok());
  REQUIRE(r.value().has_value());
  return *r.value();
}

// Pops expecting the queue to be declared broken.
std::string pop_error(Queue& q, const GuestMemory& mem) {
  auto r = q.pop(mem);
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::protocol);
  return r.status().message();
}

}  // namespace

TEST_CASE("a readable+writable chain pops with its buffers and returns through the used ring") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 16);
  Queue q = make_queue();
  drv.configure(q);
  REQUIRE(q.validate(mem).ok());

  const char request[] = "hello device";
  REQUIRE(mem.write(kData, request, sizeof request).ok());
  const uint16_t head =
      drv.add_and_publish({{kData, sizeof request, false}, {kData + 0x1000, 64, true}});
  CHECK(q.available(mem) == 1);

  DescriptorChain chain = pop_one(q, mem);
  CHECK(chain.head == head);
  REQUIRE(chain.readable.size() == 1);
  REQUIRE(chain.writable.size() == 1);
  CHECK(chain.readable[0].addr == kData);
  CHECK(chain.readable_bytes() == sizeof request);
  CHECK(chain.writable_bytes() == 64);
  CHECK(chain.writable[0].device_writable);

  ChainReader reader(mem, chain);
  char got[sizeof request] = {};
  REQUIRE(reader.read_exact(got, sizeof got).ok());
  CHECK(std::string(got) == request);
  CHECK(reader.remaining() == 0);

  ChainWriter writer(mem, chain);
  REQUIRE(writer.write_exact("reply", 5).ok());
  CHECK(writer.written() == 5);
  REQUIRE(q.add_used(mem, chain.head, static_cast<uint32_t>(writer.written())).ok());

  CHECK(drv.used_idx() == 1);
  CHECK(drv.used_elem(0).id == head);
  CHECK(drv.used_elem(0).len == 5);
  char reply[6] = {};
  REQUIRE(mem.read(kData + 0x1000, reply, 5).ok());
  CHECK(std::string(reply) == "reply");

  auto empty = q.pop(mem);
  REQUIRE(empty.ok());
  CHECK_FALSE(empty.value().has_value());
  CHECK(q.available(mem) == 0);
}

TEST_CASE("several chains pop in the driver's order, and undo_pop gives the last one back") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q);
  const uint16_t a = drv.add_and_publish({{kData, 10, true}});
  const uint16_t b = drv.add_and_publish({{kData + 100, 20, false}, {kData + 200, 30, true}});
  const uint16_t c = drv.add_and_publish({{kData + 300, 40, false}});
  CHECK(q.available(mem) == 3);

  CHECK(pop_one(q, mem).head == a);
  DescriptorChain second = pop_one(q, mem);
  CHECK(second.head == b);
  CHECK(second.readable_bytes() == 20);
  CHECK(second.writable_bytes() == 30);
  q.undo_pop();
  CHECK(pop_one(q, mem).head == b);
  DescriptorChain third = pop_one(q, mem);
  CHECK(third.head == c);
  CHECK(third.writable.empty());
  CHECK(q.available(mem) == 0);

  // Used entries go back in completion order, not pop order.
  REQUIRE(q.add_used(mem, c, 0).ok());
  REQUIRE(q.add_used(mem, a, 10).ok());
  CHECK(drv.used_idx() == 2);
  CHECK(drv.used_elem(0).id == c);
  CHECK(drv.used_elem(1).id == a);
  CHECK(drv.used_elem(1).len == 10);
}

TEST_CASE("16-bit ring indices wrap around") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 4);
  Queue q = make_queue();
  drv.configure(q);
  const uint32_t rounds = 70000;  // past 65535, so both indices wrap
  for (uint32_t i = 0; i < rounds; ++i) {
    const uint16_t head = drv.add_and_publish({{kData + (i % 4) * 64, 64, true}});
    DescriptorChain chain = pop_one(q, mem);
    REQUIRE(chain.head == head);
    REQUIRE(chain.writable[0].addr == kData + (i % 4) * 64);
    REQUIRE(q.add_used(mem, chain.head, i % 64).ok());
    REQUIRE(drv.used_idx() == static_cast<uint16_t>(i + 1));
    REQUIRE(drv.used_elem(static_cast<uint16_t>(i)).len == i % 64);
  }
  // A full ring published across the wrap point is still seen as `size` chains.
  for (int i = 0; i < 4; ++i) drv.add_and_publish({{kData, 8, true}});
  CHECK(q.available(mem) == 4);
}

TEST_CASE("validate accepts a sane queue and refuses bad sizes and placements") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 16);
  Queue q = make_queue(256);
  drv.configure(q);
  CHECK(q.validate(mem).ok());

  SUBCASE("size not a power of 2") {
    q.size = 24;
    CHECK(q.validate(mem).code() == Errc::protocol);
  }
  SUBCASE("size zero") {
    q.size = 0;
    CHECK_FALSE(q.validate(mem).ok());
  }
  SUBCASE("size above the device maximum") {
    q.size = 512;
    CHECK_FALSE(q.validate(mem).ok());
  }
  SUBCASE("misaligned descriptor table") {
    q.desc_table += 8;
    CHECK_FALSE(q.validate(mem).ok());
  }
  SUBCASE("misaligned used ring") {
    q.used_ring += 2;
    CHECK_FALSE(q.validate(mem).ok());
  }
  SUBCASE("descriptor table past the end of RAM") {
    q.desc_table = kRam - 16 * 8;
    CHECK_FALSE(q.validate(mem).ok());
  }
  SUBCASE("used ring near 2^64 (address + length overflows)") {
    q.used_ring = ~0ull - 3;
    CHECK_FALSE(q.validate(mem).ok());
  }
  SUBCASE("event_idx needs the trailing event words in RAM") {
    q.event_idx = true;
    q.used_ring = kRam - (4 + 8 * 16);  // exactly fits without avail_event
    CHECK_FALSE(q.validate(mem).ok());
    q.event_idx = false;
    CHECK(q.validate(mem).ok());
  }
}

TEST_CASE("popping from an unconfigured or odd-sized queue is an error, not a crash") {
  GuestMemory mem = make_memory();
  Queue q = make_queue();
  CHECK_FALSE(q.pop(mem).ok());  // not ready
  MockDriver drv(mem, 16);
  drv.configure(q);
  q.size = 12;
  drv.add_and_publish({{kData, 8, true}});
  CHECK_FALSE(q.pop(mem).ok());
  CHECK(q.available(mem) == 0);
}

}  // namespace airlock::virtio

namespace airlock::virtio {

// Hostile drivers: each of these must be refused with an error, never crash or spin.
TEST_CASE("hostile direct chains are refused") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q);

  SUBCASE("two descriptors pointing at each other") {
    drv.set_desc(0, kData, 8, VRING_DESC_F_NEXT, 1);
    drv.set_desc(1, kData, 8, VRING_DESC_F_NEXT, 0);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("loops") != std::string::npos);
  }
  SUBCASE("a descriptor pointing at itself") {
    drv.set_desc(3, kData, 8, VRING_DESC_F_NEXT, 3);
    drv.publish(3);
    CHECK(pop_error(q, mem).find("loops") != std::string::npos);
  }
  SUBCASE("a chain visiting more descriptors than the queue has") {
    for (uint16_t i = 0; i < 8; ++i) drv.set_desc(i, kData, 8, VRING_DESC_F_NEXT, (i + 1) % 8);
    drv.publish(0);
    CHECK_FALSE(q.pop(mem).ok());
  }
  SUBCASE("next index out of range") {
    drv.set_desc(0, kData, 8, VRING_DESC_F_NEXT, 8);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("next") != std::string::npos);
  }
  SUBCASE("head index out of range") {
    drv.set_desc(0, kData, 8, 0);
    drv.publish(0xffff);
    CHECK(pop_error(q, mem).find("head") != std::string::npos);
  }
  SUBCASE("buffer beyond the end of RAM") {
    drv.add_and_publish({{kRam - 4, 8, true}});
    CHECK(pop_error(q, mem).find("outside") != std::string::npos);
  }
  SUBCASE("buffer entirely outside RAM") {
    drv.add_and_publish({{0x100000000ull, 16, false}});
    CHECK_FALSE(q.pop(mem).ok());
  }
  SUBCASE("addr + len overflows 64 bits") {
    drv.add_and_publish({{~0ull - 15, 0x100, false}});
    CHECK(pop_error(q, mem).find("outside") != std::string::npos);
  }
  SUBCASE("device-writable before driver-readable") {
    drv.add_and_publish({{kData, 8, true}, {kData + 8, 8, false}});
    CHECK(pop_error(q, mem).find("readable") != std::string::npos);
  }
  SUBCASE("avail idx jumps more than the queue size ahead") {
    drv.add_chain({{kData, 8, true}});
    drv.set_avail_idx(9);
    CHECK(q.available(mem) == 0);
    CHECK(pop_error(q, mem).find("available index") != std::string::npos);
  }
  SUBCASE("indirect flag when the feature was not negotiated") {
    drv.set_desc(0, kData, 32, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("INDIRECT_DESC") != std::string::npos);
  }
}

TEST_CASE("a chain as long as the queue is fine, and an idx exactly `size` ahead too") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q);
  drv.add_and_publish({{kData, 1, false},
                       {kData + 1, 1, false},
                       {kData + 2, 1, false},
                       {kData + 3, 1, false},
                       {kData + 4, 1, true},
                       {kData + 5, 1, true},
                       {kData + 6, 1, true},
                       {kData + 7, 1, true}});
  DescriptorChain chain = pop_one(q, mem);
  CHECK(chain.readable.size() == 4);
  CHECK(chain.writable.size() == 4);

  Queue q2 = make_queue();
  MockDriver drv2(mem, 8, 0x20000);
  drv2.configure(q2);
  for (int i = 0; i < 8; ++i) drv2.add_and_publish({{kData, 4, true}});
  CHECK(q2.available(mem) == 8);
  for (int i = 0; i < 8; ++i) CHECK(pop_one(q2, mem).head == i);
}

TEST_CASE("indirect descriptor tables") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q, /*event_idx=*/false, /*indirect=*/true);
  constexpr uint64_t kTable = 0x30000;

  SUBCASE("a direct readable descriptor followed by an indirect table") {
    drv.write_desc(kTable, 0, kData + 16, 16, VRING_DESC_F_NEXT, 2);
    drv.write_desc(kTable, 2, kData + 64, 100, VRING_DESC_F_WRITE);
    drv.set_desc(0, kData, 16, VRING_DESC_F_NEXT, 5);
    // The WRITE flag on the descriptor naming the table must be ignored.
    drv.set_desc(5, kTable, 3 * 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_WRITE);
    drv.publish(0);
    DescriptorChain chain = pop_one(q, mem);
    CHECK(chain.head == 0);
    REQUIRE(chain.readable.size() == 2);
    CHECK(chain.readable[1].addr == kData + 16);
    REQUIRE(chain.writable.size() == 1);
    CHECK(chain.writable[0].len == 100);
  }
  SUBCASE("a table longer than the queue (as Linux makes) is accepted up to the bound") {
    const uint32_t entries = Queue::kMaxIndirectEntries;
    for (uint32_t i = 0; i < entries; ++i)
      drv.write_desc(kTable, i, kData + i, 1, i + 1 < entries ? VRING_DESC_F_NEXT : 0,
                     static_cast<uint16_t>(i + 1));
    drv.set_desc(1, kTable, entries * 16, VRING_DESC_F_INDIRECT);
    drv.publish(1);
    CHECK(pop_one(q, mem).readable_bytes() == entries);
  }
  SUBCASE("table longer than the bound") {
    drv.set_desc(0, kTable, (Queue::kMaxIndirectEntries + 1) * 16, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("too long") != std::string::npos);
  }
  SUBCASE("length not a multiple of 16") {
    drv.set_desc(0, kTable, 24, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("multiple of 16") != std::string::npos);
  }
  SUBCASE("zero length") {
    drv.set_desc(0, kTable, 0, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK_FALSE(q.pop(mem).ok());
  }
  SUBCASE("nested indirect table") {
    drv.write_desc(kTable, 0, kTable + 0x100, 16, VRING_DESC_F_INDIRECT);
    drv.set_desc(0, kTable, 16, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("nested") != std::string::npos);
  }
  SUBCASE("INDIRECT together with NEXT") {
    drv.write_desc(kTable, 0, kData, 16, 0);
    drv.set_desc(0, kTable, 16, VRING_DESC_F_INDIRECT | VRING_DESC_F_NEXT, 1);
    drv.set_desc(1, kData, 16, 0);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("NEXT") != std::string::npos);
  }
  SUBCASE("loop inside the table") {
    drv.write_desc(kTable, 0, kData, 16, VRING_DESC_F_NEXT, 1);
    drv.write_desc(kTable, 1, kData, 16, VRING_DESC_F_NEXT, 0);
    drv.set_desc(0, kTable, 4 * 16, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("loops") != std::string::npos);
  }
  SUBCASE("next past the end of the table") {
    drv.write_desc(kTable, 0, kData, 16, VRING_DESC_F_NEXT, 2);
    drv.set_desc(0, kTable, 2 * 16, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("out of range") != std::string::npos);
  }
  SUBCASE("table outside RAM, and table address overflowing") {
    drv.set_desc(0, kRam - 16, 32, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("outside") != std::string::npos);
    Queue q2 = make_queue();
    MockDriver drv2(mem, 8, 0x20000);
    drv2.configure(q2, false, true);
    drv2.set_desc(0, ~0ull - 15, 32, VRING_DESC_F_INDIRECT);
    drv2.publish(0);
    CHECK_FALSE(q2.pop(mem).ok());
  }
  SUBCASE("writable before readable across the direct/indirect boundary") {
    drv.write_desc(kTable, 0, kData, 16, 0);  // readable
    drv.set_desc(0, kData, 16, VRING_DESC_F_WRITE | VRING_DESC_F_NEXT, 1);
    drv.set_desc(1, kTable, 16, VRING_DESC_F_INDIRECT);
    drv.publish(0);
    CHECK(pop_error(q, mem).find("readable") != std::string::npos);
  }
}

}  // namespace airlock::virtio

namespace airlock::virtio {

TEST_CASE("ChainReader and ChainWriter copy across descriptor boundaries") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q);
  REQUIRE(mem.write(kData, "abc", 3).ok());
  REQUIRE(mem.write(kData + 0x100, "defg", 4).ok());
  REQUIRE(mem.write(kData + 0x200, "hij", 3).ok());
  drv.add_and_publish({{kData, 3, false},
                       {kData + 0x300, 0, false},  // empty buffers are skipped
                       {kData + 0x100, 4, false},
                       {kData + 0x200, 3, false},
                       {kData + 0x1000, 2, true},
                       {kData + 0x2000, 5, true}});
  DescriptorChain chain = pop_one(q, mem);

  ChainReader reader(mem, chain);
  CHECK(reader.remaining() == 10);
  char part[6] = {};
  auto n = reader.read(part, 5);
  REQUIRE(n.ok());
  CHECK(n.value() == 5);
  CHECK(std::string(part, 5) == "abcde");
  char rest[16] = {};
  CHECK_FALSE(reader.read_exact(rest, 6).ok());  // only 5 left
  n = reader.read(rest, sizeof rest);            // short read at the end
  REQUIRE(n.ok());
  CHECK(n.value() == 5);
  CHECK(std::string(rest, 5) == "fghij");
  CHECK(reader.remaining() == 0);

  ChainWriter writer(mem, chain);
  CHECK(writer.remaining() == 7);
  CHECK_FALSE(writer.write_exact("12345678", 8).ok());
  CHECK(writer.written() == 0);  // write_exact refuses before copying anything
  auto w = writer.write("123456789", 9);
  REQUIRE(w.ok());
  CHECK(w.value() == 7);
  CHECK(writer.written() == 7);
  CHECK(writer.remaining() == 0);
  char out[8] = {};
  REQUIRE(mem.read(kData + 0x1000, out, 2).ok());
  REQUIRE(mem.read(kData + 0x2000, out + 2, 5).ok());
  CHECK(std::string(out, 7) == "1234567");
  char after = 0;
  REQUIRE(mem.read(kData + 0x2005, &after, 1).ok());
  CHECK(after == 0);  // nothing written past the buffer
}

TEST_CASE("add_used refuses a head outside the queue") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q);
  CHECK(q.add_used(mem, 8, 0).code() == Errc::internal);
  CHECK(drv.used_idx() == 0);
}

TEST_CASE("without EVENT_IDX, notification suppression uses the ring flags") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q);

  drv.set_avail_flags(VRING_AVAIL_F_NO_INTERRUPT);
  CHECK_FALSE(q.should_notify(mem));
  drv.set_avail_flags(0);
  CHECK(q.should_notify(mem));

  q.set_notification(mem, false);
  CHECK(drv.used_flags() == VRING_USED_F_NO_NOTIFY);
  q.set_notification(mem, true);
  CHECK(drv.used_flags() == 0);
}

TEST_CASE("with EVENT_IDX, used_event and avail_event drive suppression") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue();
  drv.configure(q, /*event_idx=*/true);
  REQUIRE(q.validate(mem).ok());

  // Flags are ignored under EVENT_IDX.
  drv.set_avail_flags(VRING_AVAIL_F_NO_INTERRUPT);
  auto complete = [&] {
    DescriptorChain c = pop_one(q, mem);
    REQUIRE(q.add_used(mem, c.head, 0).ok());
  };
  drv.set_used_event(0);
  for (int i = 0; i < 6; ++i) drv.add_and_publish({{kData, 8, true}});

  complete();                         // used idx 0 -> 1
  CHECK(q.should_notify(mem));        // crossed used_event 0
  complete();                         // 1 -> 2
  CHECK_FALSE(q.should_notify(mem));  // used_event 0 already passed
  drv.set_used_event(3);
  complete();  // 2 -> 3
  CHECK_FALSE(q.should_notify(mem));
  complete();  // 3 -> 4: passes used_event 3
  CHECK(q.should_notify(mem));
  CHECK_FALSE(q.should_notify(mem));  // nothing new since

  // Each pop tells the driver to kick once it moves past what was consumed.
  CHECK(drv.avail_event() == 4);
  q.set_notification(mem, false);
  pop_one(q, mem);
  CHECK(drv.avail_event() == 4);  // no longer moved while disabled
  q.set_notification(mem, true);
  CHECK(drv.avail_event() == 5);
  CHECK(drv.used_flags() == 0);  // flags untouched under EVENT_IDX
}

TEST_CASE("reset forgets the ring state but keeps the device maximum") {
  GuestMemory mem = make_memory();
  MockDriver drv(mem, 8);
  Queue q = make_queue(64);
  drv.configure(q, true, true);
  drv.add_and_publish({{kData, 8, true}});
  pop_one(q, mem);
  q.reset();
  CHECK(q.max_size == 64);
  CHECK_FALSE(q.ready);
  CHECK(q.size == 0);
  CHECK_FALSE(q.event_idx);
  CHECK_FALSE(q.indirect_desc);
  // A fresh driver on the same queue starts again at index 0.
  MockDriver fresh(mem, 8, 0x20000);
  fresh.configure(q);
  const uint16_t head = fresh.add_and_publish({{kData, 4, true}});
  CHECK(pop_one(q, mem).head == head);
}

}  // namespace airlock::virtio
