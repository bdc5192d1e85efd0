// Running code inside a network namespace without touching the process's own.
//
// Namespaces are per thread for networking: a short-lived thread unshares (or setns's into) a
// network namespace, runs the given function there, and exits. Sockets, taps and netlink
// sockets created by that function stay bound to the namespace and are usable from any thread
// afterwards. The calling thread, and every other thread of the host application, keep the
// namespace they had. No process is spawned.
//
// Threads: any thread may call these; each call blocks until its helper thread has exited.
#pragma once

#include <functional>

#include "airlock/status.hpp"
#include "base/fd.h"

namespace airlock::net {

// Creates a fresh network namespace (needs CAP_SYS_ADMIN), runs `fn` inside it and returns an
// fd that keeps the namespace alive (/proc/thread-self/ns/net of the helper thread). If `fn`
// fails, its status is returned and the namespace is released.
Result<UniqueFd> run_in_new_netns(const std::function<Status()>& fn);

// Runs `fn` inside the network namespace referred to by `netns_fd` (needs CAP_SYS_ADMIN).
Status run_in_netns(int netns_fd, const std::function<Status()>& fn);

// Writes a sysctl under /proc/sys as seen by the calling thread (net.* sysctls are resolved
// against the caller's network namespace). `path` is relative to /proc/sys, e.g.
// "net/ipv4/ip_forward".
Status write_sysctl(const char* path, const char* value);
Result<std::string> read_sysctl(const char* path);

}  // namespace airlock::net
