// WebSocketRedactor: values in server frames become placeholders whatever the fragmentation
// and TCP splitting; control frames pass; compressed or oversized frames are refused.
#include <doctest/doctest.h>

#include <string>

#include "proxy/websocket_redactor.h"

using airlock::SecretSpec;
using airlock::proxy::SecretSet;
using airlock::proxy::WebSocketRedactor;

namespace {

const std::string kValue = "ws-unit-real-value-0123456789";

std::string frame(uint8_t first, const std::string& payload) {
  std::string out(1, static_cast<char>(first));
  if (payload.size() < 126) {
    out.push_back(static_cast<char>(payload.size()));
  } else {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(payload.size() >> 8));
    out.push_back(static_cast<char>(payload.size() & 0xff));
  }
  return out + payload;
}

// Decodes unmasked frames back into (opcode, payload) text for comparison.
std::string payloads(const std::string& bytes) {
  std::string out;
  size_t pos = 0;
  while (pos + 2 <= bytes.size()) {
    size_t len = static_cast<uint8_t>(bytes[pos + 1]) & 0x7f, hdr = 2;
    if (len == 126) {
      len = (static_cast<uint8_t>(bytes[pos + 2]) << 8) | static_cast<uint8_t>(bytes[pos + 3]);
      hdr = 4;
    }
    out += bytes.substr(pos + hdr, len) + "|";
    pos += hdr + len;
  }
  return out;
}

}  // namespace

TEST_CASE("websocket_redactor: values are redacted across fragments and TCP splits") {
  auto secrets = SecretSet::create({SecretSpec{"K", kValue, {"a.test"}}});
  REQUIRE(secrets.ok());
  std::string ph = secrets->placeholder("K");
  std::string half1 = "token=" + kValue.substr(0, 10);
  std::string half2 = kValue.substr(10) + " end";
  std::string stream = frame(0x01, half1) + frame(0x89, "ping") + frame(0x80, half2) +
                       frame(0x81, "plain " + kValue);
  for (size_t step : {size_t{1}, size_t{3}, size_t{7}, stream.size()}) {
    WebSocketRedactor r(*secrets);
    std::string out;
    for (size_t i = 0; i < stream.size(); i += step)
      REQUIRE(r.feed(std::string_view(stream).substr(i, step), &out));
    std::string text = payloads(out);
    INFO(step);
    CHECK(text.find(kValue) == std::string::npos);
    CHECK(text.find("ping|") != std::string::npos);
    // The whole first message, fragments joined, reads "token=<placeholder> end".
    std::string joined = text;
    joined.erase(joined.find("ping|"), 5);  // the interleaved control frame
    std::erase(joined, '|');
    CHECK(joined.find("token=" + ph) != std::string::npos);
    CHECK(joined.find("plain " + ph) != std::string::npos);
  }
}

TEST_CASE("websocket_redactor: compressed and oversized frames are refused") {
  auto secrets = SecretSet::create({SecretSpec{"K", kValue, {"a.test"}}});
  REQUIRE(secrets.ok());
  WebSocketRedactor compressed(*secrets);
  std::string out;
  CHECK_FALSE(compressed.feed(frame(0xC1, "xx"), &out));  // RSV1: permessage-deflate
  WebSocketRedactor big(*secrets);
  std::string header = {static_cast<char>(0x82), static_cast<char>(127), 0, 0, 0, 0, 0x10, 0, 0, 0};
  CHECK_FALSE(big.feed(header, &out));  // 256 MiB announced
}
