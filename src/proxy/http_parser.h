// Incremental HTTP/1.1 message parser: llhttp (strict, no lenient flags) behind a PImpl so its
// names never leak. On top of llhttp it refuses bare LF line endings and obsolete line folding in
// the head (request smuggling vectors), and bounds head size, header count and URL length.
//
// feed() consumes bytes and stops at each event the caller must act on (head complete, message
// complete, upgrade, error); body bytes are handed to the body sink as they are decoded.
// Threads: one parser belongs to one connection, used by that connection's worker only.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "airlock/proxy.hpp"

namespace airlock::proxy {

struct HttpHead {
  std::string method;  // requests
  std::string url;     // requests: request target as sent
  int status = 0;      // responses
  std::string reason;  // responses
  int version_major = 1;
  int version_minor = 1;
  HeaderList headers;  // in order, names as sent
  bool chunked = false;
  int64_t content_length = -1;  // -1: absent
  bool keep_alive = true;
  bool upgrade = false;  // Upgrade request/response (or CONNECT)
};

struct HttpLimits {
  size_t max_head_bytes = 64 * 1024;
  size_t max_headers = 128;
  size_t max_url_bytes = 16 * 1024;
};

class HttpParser {
 public:
  enum class Kind { request, response };
  enum class Event {
    need_more,    // every byte consumed, nothing to report
    head,         // a head is complete (head()); call resume() to read its body
    message_end,  // a message (and its body) is complete; call resume() for the next
    upgrade,      // CONNECT or Upgrade: the bytes after `consumed` belong to another protocol
    error,        // malformed input; error_status() says which (status 400 or 431 or 414)
  };
  struct Outcome {
    Event event = Event::need_more;
    size_t consumed = 0;
  };
  using BodySink = std::function<void(std::string_view)>;

  HttpParser(Kind kind, HttpLimits limits);
  ~HttpParser();
  HttpParser(const HttpParser&) = delete;
  HttpParser& operator=(const HttpParser&) = delete;

  void set_body_sink(BodySink sink);
  // Responses: the next response answers a HEAD request (so it has no body).
  void set_response_to_head(bool head);

  Outcome feed(const char* data, size_t len);
  // Tells the parser the stream ended (close-delimited bodies end here).
  Outcome finish();
  void resume();

  const HttpHead& head() const;
  HttpHead& mutable_head();
  // Whether the current message's body is delimited by connection close.
  bool body_until_eof() const;
  int error_status() const;          // HTTP status to answer an error with
  const std::string& error() const;  // short reason, safe to show (no message bytes)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::proxy
