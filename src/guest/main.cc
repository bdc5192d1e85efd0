// airlock-guest-agent: PID 1 of the sandbox (init, which starts the agent as its child), or a
// tool when run by hand inside the guest:
//   airlock-guest-agent                 as PID 1: init + agent
//   airlock-guest-agent agent           the agent alone (connects to the host over vsock)
//   airlock-guest-agent serve-fd FD     the agent on an inherited connected socket (host tests)
//   airlock-guest-agent forward-fd FD   the port forwarder on an inherited listening socket
//                                        (host tests)
//   airlock-guest-agent echo-server PORT  benchmark tool: vsock echo server
//   airlock-guest-agent spawn-floor N PROGRAM [raw]  benchmark tool: N spawns of PROGRAM, timed
//   airlock-guest-agent fsfreeze|fsthaw PATH  sync and freeze / thaw a filesystem (root snapshots)
//   airlock-guest-agent hostile MODE PID  test tool: takes over the agent's connection and
//                                        misbehaves (see hostile.cc)
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "guest/agent.h"
#include "guest/echo.h"
#include "guest/forward.h"
#include "guest/hostile.h"
#include "guest/init.h"
#include "guest/root.h"
#include "guest/spawn_floor.h"

int main(int argc, char** argv) {
  if (getpid() == 1) airlock::guest::run_init(argv[0]);
  if (argc >= 2 && std::strcmp(argv[1], "agent") == 0) return airlock::guest::run_agent();
  if (argc >= 3 && std::strcmp(argv[1], "serve-fd") == 0)
    return airlock::guest::serve_connection(std::atoi(argv[2]));
  if (argc >= 3 && std::strcmp(argv[1], "forward-fd") == 0)
    return airlock::guest::serve_forwarder(std::atoi(argv[2]));
  if (argc >= 3 && std::strcmp(argv[1], "echo-server") == 0)
    return airlock::guest::run_echo_server(argv[2]);
  if (argc >= 4 && std::strcmp(argv[1], "spawn-floor") == 0)
    return airlock::guest::run_spawn_floor(argv[2], argv[3],
                                           argc >= 5 && std::strcmp(argv[4], "raw") == 0);
  if (argc >= 3 && std::strcmp(argv[1], "fsfreeze") == 0)
    return airlock::guest::run_fsfreeze(argv[2]);
  if (argc >= 3 && std::strcmp(argv[1], "fsthaw") == 0) return airlock::guest::run_fsthaw(argv[2]);
  if (argc >= 4 && std::strcmp(argv[1], "hostile") == 0)
    return airlock::guest::run_hostile(argv[2], argv[3]);
  std::fprintf(stderr, "usage: %s [agent | serve-fd FD | hostile MODE AGENT_PID]\n", argv[0]);
  return 2;
}
