// Guest side of Sandbox::expose_port (src/agent/forward.h): a forwarder process listens on
// guest vsock port forward::kGuestPort; for each host connection it reads the request, connects
// to 127.0.0.1:<port> in the guest, answers, then copies bytes both ways until both directions
// ended or either side failed. One child process per connection (a stuck or failing connection
// affects only itself); at most 64 KiB is buffered per direction, so a slow reader stalls its
// writer instead of growing memory.
//
// Single-threaded processes; start_forwarder() is called once by the agent at start.
#pragma once

namespace airlock::guest {

// Forks the forwarder (it binds its vsock port, retrying while the vsock module comes up).
// Returns the child's pid, or -1 when fork failed.
int start_forwarder();
// Serves connections accepted on `listen_fd` (any stream socket: tests use a Unix socket).
// Returns only when accept fails for good.
int serve_forwarder(int listen_fd);

}  // namespace airlock::guest
