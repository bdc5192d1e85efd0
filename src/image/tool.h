// Runs a host tool (mkfs.ext4, ...) with an argument vector, no shell, and reports its failure
// with the tail of what it printed. Used for image building only, never on a guest's path.
// Thread-safety: reentrant; each call spawns and waits for its own child.
#pragma once

#include <string>
#include <vector>

#include "airlock/status.hpp"

namespace airlock::image {

// Finds `name` on PATH, then in /usr/sbin and /sbin (where e2fsprogs lives, often missing from a
// non-root PATH). Errc::unavailable when absent.
Result<std::string> find_tool(const std::string& name);

// Runs argv (argv[0] resolved with find_tool) and waits. An exit code above max_ok_exit or a
// signal becomes Errc::io with the tool's combined output (bounded) in the message.
Status run_tool(const std::vector<std::string>& argv, int max_ok_exit = 0);

}  // namespace airlock::image
