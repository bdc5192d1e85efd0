// SandboxOptions limits (memory, vCPUs, timeout, max_lifetime): refused by Sandbox::create with
// Errc::invalid_argument before anything boots, so no KVM is needed.
#include <doctest/doctest.h>

#include "airlock/sandbox.hpp"

using namespace airlock;
using namespace std::chrono_literals;

namespace {

Status create_status(SandboxOptions o) {
  o.kernel_path = "/nonexistent/kernel";  // were validation to pass, this would fail differently
  o.initramfs_path = "/nonexistent/initramfs";
  auto sb = Sandbox::create(std::move(o));
  REQUIRE_FALSE(sb.ok());
  return sb.status();
}

}  // namespace

TEST_CASE("sandbox options: memory and vcpus and lifetimes out of range are invalid_argument") {
  SandboxOptions o;
  o.memory_bytes = 128ull << 20;
  Status st = create_status(o);
  CHECK(st.code() == Errc::invalid_argument);
  CHECK(st.message().find("256 MiB to 4096 MiB") != std::string::npos);
  o.memory_bytes = (4ull << 30) + (1 << 20);
  CHECK(create_status(o).code() == Errc::invalid_argument);
  o.memory_bytes = (768ull << 20) + 4096;  // not whole MiB
  CHECK(create_status(o).code() == Errc::invalid_argument);

  o = {};
  o.vcpus = 0;
  CHECK(create_status(o).code() == Errc::invalid_argument);
  o.vcpus = kMaxSandboxVcpus + 1;
  CHECK(create_status(o).message().find("vcpus") != std::string::npos);

  o = {};
  o.timeout = -1ms;
  CHECK(create_status(o).code() == Errc::invalid_argument);
  o.timeout = 10s;
  o.max_lifetime = 5s;
  CHECK(create_status(o).code() == Errc::invalid_argument);

  // The limits themselves are accepted: the error is then about the missing kernel.
  for (uint64_t mem : {kMinSandboxMemory, uint64_t{768} << 20, kMaxSandboxMemory}) {
    o = {};
    o.memory_bytes = mem;
    o.vcpus = 1;
    Status ok_opts = create_status(o);
    CHECK_MESSAGE(ok_opts.code() != Errc::invalid_argument, ok_opts.to_string());
  }
}
