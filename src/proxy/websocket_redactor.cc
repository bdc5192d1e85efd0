#include "proxy/websocket_redactor.h"

namespace airlock::proxy {

void WebSocketRedactor::put_header(uint8_t first, size_t length, std::string* out) {
  out->push_back(static_cast<char>(first));
  if (length < 126) {
    out->push_back(static_cast<char>(length));
  } else if (length <= 0xffff) {
    out->push_back(static_cast<char>(126));
    out->push_back(static_cast<char>(length >> 8));
    out->push_back(static_cast<char>(length & 0xff));
  } else {
    out->push_back(static_cast<char>(127));
    for (int shift = 56; shift >= 0; shift -= 8)
      out->push_back(static_cast<char>((static_cast<uint64_t>(length) >> shift) & 0xff));
  }
}

bool WebSocketRedactor::feed(std::string_view bytes, std::string* out) {
  pending_.append(bytes);
  return drain(out);
}

bool WebSocketRedactor::drain(std::string* out) {
  size_t pos = 0;
  for (;;) {
    std::string_view in(pending_);
    in.remove_prefix(pos);
    if (in.size() < 2) break;
    auto byte = [&](size_t i) { return static_cast<uint8_t>(in[i]); };
    uint8_t first = byte(0);
    bool masked = (byte(1) & 0x80) != 0;
    uint64_t length = byte(1) & 0x7f;
    size_t header = 2;
    if (length == 126) {
      if (in.size() < 4) break;
      length = (uint64_t{byte(2)} << 8) | byte(3);
      header = 4;
    } else if (length == 127) {
      if (in.size() < 10) break;
      length = 0;
      for (size_t i = 2; i < 10; ++i) length = (length << 8) | byte(i);
      header = 10;
    }
    if (length > kMaxFrame) return false;
    if (first & 0x70) return false;  // RSV bits: an extension (compression) we cannot read
    size_t mask_at = header;
    if (masked) header += 4;
    if (in.size() < header + length) break;
    std::string payload(in.substr(header, length));
    if (masked) {
      for (size_t i = 0; i < payload.size(); ++i) payload[i] ^= in[mask_at + i % 4];
    }
    uint8_t opcode = first & 0x0f;
    bool fin = (first & 0x80) != 0;
    if (opcode >= 8) {
      put_header(first, payload.size(), out);  // control frame: unchanged (never fragmented)
      out->append(payload);
    } else {
      std::string redacted;
      redactor_.feed(payload, &redacted);
      if (fin) redactor_.finish(&redacted);
      put_header(first, redacted.size(), out);
      out->append(redacted);
    }
    pos += header + length;
  }
  pending_.erase(0, pos);
  return pending_.size() <= kMaxFrame + 14;
}

}  // namespace airlock::proxy
