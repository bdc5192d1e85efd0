// Small helpers shared by the airlock CLI's subcommands. Called from any thread.
#pragma once

#include <string_view>

namespace airlock::cli {

// Parses a whole decimal string into out; false on empty input, junk or overflow.
bool parse_uint(const char* s, unsigned long long& out);
// Writes all of data to fd, retrying short writes and EINTR; gives up silently on error.
void write_all(int fd, std::string_view data);

}  // namespace airlock::cli
