// Guest init: what PID 1 does before and after the agent runs. Mounts the filesystems Linux
// userland expects, loads the kernel modules listed in /etc/modules.order (virtio-mmio, vsock,
// ... in dependency order, written by scripts/build-sandbox-image.sh), brings up lo, then starts
// the agent as a child and reaps every zombie. When the agent dies, init reboots the machine:
// with reboot=k the VMM sees the reset and the host learns the sandbox ended.
// Single-threaded; runs only as PID 1.
#pragma once

namespace airlock::guest {

// Never returns.
[[noreturn]] void run_init(const char* self_path);

// Writes "airlock-init: <msg>" to stderr (the console).
void console_log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

}  // namespace airlock::guest
