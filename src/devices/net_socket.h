// NetBackend over a datagram socket (AF_UNIX SOCK_SEQPACKET or SOCK_DGRAM, connected): one
// message is one frame with its 12-byte virtio_net_hdr_v1. Lets a userspace network stack in
// another process (or a test) stand in for the tap. Offloads are whatever the peer declares.
//
// Threads: the device's worker; create() from any thread.
#pragma once

#include <memory>

#include "base/fd.h"
#include "devices/net_backend.h"

namespace airlock::devices {

class SocketBackend final : public NetBackend {
 public:
  // `offloads`: VIRTIO_NET_F_* bits the peer handles (see NetBackend::offload_features).
  static Result<std::unique_ptr<SocketBackend>> create(UniqueFd socket, uint64_t offloads = 0);

  const char* name() const override { return "socket"; }
  int fd() const override { return sock_.get(); }
  Result<size_t> read_frame(const iovec* iov, size_t iovcnt) override;
  Result<size_t> write_frame(const iovec* iov, size_t iovcnt) override;
  uint64_t offload_features() const override { return offloads_; }

 private:
  SocketBackend(UniqueFd sock, uint64_t offloads) : sock_(std::move(sock)), offloads_(offloads) {}

  UniqueFd sock_;
  uint64_t offloads_ = 0;
};

}  // namespace airlock::devices
