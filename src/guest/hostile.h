// Test tool: a hostile program inside the guest. Root in the guest can steal the agent's
// vsock connection (pidfd_getfd), stop the agent and write whatever it likes to the host; the
// KVM tests use this to check the host survives it. Never run by the agent itself.
#pragma once

namespace airlock::guest {

// MODE: garbage | huge | unknown-op | wrong-direction | flood (ARG: the agent's pid), or
// connect-flood (ARG: how many connection attempts).
int run_hostile(const char* mode, const char* arg);

}  // namespace airlock::guest
