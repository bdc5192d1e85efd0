// Host side of Sandbox::expose_port: a TCP listener on 127.0.0.1 (ephemeral port) whose every
// connection is carried to a guest TCP port through a new guest stream (a vsock connection to
// the agent's forwarder, src/agent/forward.h, in a sandbox; any socket in tests).
//
// Per connection: a handshake (request, reply: the guest connected or why not), then two
// copying threads, each holding one chunk at most (64 KiB): a slow side stalls the other, never
// grows a buffer. At most max_connections at once; more are accepted and closed at once. The
// guest is hostile: a bad reply, a stalled handshake or garbage only ends that connection.
//
// Threads: start() and stop() from any thread; stop() closes the listener and every connection
// and joins every thread (idempotent; the destructor calls it). An accept thread owns the
// listener and reaps finished connections.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include "airlock/status.hpp"
#include "base/fd.h"
#include "devices/vsock.h"

namespace airlock::sandbox {

using Millis = std::chrono::milliseconds;

// A byte stream to the guest forwarder (as VsockStream).
class GuestStream {
 public:
  virtual ~GuestStream() = default;
  // 0: end of stream; Errc::timeout when nothing came; Errc::closed once closed.
  virtual Result<size_t> read(void* buf, size_t len, Millis timeout) = 0;
  virtual Status write(std::string_view data, Millis timeout) = 0;
  virtual void shutdown_write() = 0;
  // Wakes pending read/write calls (they fail). Idempotent; any thread.
  virtual void close() = 0;
};

using GuestDialer = std::function<Result<std::unique_ptr<GuestStream>>(Millis timeout)>;

// Dials the forwarder through a sandbox's vsock device.
GuestDialer vsock_dialer(std::shared_ptr<devices::VsockDevice> device);
// A GuestStream over a connected stream socket (tests); takes ownership of fd.
std::unique_ptr<GuestStream> make_socket_guest_stream(int fd);

struct ForwarderOptions {
  size_t max_connections = 64;
  Millis handshake_timeout{10000};
  // How long a write may wait for the other side to take data before the connection is
  // considered dead (the other direction keeps the connection's threads busy meanwhile).
  Millis stall_timeout{120000};
};

class PortForwarder {
 public:
  static Result<std::unique_ptr<PortForwarder>> start(uint16_t guest_port, GuestDialer dial,
                                                      ForwarderOptions options = {});
  ~PortForwarder();
  PortForwarder(const PortForwarder&) = delete;
  PortForwarder& operator=(const PortForwarder&) = delete;

  uint16_t guest_port() const { return guest_port_; }
  uint16_t host_port() const { return host_port_; }
  std::string address() const;  // "127.0.0.1:PORT"
  // Connections currently open, and bytes carried so far each way.
  size_t active_connections() const;
  uint64_t bytes_to_guest() const { return bytes_to_guest_.load(); }
  uint64_t bytes_from_guest() const { return bytes_from_guest_.load(); }

  void stop();

 private:
  struct Connection;
  PortForwarder() = default;
  void accept_loop();
  void serve(const std::shared_ptr<Connection>& c);
  void reap(bool all);

  uint16_t guest_port_ = 0;
  uint16_t host_port_ = 0;
  GuestDialer dial_;
  ForwarderOptions options_;
  UniqueFd listen_fd_;
  UniqueFd stop_fd_;  // eventfd: wakes the accept thread
  std::thread accept_thread_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> bytes_to_guest_{0}, bytes_from_guest_{0};

  mutable std::mutex mutex_;
  std::list<std::shared_ptr<Connection>> connections_;
  std::once_flag stop_once_;
};

}  // namespace airlock::sandbox
