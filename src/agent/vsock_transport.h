// The agent Transport over a vsock stream of the sandbox's VsockDevice.
// Threads: as VsockStream (one reader and one writer at a time; close from any thread).
#pragma once

#include <memory>

#include "agent/client.h"
#include "devices/vsock.h"

namespace airlock::agent {

std::unique_ptr<Transport> make_vsock_transport(std::unique_ptr<devices::VsockStream> stream);

}  // namespace airlock::agent
