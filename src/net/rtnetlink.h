// Minimal rtnetlink client: the few link/address/route operations a sandbox link needs, so
// airlock never depends on the `ip` binary at runtime.
//
// A socket talks to the network namespace of the thread that opened it, for its whole life.
// Threads: one Rtnetlink object is used by one thread at a time.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <vector>

#include "airlock/status.hpp"
#include "base/fd.h"

namespace airlock::net {

struct Ipv4Route {
  in_addr dst{};  // network byte order; 0.0.0.0 with prefix 0 is a default route
  uint8_t prefix_len = 0;
  in_addr gateway{};   // 0 when directly connected
  int oif = 0;         // output interface index, 0 if none
  uint32_t table = 0;  // RT_TABLE_MAIN, RT_TABLE_LOCAL, ...
  uint8_t type = 0;    // RTN_UNICAST, RTN_LOCAL, RTN_BROADCAST, ...
};

class Rtnetlink {
 public:
  // Opens NETLINK_ROUTE in the calling thread's network namespace.
  static Result<Rtnetlink> open();

  Status set_link_up(int ifindex);
  // Adds local/prefix_len on the interface (its connected route comes with it).
  Status add_ipv4_address(int ifindex, in_addr local, uint8_t prefix_len);
  // Every IPv4 route of every table.
  Result<std::vector<Ipv4Route>> ipv4_routes();

 private:
  explicit Rtnetlink(UniqueFd fd) : fd_(std::move(fd)) {}
  // Sends one request with NLM_F_ACK and waits for its ack (or error).
  Status request(void* msg, size_t len, const char* what);

  UniqueFd fd_;
  uint32_t seq_ = 1;
};

}  // namespace airlock::net
