// Where the agent runs in the guest. In an emulated (nested) guest a wake-up that crosses
// vCPUs costs an IPI and the other vCPU's exit from halt, each far dearer than on hardware, and
// one short command is a chain of them: the vsock interrupt, the kworker that receives the
// packet, the agent, the command's process, its exit, the agent again, the kworker that sends.
// So the agent runs on the vCPU the vsock interrupt is delivered to (the kernel's choice, left
// as it is), and the chain never hops.
// Commands are not confined: each gets the agent's original CPU set back before execve (the
// scheduler then places it, and what it sets itself later is its own business).
//
// The agent also runs SCHED_BATCH: its wake-ups (a child's pipe closing at exit, then the
// child's SIGCHLD) do not preempt the exiting child, so the agent runs once per exit instead
// of once per event. Commands get SCHED_OTHER back (launch.h).
//
// Called once by the agent's thread at start, in the guest only (host tests run the agent as an
// ordinary process and leave it where it is).
#pragma once

#include <sched.h>

#include <cstddef>

namespace airlock::guest {

struct CpuPlacement {
  bool pinned = false;  // the agent runs on one CPU: commands get `all` back
  bool batch = false;   // the agent runs SCHED_BATCH: commands get SCHED_OTHER back
  cpu_set_t all{};      // the agent's CPUs before pinning
  int cpu = -1;         // the agent's CPU when pinned
  int vsock_irq = -1;   // the vsock interrupt moved to `cpu`, if found
};

// Best effort: whatever fails leaves that part as it was.
CpuPlacement place_agent();

}  // namespace airlock::guest
