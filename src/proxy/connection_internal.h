// Shared by the connection_*.cc files only: buffer bounds and small HTTP helpers of the
// per-connection state machine. Not an interface; pure functions and constants.
#pragma once

#include <fmt/format.h>

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>

#include "proxy/http_util.h"
#include "proxy/policy.h"

namespace airlock::proxy::conn {

inline constexpr size_t kReadChunk = 16 * 1024;
inline constexpr size_t kMaxInput = 64 * 1024;  // unconsumed input per side
inline constexpr size_t kHighWater =
    256 * 1024;  // output above this: the other side is not consumed
inline constexpr size_t kTlsFillChunk = 16 * 1024 + 512;  // one full record and its framing
inline constexpr size_t kScanBufferLimit =
    1024 * 1024;  // small bodies are scanned before forwarding
inline constexpr std::chrono::milliseconds kLinger{2000};

inline std::string chunk_frame(std::string_view data) {
  return fmt::format("{:x}\r\n", data.size()).append(data).append("\r\n");
}

inline uint16_t default_port(bool tls) {
  return tls ? 443 : 80;
}

// "host[:port]" for a Host header, brackets around IPv6, port omitted when it is the default.
inline std::string host_header_for(const Target& t, bool tls) {
  std::string host = t.ip && t.ip->family == IpAddress::v6 ? "[" + t.host + "]" : t.host;
  if (t.port != default_port(tls)) host += ":" + std::to_string(t.port);
  return host;
}

inline bool same_target(const Target& a, const Target& b) {
  return a.host == b.host && a.port == b.port;
}

// Splits an absolute-form URL "scheme://authority/path?q" into authority and origin-form.
inline bool split_absolute(std::string_view url, std::string_view scheme, std::string* authority,
                           std::string* path) {
  std::string prefix = std::string(scheme) + "://";
  if (!istarts_with(url, prefix)) return false;
  url.remove_prefix(prefix.size());
  size_t end = url.find_first_of("/?#");
  *authority = std::string(url.substr(0, end));
  if (end == std::string_view::npos) {
    *path = "/";
  } else if (url[end] == '/') {
    *path = std::string(url.substr(end));
  } else if (url[end] == '?') {
    *path = "/" + std::string(url.substr(end));
  } else {
    *path = "/";
  }
  size_t hash = path->find('#');
  if (hash != std::string::npos) path->resize(hash);
  return true;
}

}  // namespace airlock::proxy::conn
