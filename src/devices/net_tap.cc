#include "devices/net_tap.h"

#include <errno.h>
#include <linux/if_tun.h>
// <linux/virtio_net.h> has a struct member named `class`, which C++ cannot parse.
#define class class_
#include <linux/virtio_net.h>
#undef class
#include <sys/ioctl.h>
#include <unistd.h>

namespace airlock::devices {

namespace {

constexpr uint64_t bit(unsigned b) {
  return 1ull << b;
}

// Guest-side offloads and the tap flags that let the kernel hand us such frames.
constexpr struct {
  unsigned feature;
  unsigned tun_flag;
} kGuestOffloads[] = {
    {VIRTIO_NET_F_GUEST_CSUM, TUN_F_CSUM},
    {VIRTIO_NET_F_GUEST_TSO4, TUN_F_TSO4},
    {VIRTIO_NET_F_GUEST_TSO6, TUN_F_TSO6},
    {VIRTIO_NET_F_GUEST_ECN, TUN_F_TSO_ECN},
};

}  // namespace

Result<std::unique_ptr<TapBackend>> TapBackend::create(UniqueFd tap) {
  if (!tap) return Status(Errc::invalid_argument, "tap backend: no tap fd");
  int hdr = static_cast<int>(kVirtioNetHdrSize);
  if (::ioctl(tap.get(), TUNSETVNETHDRSZ, &hdr) != 0)
    return errno_status("tap backend: TUNSETVNETHDRSZ (is this a tap with IFF_VNET_HDR?)");
  AIRLOCK_RETURN_IF_ERROR(set_nonblocking(tap.get()));

  // The vnet header path of a tap accepts partial checksums and TCP GSO from us whatever
  // TUNSETOFFLOAD says; TUNSETOFFLOAD only governs what the kernel may send us.
  uint64_t features = bit(VIRTIO_NET_F_CSUM) | bit(VIRTIO_NET_F_HOST_TSO4) |
                      bit(VIRTIO_NET_F_HOST_TSO6) | bit(VIRTIO_NET_F_HOST_ECN);
  unsigned all = 0;
  for (auto o : kGuestOffloads) all |= o.tun_flag;
  if (::ioctl(tap.get(), TUNSETOFFLOAD, all) == 0) {
    for (auto o : kGuestOffloads) features |= bit(o.feature);
  } else if (::ioctl(tap.get(), TUNSETOFFLOAD, TUN_F_CSUM) == 0) {
    features |= bit(VIRTIO_NET_F_GUEST_CSUM);
  }
  if (::ioctl(tap.get(), TUNSETOFFLOAD, 0u) != 0) return errno_status("tap backend: TUNSETOFFLOAD");
  return std::unique_ptr<TapBackend>(new TapBackend(std::move(tap), features));
}

Status TapBackend::set_guest_offloads(uint64_t acked) {
  unsigned flags = 0;
  for (auto o : kGuestOffloads)
    if (acked & features_ & bit(o.feature)) flags |= o.tun_flag;
  // The kernel ignores TSO flags without TUN_F_CSUM; the spec makes GUEST_TSO* depend on
  // GUEST_CSUM too, so a driver that breaks that rule just gets no offloads.
  if (!(flags & TUN_F_CSUM)) flags = 0;
  if (::ioctl(tap_.get(), TUNSETOFFLOAD, flags) != 0)
    return errno_status("tap backend: TUNSETOFFLOAD");
  return ok_status();
}

Result<size_t> TapBackend::read_frame(const iovec* iov, size_t iovcnt) {
  for (;;) {
    ssize_t n = ::readv(tap_.get(), iov, static_cast<int>(iovcnt));
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return size_t{0};
    // The kernel refuses to copy a frame into too small a buffer and drops it.
    if (errno == EINVAL || errno == EFAULT)
      return Status(Errc::resource_exhausted, "tap: frame larger than the receive buffer");
    return errno_status("tap read");
  }
}

Result<size_t> TapBackend::write_frame(const iovec* iov, size_t iovcnt) {
  for (;;) {
    ssize_t n = ::writev(tap_.get(), iov, static_cast<int>(iovcnt));
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return size_t{0};
    // A header the kernel will not accept (bad GSO/checksum fields) or a runt frame; EIO
    // when the interface is down. The frame is lost, as on a wire.
    const int err = errno;
    if (err == EINVAL || err == EFAULT || err == EIO || err == ENOMEM || err == ENOBUFS)
      return Status(Errc::invalid_argument,
                    "tap write: frame dropped by the kernel: " + errno_status(err, "").message());
    return errno_status(err, "tap write");
  }
}

}  // namespace airlock::devices
