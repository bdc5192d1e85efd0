// Port forwarding over vsock (Sandbox::expose_port): the tiny handshake both sides share. Like
// protocol.h it is header-only and uses only the standard library (the guest links nothing else).
//
// The guest agent's forwarder listens on guest vsock port kGuestPort. For each host connection:
//   host -> guest  Request: u32 magic, u16 version, u16 TCP port   (8 bytes, little-endian)
//   guest -> host  Reply:   u32 magic, i32 result                  (0: connected, else errno)
// then raw bytes both ways between the vsock connection and the guest's 127.0.0.1:<port>; a
// shutdown of either side's sending half is passed on, and a close of either closes both.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace airlock::agent::forward {

inline constexpr uint32_t kGuestPort = 1060;    // guest vsock port of the forwarder
inline constexpr uint32_t kMagic = 0x57464c41;  // "ALFW"
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kMessageSize = 8;

inline void put_le(uint8_t* p, uint64_t v, size_t n) {
  for (size_t i = 0; i < n; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint64_t get_le(const uint8_t* p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

inline std::string encode_request(uint16_t tcp_port) {
  uint8_t b[kMessageSize];
  put_le(b, kMagic, 4);
  put_le(b + 4, kVersion, 2);
  put_le(b + 6, tcp_port, 2);
  return std::string(reinterpret_cast<char*>(b), sizeof b);
}

// The requested port, or 0 when the request is malformed (wrong magic/version, port 0).
inline uint16_t decode_request(const uint8_t* b) {
  if (get_le(b, 4) != kMagic || get_le(b + 4, 2) != kVersion) return 0;
  return static_cast<uint16_t>(get_le(b + 6, 2));
}

inline std::string encode_reply(int32_t result) {
  uint8_t b[kMessageSize];
  put_le(b, kMagic, 4);
  put_le(b + 4, static_cast<uint32_t>(result), 4);
  return std::string(reinterpret_cast<char*>(b), sizeof b);
}

// False when the reply is malformed; else sets `result` (0 or an errno).
inline bool decode_reply(const uint8_t* b, int32_t& result) {
  if (get_le(b, 4) != kMagic) return false;
  result = static_cast<int32_t>(static_cast<uint32_t>(get_le(b + 4, 4)));
  return true;
}

}  // namespace airlock::agent::forward
