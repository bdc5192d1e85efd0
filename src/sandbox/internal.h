// Access to a sandbox's parts for airlock's own tools and benchmarks (not part of the API).
// Threads: as the returned objects.
#pragma once

#include <memory>

#include "airlock/sandbox.hpp"
#include "devices/vsock.h"

namespace airlock::sandbox {

// The sandbox's vsock device (to reach guest ports directly); nullptr for another Sandbox type.
std::shared_ptr<devices::VsockDevice> vsock_device(Sandbox& sb);

}  // namespace airlock::sandbox
