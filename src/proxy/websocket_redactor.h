// Redaction of real secret values in the server-to-client half of a WebSocket connection.
// After an upgrade the proxy splices bytes, but an upstream bound to a secret could still echo
// the value inside a message; this re-frames every data frame with its payload redacted
// (values may span fragments: the Redactor's state carries across them and is flushed at the
// final fragment). Control frames pass unchanged. Compressed frames (RSV bits) cannot be
// redacted: the proxy strips Sec-WebSocket-Extensions from the upgrade request, and a frame
// with RSV bits set is a protocol error here. Frames are bounded (kMaxFrame).
// Threads: one per connection, used by its worker only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "proxy/secrets.h"

namespace airlock::proxy {

class WebSocketRedactor {
 public:
  static constexpr size_t kMaxFrame = 1 << 20;

  explicit WebSocketRedactor(const SecretSet& secrets) : redactor_(secrets) {}

  // Appends server bytes. Returns false on a malformed, compressed or oversized frame.
  bool feed(std::string_view bytes, std::string* out);
  size_t buffered() const { return pending_.size(); }

 private:
  bool drain(std::string* out);
  static void put_header(uint8_t first, size_t length, std::string* out);

  Redactor redactor_;
  std::string pending_;  // bytes of an incomplete frame
};

}  // namespace airlock::proxy
