// Guest storage, run by init (PID 1) before the agent starts: assembles the root filesystem
// from the host's disks and switches into it, then mounts the volumes. The host says what to do
// on the kernel command line (src/image/README.md, "Command line"):
//
//   airlock.root=1              boot from disks: airlock-root is the base image
//   airlock.layers=N            airlock-layer1..N stack on it (a root snapshot)
//   airlock.upper=disk|tmpfs    the writable upper: the airlock-upper disk, or memory
//   airlock.vol=SERIAL,rw|ro,PATH   a volume to mount at PATH (%XX-escaped); repeatable
//
// Without airlock.root the initramfs stays the root, exactly as before. Disks are found by
// their serial in /sys/block/vd*/serial, never by letter. After the switch the agent binary
// (the initramfs' /init) stays reachable at /run/airlock/agent (a bind mount), which is what
// the host runs for `fsfreeze`/`fsthaw` around a root snapshot.
// Single-threaded: init before it forks the agent; the freeze tools run as ordinary commands.
#pragma once

namespace airlock::guest {

// Mount point of the writable upper's filesystem (frozen for a root snapshot).
inline constexpr const char* kUpperMount = "/run/airlock/rw";
// Where the agent binary is visible after the switch.
inline constexpr const char* kAgentPath = "/run/airlock/agent";

// Assembles and enters the root (when the command line asks for one), then mounts the volumes.
// False (after logging why on the console) when something the host asked for failed: init
// then ends the machine rather than run the agent on the wrong filesystem.
bool setup_storage();

// Tools: `airlock-guest-agent fsfreeze PATH` syncs and freezes the filesystem mounted at PATH
// (FIFREEZE); `fsthaw PATH` thaws it. Exit status 0 on success.
int run_fsfreeze(const char* path);
int run_fsthaw(const char* path);

}  // namespace airlock::guest
