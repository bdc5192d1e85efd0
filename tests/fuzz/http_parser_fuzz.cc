// libFuzzer target: the proxy's HTTP/1.1 parser (llhttp strict + head scanner) on hostile bytes,
// as requests and as responses, fed in pieces the way sockets deliver them. Invariants: never
// consumes more than given, an error is sticky and carries a 4xx/5xx status, heads stay within
// the configured limits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxy/http_parser.h"

using airlock::proxy::HttpLimits;
using airlock::proxy::HttpParser;

namespace {

void check(bool ok) {
  if (!ok) abort();
}

void run(HttpParser::Kind kind, const uint8_t* data, size_t size, size_t step, bool head_response) {
  HttpLimits limits;
  limits.max_head_bytes = 2048;
  limits.max_headers = 16;
  limits.max_url_bytes = 512;
  HttpParser p(kind, limits);
  p.set_response_to_head(head_response);
  size_t body = 0;
  p.set_body_sink([&](std::string_view d) { body += d.size(); });
  const char* in = reinterpret_cast<const char*>(data);
  size_t off = 0;
  for (int guard = 0; guard < 100000 && off <= size; ++guard) {
    size_t len = std::min(step, size - off);
    auto o = p.feed(in + off, len);
    check(o.consumed <= len);
    off += o.consumed;
    switch (o.event) {
      case HttpParser::Event::head:
        check(p.head().headers.size() <= limits.max_headers);
        check(p.head().url.size() <= limits.max_url_bytes);
        p.resume();
        break;
      case HttpParser::Event::message_end:
        p.resume();
        break;
      case HttpParser::Event::upgrade:
        return;
      case HttpParser::Event::error:
        check(p.error_status() >= 400 && p.error_status() <= 599);
        check(p.feed(in, size).event == HttpParser::Event::error);  // sticky
        return;
      case HttpParser::Event::need_more:
        if (off >= size) {
          p.finish();
          return;
        }
        if (o.consumed == 0 && len == size - off) return;
        break;
    }
  }
  check(body <= size);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  size_t step = 1 + data[0] % 64;
  run(HttpParser::Kind::request, data + 1, size - 1, step, false);
  run(HttpParser::Kind::response, data + 1, size - 1, step, (data[0] & 0x80) != 0);
  return 0;
}
