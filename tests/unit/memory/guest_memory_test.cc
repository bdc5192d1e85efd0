#include <doctest/doctest.h>

#include "memory/guest_memory.h"

using namespace airlock;

TEST_CASE("guest memory checks every range") {
  auto mem = GuestMemory::create(1 << 20);
  REQUIRE(mem.ok());
  CHECK(mem->host_ptr(0, 1 << 20) != nullptr);
  CHECK(mem->host_ptr(1, 1 << 20) == nullptr);
  CHECK(mem->host_ptr(UINT64_MAX, 2) == nullptr);
  CHECK(mem->host_ptr(4096, UINT64_MAX) == nullptr);
  CHECK(mem->write_obj<uint32_t>(100, 0xdeadbeef).ok());
  CHECK(*mem->read_obj<uint32_t>(100) == 0xdeadbeef);
  CHECK(!mem->read_obj<uint64_t>((1 << 20) - 4).ok());
}

TEST_CASE("guest memory with a hole spans two regions") {
  auto mem = GuestMemory::create(8 << 20, 4 << 20);
  REQUIRE(mem.ok());
  REQUIRE(mem->regions().size() == 2);
  CHECK(mem->regions()[1].guest_addr == (1ull << 32));
  CHECK(mem->contains((1ull << 32) + 4096, 4096));
  CHECK(!mem->contains((4 << 20) + 4096, 1));
  CHECK(mem->end_addr() == (1ull << 32) + (4 << 20));
}
