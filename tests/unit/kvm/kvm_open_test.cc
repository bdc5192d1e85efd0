// Kvm::open() error reporting; needs no working KVM.
#include <doctest/doctest.h>

#include "kvm/kvm.h"

using namespace airlock;

TEST_CASE("a missing KVM device is 'unavailable' and points at the nested runner") {
  auto kvm = kvm::Kvm::open("/nonexistent/kvm");
  REQUIRE(!kvm.ok());
  CHECK(kvm.status().code() == Errc::unavailable);
  CHECK(kvm.status().message().find("scripts/kvm-run") != std::string::npos);
}

TEST_CASE("a device that is not KVM fails the API version check") {
  auto kvm = kvm::Kvm::open("/dev/null");
  REQUIRE(!kvm.ok());
  CHECK(kvm.status().code() == Errc::unavailable);
  CHECK(kvm.status().message().find("API version") != std::string::npos);
}

TEST_CASE("the required capability list names what airlock needs") {
  bool irqfd = false, immediate_exit = false;
  for (size_t i = 0; i < kvm::kNumRequiredCaps; ++i) {
    irqfd |= kvm::kRequiredCaps[i].cap == KVM_CAP_IRQFD;
    immediate_exit |= kvm::kRequiredCaps[i].cap == KVM_CAP_IMMEDIATE_EXIT;
  }
  CHECK(irqfd);
  CHECK(immediate_exit);
}
