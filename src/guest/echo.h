// Benchmark tool: a vsock echo server inside the guest (the floor exec latency is compared
// with). Accepts connections on PORT one at a time and echoes every byte back.
#pragma once

namespace airlock::guest {

int run_echo_server(const char* port);

}  // namespace airlock::guest
