#include "net/rtnetlink.h"

#include <errno.h>
#include <linux/if.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>

namespace airlock::net {

namespace {

// A request buffer: header, fixed part, then attributes appended with add_attr().
struct NlRequest {
  alignas(NLMSG_ALIGNTO) uint8_t buf[512] = {};
  nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf); }

  template <class Fixed>
  Fixed* init(uint16_t type, uint16_t flags) {
    hdr()->nlmsg_len = NLMSG_LENGTH(sizeof(Fixed));
    hdr()->nlmsg_type = type;
    hdr()->nlmsg_flags = flags;
    return reinterpret_cast<Fixed*>(NLMSG_DATA(hdr()));
  }

  void add_attr(uint16_t type, const void* data, size_t len) {
    size_t off = NLMSG_ALIGN(hdr()->nlmsg_len);
    auto* rta = reinterpret_cast<rtattr*>(buf + off);
    rta->rta_type = type;
    rta->rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
    memcpy(RTA_DATA(rta), data, len);
    hdr()->nlmsg_len = static_cast<uint32_t>(off + RTA_ALIGN(rta->rta_len));
  }
};

}  // namespace

Result<Rtnetlink> Rtnetlink::open() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) return errno_status("socket(NETLINK_ROUTE)");
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0)
    return errno_status("bind(NETLINK_ROUTE)");
  return Rtnetlink(std::move(fd));
}

Status Rtnetlink::request(void* msg, size_t len, const char* what) {
  auto* h = static_cast<nlmsghdr*>(msg);
  h->nlmsg_seq = seq_++;
  h->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_.get(), msg, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    return errno_status(std::string("netlink send: ") + what);
  alignas(NLMSG_ALIGNTO) uint8_t buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status(std::string("netlink recv: ") + what);
    }
    int left = static_cast<int>(n);
    for (auto* r = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_seq != h->nlmsg_seq || r->nlmsg_type != NLMSG_ERROR) continue;
      if (r->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr)))
        return Status(Errc::io, std::string("netlink: truncated ack for ") + what);
      int err = static_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
      if (err == 0) return ok_status();
      return errno_status(-err, what);
    }
  }
}

Status Rtnetlink::set_link_up(int ifindex) {
  NlRequest req;
  auto* ifi = req.init<ifinfomsg>(RTM_NEWLINK, 0);
  ifi->ifi_family = AF_UNSPEC;
  ifi->ifi_index = ifindex;
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  return request(req.buf, req.hdr()->nlmsg_len, "set link up");
}

Status Rtnetlink::add_ipv4_address(int ifindex, in_addr local, uint8_t prefix_len) {
  NlRequest req;
  auto* ifa = req.init<ifaddrmsg>(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = prefix_len;
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = static_cast<uint32_t>(ifindex);
  req.add_attr(IFA_LOCAL, &local, sizeof local);
  req.add_attr(IFA_ADDRESS, &local, sizeof local);
  return request(req.buf, req.hdr()->nlmsg_len, "add IPv4 address");
}

Result<std::vector<Ipv4Route>> Rtnetlink::ipv4_routes() {
  NlRequest req;
  auto* rtm = req.init<rtmsg>(RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP);
  rtm->rtm_family = AF_INET;
  req.hdr()->nlmsg_seq = seq_++;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_.get(), req.buf, req.hdr()->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel),
               sizeof kernel) < 0)
    return errno_status("netlink send: dump routes");
  std::vector<Ipv4Route> routes;
  alignas(NLMSG_ALIGNTO) uint8_t buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_status("netlink recv: dump routes");
    }
    int left = static_cast<int>(n);
    for (auto* r = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(r, left); r = NLMSG_NEXT(r, left)) {
      if (r->nlmsg_seq != req.hdr()->nlmsg_seq) continue;
      if (r->nlmsg_type == NLMSG_DONE) return routes;
      if (r->nlmsg_type == NLMSG_ERROR) {
        if (r->nlmsg_len < NLMSG_LENGTH(sizeof(nlmsgerr)))
          return Status(Errc::io, "netlink: truncated error in route dump");
        return errno_status(-static_cast<nlmsgerr*>(NLMSG_DATA(r))->error, "dump routes");
      }
      if (r->nlmsg_type != RTM_NEWROUTE || r->nlmsg_len < NLMSG_LENGTH(sizeof(rtmsg))) continue;
      auto* m = static_cast<rtmsg*>(NLMSG_DATA(r));
      Ipv4Route route;
      route.prefix_len = m->rtm_dst_len;
      route.table = m->rtm_table;
      route.type = m->rtm_type;
      int attr_len = static_cast<int>(RTM_PAYLOAD(r));
      for (auto* a = RTM_RTA(m); RTA_OK(a, attr_len); a = RTA_NEXT(a, attr_len)) {
        size_t plen = RTA_PAYLOAD(a);
        if (a->rta_type == RTA_DST && plen == 4) memcpy(&route.dst, RTA_DATA(a), 4);
        if (a->rta_type == RTA_GATEWAY && plen == 4) memcpy(&route.gateway, RTA_DATA(a), 4);
        if (a->rta_type == RTA_OIF && plen == 4) memcpy(&route.oif, RTA_DATA(a), 4);
        if (a->rta_type == RTA_TABLE && plen == 4) memcpy(&route.table, RTA_DATA(a), 4);
      }
      routes.push_back(route);
    }
  }
}

}  // namespace airlock::net
