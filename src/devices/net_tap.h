// NetBackend over a tap opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR (src/net/tap.h makes
// one inside the sandbox's namespace). Guest offloads are switched on in the tap with
// TUNSETOFFLOAD exactly as the driver negotiated them; frames the guest sends may always carry
// checksum/TSO requests, the tap's vnet header path accepts them.
//
// Threads: the device's worker; create() from any thread.
#pragma once

#include <memory>

#include "base/fd.h"
#include "devices/net_backend.h"

namespace airlock::devices {

class TapBackend final : public NetBackend {
 public:
  // Takes the tap; sets the 12-byte header, non-blocking mode, and probes which offloads the
  // kernel accepts (then turns them off until activation).
  static Result<std::unique_ptr<TapBackend>> create(UniqueFd tap);

  const char* name() const override { return "tap"; }
  int fd() const override { return tap_.get(); }
  Result<size_t> read_frame(const iovec* iov, size_t iovcnt) override;
  Result<size_t> write_frame(const iovec* iov, size_t iovcnt) override;
  uint64_t offload_features() const override { return features_; }
  Status set_guest_offloads(uint64_t acked_features) override;

 private:
  TapBackend(UniqueFd tap, uint64_t features) : tap_(std::move(tap)), features_(features) {}

  UniqueFd tap_;
  uint64_t features_ = 0;
};

}  // namespace airlock::devices
