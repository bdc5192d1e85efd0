// Small HTTP/1.1 helpers shared by the connection state machine: header lookup, hop-by-hop
// filtering, status texts and the plain-text refusal answers. Pure functions; any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "airlock/proxy.hpp"

namespace airlock::proxy {

bool iequals(std::string_view a, std::string_view b);
bool istarts_with(std::string_view s, std::string_view prefix);
std::string to_lower(std::string_view s);
std::string_view trim(std::string_view s);

// Number of headers named `name` (case-insensitive) and the first one's value.
size_t count_header(const HeaderList& headers, std::string_view name);
std::optional<std::string> find_header(const HeaderList& headers, std::string_view name);
void remove_header(HeaderList& headers, std::string_view name);
void set_header(HeaderList& headers, std::string_view name, std::string value);

// Lowercased tokens of every Connection header ("close", "upgrade", "x-foo").
std::vector<std::string> connection_tokens(const HeaderList& headers);
// Hop-by-hop headers (RFC 9110 7.6.1) plus the proxy's own (Proxy-Connection,
// Proxy-Authorization), and the framing headers the proxy rewrites itself.
bool is_hop_by_hop(std::string_view name);

const char* status_text(int status);
// A complete response with a short text body; `close` adds Connection: close.
std::string plain_response(int status, std::string_view body, bool close);

// True if `value` contains only characters allowed in a header value (no CR, LF, NUL).
bool valid_header_value(std::string_view value);

}  // namespace airlock::proxy
