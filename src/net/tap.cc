#include "net/tap.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstring>

namespace airlock::net {

namespace {

Status configure(int fd) {
  int hdr = kVnetHdrSize;
  if (::ioctl(fd, TUNSETVNETHDRSZ, &hdr) != 0) return errno_status("TUNSETVNETHDRSZ");
  // Offloads start off; the virtio-net device turns on what the guest accepted.
  if (::ioctl(fd, TUNSETOFFLOAD, 0u) != 0) return errno_status("TUNSETOFFLOAD");
  return set_nonblocking(fd);
}

}  // namespace

Result<Tap> create_tap(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ)
    return Status(Errc::invalid_argument, "tap name must be 1-15 characters");
  UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    Status st = errno_status("open /dev/net/tun");
    return st.prefix("creating tap (needs /dev/net/tun)");
  }
  ifreq ifr{};
  memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    int err = errno;
    if (err == EPERM || err == EACCES)
      return Status(Errc::permission_denied,
                    "creating tap " + name + ": operation not permitted (needs CAP_NET_ADMIN)");
    return errno_status(err, "TUNSETIFF " + name);
  }
  AIRLOCK_RETURN_IF_ERROR(configure(fd.get()));
  Tap tap;
  tap.name = ifr.ifr_name;
  tap.ifindex = static_cast<int>(if_nametoindex(tap.name.c_str()));
  if (tap.ifindex == 0) return errno_status("if_nametoindex " + tap.name);
  tap.fd = std::move(fd);
  return tap;
}

Result<Tap> adopt_tap(UniqueFd fd) {
  if (!fd) return Status(Errc::invalid_argument, "tap fd is not open");
  ifreq ifr{};
  if (::ioctl(fd.get(), TUNGETIFF, &ifr) != 0)
    return Status(Errc::invalid_argument,
                  "the fd given as a tap is not an attached tun/tap device (TUNGETIFF: " +
                      errno_status("").message().substr(2) + ")");
  const int need = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if ((ifr.ifr_flags & need) != need)
    return Status(Errc::invalid_argument,
                  "tap fd must be opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR");
  AIRLOCK_RETURN_IF_ERROR(configure(fd.get()));
  Tap tap;
  ifr.ifr_name[IFNAMSIZ - 1] = 0;
  tap.name = ifr.ifr_name;
  tap.ifindex = static_cast<int>(if_nametoindex(tap.name.c_str()));
  tap.fd = std::move(fd);
  return tap;
}

}  // namespace airlock::net
