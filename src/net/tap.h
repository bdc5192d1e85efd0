// Tap devices for virtio-net: IFF_TAP | IFF_NO_PI | IFF_VNET_HDR with a 12-byte
// virtio_net_hdr_v1 in front of every frame (the header virtio 1.x drivers use), non-blocking.
//
// A tap is created in the network namespace of the calling thread (see netns.h).
// Threads: reentrant.
#pragma once

#include <string>

#include "airlock/status.hpp"
#include "base/fd.h"

namespace airlock::net {

constexpr int kVnetHdrSize = 12;  // sizeof(virtio_net_hdr_v1) == sizeof(virtio_net_hdr_mrg_rxbuf)

struct Tap {
  UniqueFd fd;
  std::string name;
  int ifindex = 0;
};

// Creates a tap named `name` (needs CAP_NET_ADMIN in the namespace's user namespace).
Result<Tap> create_tap(const std::string& name);

// Checks a tap fd opened by someone else (a privileged helper): it must be a tap with
// IFF_NO_PI and IFF_VNET_HDR. Sets the header size to 12 and makes it non-blocking. Returns the
// interface name; the index is resolved in the calling thread's namespace (0 if not found
// there).
Result<Tap> adopt_tap(UniqueFd fd);

}  // namespace airlock::net
