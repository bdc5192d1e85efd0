// HttpParser: strict llhttp plus the head scanner. Every smuggling form must be an error, split
// input must parse the same as whole input, limits give the right status.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "proxy/http_parser.h"

using airlock::proxy::HttpHead;
using airlock::proxy::HttpLimits;
using airlock::proxy::HttpParser;
using Event = HttpParser::Event;

namespace {

struct Parsed {
  std::vector<HttpHead> heads;
  std::vector<std::string> bodies;
  int error_status = 0;
  bool upgraded = false;
};

// Feeds `input` in pieces of `step` bytes, resuming after every event like the proxy does.
Parsed parse(HttpParser::Kind kind, const std::string& input, size_t step = 1 << 20,
             HttpLimits limits = {}) {
  HttpParser p(kind, limits);
  Parsed out;
  std::string body;
  p.set_body_sink([&](std::string_view d) { body.append(d); });
  size_t off = 0;
  size_t end = 0;
  while (off <= input.size()) {
    end = std::min(input.size(), std::max(end, off + step));
    auto o = p.feed(input.data() + off, end - off);
    off += o.consumed;
    switch (o.event) {
      case Event::head:
        out.heads.push_back(p.head());
        p.resume();
        break;
      case Event::message_end:
        out.bodies.push_back(body);
        body.clear();
        p.resume();
        break;
      case Event::upgrade:
        out.bodies.push_back(body);
        out.upgraded = true;
        return out;
      case Event::error:
        out.error_status = p.error_status();
        return out;
      case Event::need_more:
        if (end == input.size()) return out;
        break;
    }
  }
  return out;
}

}  // namespace

TEST_CASE("http_parser: a request with headers and a Content-Length body") {
  auto r =
      parse(HttpParser::Kind::request,
            "POST /a?b=c HTTP/1.1\r\nHost: x.test\r\nContent-Length: 5\r\nX-A: 1\r\n\r\nhello");
  REQUIRE(r.heads.size() == 1);
  CHECK(r.heads[0].method == "POST");
  CHECK(r.heads[0].url == "/a?b=c");
  CHECK(r.heads[0].content_length == 5);
  CHECK(r.heads[0].headers.size() == 3);
  CHECK(r.heads[0].headers[2].first == "X-A");
  REQUIRE(r.bodies.size() == 1);
  CHECK(r.bodies[0] == "hello");
}

TEST_CASE("http_parser: byte-by-byte input parses like whole input (pipelined, chunked)") {
  std::string in =
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: "
      "chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
      "GET /2 HTTP/1.1\r\nHost: a\r\n\r\n";
  auto whole = parse(HttpParser::Kind::request, in);
  auto split = parse(HttpParser::Kind::request, in, 1);
  REQUIRE(whole.heads.size() == 2);
  REQUIRE(split.heads.size() == 2);
  CHECK(whole.heads[0].chunked);
  CHECK(whole.bodies == std::vector<std::string>{"abcde", ""});
  CHECK(split.bodies == whole.bodies);
  CHECK(split.heads[1].url == "/2");
}

TEST_CASE("http_parser: smuggling forms are errors with status 400") {
  const char* cases[] = {
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: "
      "3\r\n\r\n0\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n folded\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tfolded\r\n\r\n",
      "GET / HTTP/1.1\nHost: a\n\n",
      "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",
      "GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
      "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
      "GET / HTTP/1.1\r\nHo\x01st: a\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 2\r\n\r\n",
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
  };
  for (const char* c : cases) {
    INFO(std::string(c));
    for (size_t step : {size_t{1}, size_t{7}, size_t{1 << 20}}) {
      auto r = parse(HttpParser::Kind::request, c, step);
      CHECK(r.error_status == 400);
    }
  }
}

TEST_CASE("http_parser: limits give 431 and 414") {
  HttpLimits limits;
  limits.max_head_bytes = 200;
  limits.max_headers = 3;
  limits.max_url_bytes = 50;
  auto big = parse(HttpParser::Kind::request,
                   "GET / HTTP/1.1\r\nX: " + std::string(300, 'a') + "\r\n\r\n", 1 << 20, limits);
  CHECK(big.error_status == 431);
  auto many = parse(HttpParser::Kind::request,
                    "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", 1 << 20, limits);
  CHECK(many.error_status == 431);
  auto url = parse(HttpParser::Kind::request,
                   "GET /" + std::string(60, 'u') + " HTTP/1.1\r\nHost: a\r\n\r\n", 3, limits);
  CHECK(url.error_status == 414);
}

TEST_CASE("http_parser: CONNECT and Upgrade report upgrade after the head") {
  auto c =
      parse(HttpParser::Kind::request, "CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n");
  REQUIRE(c.heads.size() == 1);
  CHECK(c.heads[0].url == "a.test:443");
  CHECK(c.upgraded);
  auto ws =
      parse(HttpParser::Kind::request,
            "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  REQUIRE(ws.heads.size() == 1);
  CHECK(ws.heads[0].upgrade);
  CHECK(ws.upgraded);
}

TEST_CASE("http_parser: responses: HEAD, 204, 304, interim, close-delimited") {
  {
    HttpParser p(HttpParser::Kind::response, {});
    p.set_response_to_head(true);
    std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n";
    auto o = p.feed(in.data(), in.size());
    CHECK(o.event == Event::head);
    CHECK(p.head().content_length == 1234);
    p.resume();
    o = p.feed(in.data() + o.consumed, in.size() - o.consumed);
    CHECK(o.event == Event::message_end);  // no body despite Content-Length
  }
  auto no_content = parse(HttpParser::Kind::response,
                          "HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 304 Not Modified\r\n\r\n");
  CHECK(no_content.heads.size() == 2);
  CHECK(no_content.bodies == std::vector<std::string>{"", ""});
  auto interim =
      parse(HttpParser::Kind::response,
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  REQUIRE(interim.heads.size() == 2);
  CHECK(interim.heads[0].status == 100);
  CHECK(interim.bodies.back() == "ok");
  {
    HttpParser p(HttpParser::Kind::response, {});
    std::string body;
    p.set_body_sink([&](std::string_view d) { body.append(d); });
    std::string in = "HTTP/1.1 200 OK\r\n\r\nuntil close";
    auto o = p.feed(in.data(), in.size());
    REQUIRE(o.event == Event::head);
    p.resume();
    o = p.feed(in.data() + o.consumed, in.size() - o.consumed);
    CHECK(p.body_until_eof());
    CHECK(p.finish().event == Event::message_end);
    CHECK(body == "until close");
  }
}
