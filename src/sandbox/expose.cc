#include "sandbox/expose.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include <fmt/format.h>

#include "agent/forward.h"
#include "base/log.h"

namespace airlock::sandbox {

namespace fwd = agent::forward;

namespace {

constexpr const char* kLog = "expose";
constexpr size_t kChunk = 64 * 1024;

class VsockGuestStream final : public GuestStream {
 public:
  explicit VsockGuestStream(std::unique_ptr<devices::VsockStream> s) : s_(std::move(s)) {}
  Result<size_t> read(void* buf, size_t len, Millis timeout) override {
    return s_->read(buf, len, timeout);
  }
  Status write(std::string_view data, Millis timeout) override { return s_->write(data, timeout); }
  void shutdown_write() override { s_->shutdown_write(); }
  void close() override { s_->close(); }

 private:
  std::unique_ptr<devices::VsockStream> s_;
};

class SocketGuestStream final : public GuestStream {
 public:
  explicit SocketGuestStream(int fd) : fd_(fd) {}
  Result<size_t> read(void* buf, size_t len, Millis timeout) override {
    AIRLOCK_RETURN_IF_ERROR(wait_for(POLLIN, timeout));
    ssize_t n = ::recv(fd_.get(), buf, len, 0);
    if (n < 0) return errno_status("recv");
    return static_cast<size_t>(n);
  }
  Status write(std::string_view data, Millis timeout) override {
    while (!data.empty()) {
      AIRLOCK_RETURN_IF_ERROR(wait_for(POLLOUT, timeout));
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) return Status(Errc::closed, std::string("send: ") + std::strerror(errno));
      data.remove_prefix(static_cast<size_t>(n));
    }
    return ok_status();
  }
  void shutdown_write() override { ::shutdown(fd_.get(), SHUT_WR); }
  void close() override { ::shutdown(fd_.get(), SHUT_RDWR); }

 private:
  Status wait_for(short events, Millis timeout) {
    struct pollfd p {
      fd_.get(), events, 0
    };
    for (;;) {
      int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return errno_status("poll");
      if (n == 0) return Status(Errc::timeout, "guest stream: no progress");
      return ok_status();
    }
  }
  UniqueFd fd_;
};

void shutdown_fd(int fd, int how) {
  if (fd >= 0) ::shutdown(fd, how);
}

}  // namespace

GuestDialer vsock_dialer(std::shared_ptr<devices::VsockDevice> device) {
  return [device](Millis timeout) -> Result<std::unique_ptr<GuestStream>> {
    AIRLOCK_ASSIGN_OR_RETURN(auto s, device->connect(fwd::kGuestPort, timeout));
    return std::unique_ptr<GuestStream>(new VsockGuestStream(std::move(s)));
  };
}

std::unique_ptr<GuestStream> make_socket_guest_stream(int fd) {
  return std::make_unique<SocketGuestStream>(fd);
}

struct PortForwarder::Connection {
  UniqueFd tcp;
  std::mutex mu;
  std::unique_ptr<GuestStream> guest;  // set once dialed (under mu)
  bool aborted = false;
  std::thread thread;  // handshake, then host -> guest
  std::atomic<bool> done{false};

  // Ends both sides at once: wakes every blocked read/write of this connection.
  void cut_off() {
    std::lock_guard lock(mu);
    aborted = true;
    shutdown_fd(tcp.get(), SHUT_RDWR);
    if (guest) guest->close();
  }
};

Result<std::unique_ptr<PortForwarder>> PortForwarder::start(uint16_t guest_port, GuestDialer dial,
                                                            ForwarderOptions options) {
  if (guest_port == 0) return Status(Errc::invalid_argument, "guest port 0 cannot be exposed");
  std::unique_ptr<PortForwarder> f(new PortForwarder());
  f->guest_port_ = guest_port;
  f->dial_ = std::move(dial);
  f->options_ = options;
  f->listen_fd_ = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!f->listen_fd_) return errno_status("socket");
  struct sockaddr_in addr {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  if (::bind(f->listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    return errno_status("bind 127.0.0.1");
  if (::listen(f->listen_fd_.get(), 64) != 0) return errno_status("listen");
  socklen_t len = sizeof addr;
  if (::getsockname(f->listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0)
    return errno_status("getsockname");
  f->host_port_ = ntohs(addr.sin_port);
  AIRLOCK_ASSIGN_OR_RETURN(f->stop_fd_, make_eventfd());
  try {
    f->accept_thread_ = std::thread([p = f.get()] { p->accept_loop(); });
  } catch (const std::exception& e) {
    return Status(Errc::resource_exhausted, std::string("cannot start a thread: ") + e.what());
  }
  return f;
}

PortForwarder::~PortForwarder() {
  stop();
}

std::string PortForwarder::address() const {
  return fmt::format("127.0.0.1:{}", host_port_);
}

size_t PortForwarder::active_connections() const {
  std::lock_guard lock(mutex_);
  size_t n = 0;
  for (const auto& c : connections_)
    if (!c->done.load()) ++n;
  return n;
}

void PortForwarder::accept_loop() {
  while (!stopping_.load()) {
    struct pollfd p[2] = {{listen_fd_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
    int n = ::poll(p, 2, 1000);
    reap(false);
    if (n < 0 && errno != EINTR) {
      AIRLOCK_LOG_WARN(kLog, "poll failed: {}", std::strerror(errno));
      return;
    }
    if (stopping_.load()) return;
    if (n <= 0 || !(p[0].revents & POLLIN)) continue;
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      // EMFILE and friends: do not spin on a connection we cannot take.
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) ::usleep(50000);
      continue;
    }
    if (active_connections() >= options_.max_connections) {
      AIRLOCK_LOG_DEBUG(kLog, "port {}: connection limit {} reached, refusing", guest_port_,
                        options_.max_connections);
      continue;  // fd closes: the client sees the connection end
    }
    auto c = std::make_shared<Connection>();
    c->tcp = std::move(fd);
    std::lock_guard lock(mutex_);
    try {
      c->thread = std::thread([this, c] { serve(c); });
    } catch (const std::exception&) {
      continue;  // no thread: that connection closes
    }
    connections_.push_back(std::move(c));
  }
}

// Joins finished connections (all of them, aborting the rest, when `all`).
void PortForwarder::reap(bool all) {
  std::vector<std::shared_ptr<Connection>> finished;
  {
    std::lock_guard lock(mutex_);
    for (auto it = connections_.begin(); it != connections_.end();) {
      if (all || (*it)->done.load()) {
        finished.push_back(*it);
        it = connections_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& c : finished) {
    if (all) c->cut_off();
    if (c->thread.joinable()) c->thread.join();
  }
}

void PortForwarder::serve(const std::shared_ptr<Connection>& c) {
  auto finish = [&] {
    c->cut_off();
    c->done.store(true);
  };
  auto dialed = dial_(options_.handshake_timeout);
  if (!dialed.ok()) {
    AIRLOCK_LOG_DEBUG(kLog, "port {}: cannot reach the guest: {}", guest_port_,
                      dialed.status().to_string());
    return finish();
  }
  GuestStream* guest = dialed.value().get();
  {
    std::lock_guard lock(c->mu);
    c->guest = std::move(dialed).value();
    if (c->aborted) c->guest->close();
  }

  // Handshake: the guest says whether it reached its port before any byte flows.
  auto deadline = std::chrono::steady_clock::now() + options_.handshake_timeout;
  Status st = guest->write(fwd::encode_request(guest_port_), options_.handshake_timeout);
  uint8_t reply[fwd::kMessageSize];
  size_t got = 0;
  while (st.ok() && got < sizeof reply) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      st = Status(Errc::timeout, "no handshake reply from the guest forwarder");
      break;
    }
    auto n = guest->read(reply + got, sizeof reply - got, left);
    if (!n.ok())
      st = n.status();
    else if (n.value() == 0)
      st = Status(Errc::closed, "the guest forwarder closed");
    else
      got += n.value();
  }
  int32_t result = 0;
  if (st.ok() && !fwd::decode_reply(reply, result))
    st = Status(Errc::protocol, "malformed handshake reply from the guest forwarder");
  if (st.ok() && result != 0)
    st = Status(Errc::unavailable,
                fmt::format("guest port {}: {}", guest_port_,
                            result > 0 && result < 4096 ? std::strerror(result)
                                                        : "error " + std::to_string(result)));
  if (!st.ok()) {
    AIRLOCK_LOG_DEBUG(kLog, "port {}: {}", guest_port_, st.to_string());
    return finish();
  }

  // guest -> host on a second thread; host -> guest here.
  std::thread back;
  try {
    back = std::thread([this, c, guest] {
      std::vector<char> buf(kChunk);
      for (;;) {
        auto n = guest->read(buf.data(), buf.size(), Millis(3600000));
        if (!n.ok() && n.status().code() == Errc::timeout) continue;
        if (!n.ok()) return c->cut_off();
        if (n.value() == 0) return shutdown_fd(c->tcp.get(), SHUT_WR);
        const char* p = buf.data();
        size_t left = n.value();
        while (left > 0) {
          ssize_t w = ::send(c->tcp.get(), p, left, MSG_NOSIGNAL);
          if (w < 0 && errno == EINTR) continue;
          if (w <= 0) return c->cut_off();
          p += w;
          left -= static_cast<size_t>(w);
          bytes_from_guest_ += static_cast<uint64_t>(w);
        }
      }
    });
  } catch (const std::exception&) {
    return finish();
  }
  std::vector<char> buf(kChunk);
  for (;;) {
    ssize_t n = ::recv(c->tcp.get(), buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      guest->shutdown_write();
      break;
    }
    if (n < 0) {
      c->cut_off();
      break;
    }
    if (!guest->write(std::string_view(buf.data(), static_cast<size_t>(n)), options_.stall_timeout)
             .ok()) {
      c->cut_off();
      break;
    }
    bytes_to_guest_ += static_cast<uint64_t>(n);
  }
  back.join();
  finish();
}

void PortForwarder::stop() {
  std::call_once(stop_once_, [this] {
    stopping_.store(true);
    signal_eventfd(stop_fd_.get());
    if (accept_thread_.joinable()) accept_thread_.join();
    listen_fd_.reset();
    reap(true);
  });
}

}  // namespace airlock::sandbox
