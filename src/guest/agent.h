// Guest agent: connects to the host over AF_VSOCK (CID 2, proto::kAgentPort), says Hello, then
// serves the protocol of src/agent/protocol.h until the connection ends: runs commands in their
// own process groups with piped stdin/stdout/stderr, enforces timeouts by killing the group,
// reads and writes files in chunks, keeps the default environment.
//
// One thread, one poll() loop; it never waits for a command's process to start (launch.h) and
// runs on one vCPU beside the vsock interrupt (placement.h). Output toward the host is buffered up
// to a bound; past it the agent stops reading its children's pipes (they block) until the host
// catches up.
#pragma once

namespace airlock::guest {

// Returns the exit status for the agent process (non-zero: the connection failed).
int run_agent();
// Serves an already-connected socket (tests run the agent over a socketpair).
int serve_connection(int fd);

}  // namespace airlock::guest
