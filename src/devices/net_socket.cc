#include "devices/net_socket.h"

#include <errno.h>
#include <sys/socket.h>

namespace airlock::devices {

Result<std::unique_ptr<SocketBackend>> SocketBackend::create(UniqueFd socket, uint64_t offloads) {
  if (!socket) return Status(Errc::invalid_argument, "socket backend: no socket");
  int type = 0;
  socklen_t len = sizeof type;
  if (::getsockopt(socket.get(), SOL_SOCKET, SO_TYPE, &type, &len) != 0)
    return errno_status("socket backend: SO_TYPE");
  if (type != SOCK_SEQPACKET && type != SOCK_DGRAM)
    return Status(Errc::invalid_argument,
                  "socket backend: needs a SOCK_SEQPACKET or SOCK_DGRAM socket");
  AIRLOCK_RETURN_IF_ERROR(set_nonblocking(socket.get()));
  return std::unique_ptr<SocketBackend>(new SocketBackend(std::move(socket), offloads));
}

Result<size_t> SocketBackend::read_frame(const iovec* iov, size_t iovcnt) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  for (;;) {
    ssize_t n = ::recvmsg(sock_.get(), &msg, MSG_DONTWAIT);
    if (n > 0 && (msg.msg_flags & MSG_TRUNC))
      return Status(Errc::resource_exhausted, "socket backend: frame larger than the buffer");
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) return Status(Errc::closed, "socket backend: peer closed");
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return size_t{0};
    return errno_status("socket backend: recvmsg");
  }
}

Result<size_t> SocketBackend::write_frame(const iovec* iov, size_t iovcnt) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov);
  msg.msg_iovlen = iovcnt;
  for (;;) {
    ssize_t n = ::sendmsg(sock_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return size_t{0};
    if (errno == EMSGSIZE) return Status(Errc::invalid_argument, "socket backend: frame too big");
    return errno_status("socket backend: sendmsg");
  }
}

}  // namespace airlock::devices
