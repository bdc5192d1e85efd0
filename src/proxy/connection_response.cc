// Connection, part 3: the response side (framing, redaction, interim and upgrade responses),
// end of exchange, EOF handling.
#include "proxy/connection.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "base/secret.h"
#include "proxy/connection_internal.h"
#include "proxy/websocket_redactor.h"

namespace airlock::proxy {

using namespace conn;  // NOLINT: internal constants and helpers of this state machine

bool Connection::process_response_bytes() {
  if (resp_ != RespState::awaiting && resp_ != RespState::body) return false;
  bool progress = false;
  for (int guard = 0; guard < 1024; ++guard) {
    if (upstream_.in.empty() && !kick_response_) break;
    size_t pending = client_.pending_out();
    if (pending >= kHighWater) break;
    size_t room = std::min(upstream_.in.size(), kHighWater - pending);
    kick_response_ = false;
    auto outcome = resp_parser_->feed(upstream_.in.data(), room);
    upstream_.in.erase(0, outcome.consumed);
    if (outcome.consumed > 0) progress = response_started_ = true;
    switch (outcome.event) {
      case HttpParser::Event::need_more:
        if (outcome.consumed == 0) return progress;
        break;
      case HttpParser::Event::head:
        if (!on_response_head()) return true;
        resp_parser_->resume();
        kick_response_ = true;
        progress = true;
        break;
      case HttpParser::Event::message_end:
        if (interim_response_) {
          interim_response_ = false;
          resp_parser_->resume();
          break;
        }
        end_response();
        return true;
      case HttpParser::Event::upgrade:
        if (resp_parser_->head().status == 101 && upgrade_requested_) {
          splice_ = true;
          if (!ctx_.secrets.empty())
            ws_redactor_ = std::make_unique<WebSocketRedactor>(ctx_.secrets);
          record_audit();
          arm(ctx_.options.limits.idle_timeout, true, "idle");
          return true;
        }
        upstream_failed("unexpected protocol switch from upstream", 502);
        return true;
      case HttpParser::Event::error:
        upstream_failed("malformed response from upstream", 502);
        return true;
    }
  }
  return progress;
}

bool Connection::on_response_head() {
  const HttpHead& h = resp_parser_->head();
  const SecretSet& secrets = ctx_.secrets;
  auto redact = [&](const std::string& v) { return secrets.empty() ? v : secrets.redact(v); };
  int status = h.status;
  std::vector<std::string> tokens = connection_tokens(h.headers);
  auto copy_headers = [&](std::string* head, bool keep_length) {
    for (const auto& [name, value] : h.headers) {
      if (iequals(name, "content-length") && keep_length) {
        *head += name + ": " + value + "\r\n";
        continue;
      }
      if (is_hop_by_hop(name)) continue;
      if (std::find(tokens.begin(), tokens.end(), to_lower(name)) != tokens.end()) continue;
      *head += name + ": " + redact(value) + "\r\n";
    }
  };
  std::string reason = h.reason.empty() ? status_text(status) : redact(h.reason);

  if (status >= 100 && status < 200 && status != 101) {
    interim_response_ = true;
    if (!client_http10_) {
      std::string head = fmt::format("HTTP/1.1 {} {}\r\n", status, reason);
      copy_headers(&head, false);
      head += "\r\n";
      client_.out += head;
    }
    return true;
  }
  if (status == 101) {
    if (!upgrade_requested_) {
      upstream_failed("unexpected 101 from upstream", 502);
      return false;
    }
    std::string head = fmt::format("HTTP/1.1 101 {}\r\n", reason);
    copy_headers(&head, false);
    auto upgrade = find_header(h.headers, "upgrade");
    head += "Connection: Upgrade\r\nUpgrade: " + upgrade.value_or("websocket") + "\r\n\r\n";
    client_.out += head;
    event_.status = 101;
    response_head_sent_ = true;
    return true;
  }

  bool no_body = method_ == "HEAD" || status == 204 || status == 304;
  auto encoding = find_header(h.headers, "content-encoding");
  bool identity_encoded = !encoding || iequals(trim(*encoding), "identity");
  bool redacting = !secrets.empty() && identity_encoded && !no_body;
  bool upstream_until_close = !no_body && !h.chunked && h.content_length < 0;
  if (no_body) {
    resp_body_ = BodyMode::none;
  } else if (h.content_length >= 0 && !redacting) {
    resp_body_ = BodyMode::content_length;
  } else {
    resp_body_ = client_http10_ ? BodyMode::until_close : BodyMode::chunked;
  }
  upstream_keep_alive_ = h.keep_alive && !upstream_until_close;
  // HTTP/1.0 clients get one response per connection: no keep-alive negotiation to get wrong.
  if (!client_keep_alive_ || client_http10_ || resp_body_ == BodyMode::until_close ||
      upgrade_requested_ || req_ != ReqState::done)
    close_after_response_ = true;
  if (req_ != ReqState::done && req_body_ != BodyMode::none) close_after_response_ = true;
  if (req_ != ReqState::done && req_body_ == BodyMode::none) close_after_response_ = false;

  std::string head = fmt::format("HTTP/1.1 {} {}\r\n", status, reason);
  copy_headers(&head, no_body || resp_body_ == BodyMode::content_length);
  if (resp_body_ == BodyMode::chunked) head += "Transfer-Encoding: chunked\r\n";
  if (close_after_response_) head += "Connection: close\r\n";
  head += "\r\n";
  client_.out += head;
  event_.bytes_down += head.size();
  event_.status = status;
  response_head_sent_ = true;
  redactor_ = redacting ? std::make_unique<Redactor>(secrets) : nullptr;
  resp_ = RespState::body;
  return true;
}

void Connection::emit_response_body(std::string_view data) {
  if (data.empty()) return;
  if (resp_body_ == BodyMode::chunked) {
    std::string framed = chunk_frame(data);
    event_.bytes_down += framed.size();
    client_.out += framed;
  } else {
    event_.bytes_down += data.size();
    client_.out.append(data);
  }
}

void Connection::on_response_body(std::string_view data) {
  if (redactor_) {
    std::string out;
    redactor_->feed(data, &out);
    emit_response_body(out);
  } else {
    emit_response_body(data);
  }
}

void Connection::end_response() {
  if (redactor_) {
    std::string out;
    redactor_->finish(&out);
    emit_response_body(out);
    redactor_.reset();
  }
  if (resp_body_ == BodyMode::chunked) {
    client_.out += "0\r\n\r\n";
    event_.bytes_down += 5;
  }
  resp_ = RespState::done;
  if (req_ == ReqState::done) {
    request_complete();
  } else if (req_body_ == BodyMode::none) {
    // The request's (empty) body end has not been parsed yet; it follows immediately.
    kick_request_ = true;
  } else {
    // The upstream answered before the request body ended: the stream cannot be resynchronised.
    record_audit();
    finish(true);
  }
}

void Connection::request_complete() {
  record_audit();
  bool reuse_upstream = upstream_keep_alive_ && !upstream_.read_eof && !upstream_.failed;
  if (close_after_response_ || !client_keep_alive_ || client_.read_eof) {
    finish(true);
    return;
  }
  if (!reuse_upstream) release_upstream();
  // Ready for the next request on this connection.
  req_ = ReqState::idle;
  resp_ = RespState::none;
  head_sent_ = false;
  response_head_sent_ = false;
  request_body_forwarded_ = false;
  buffer_request_body_ = false;
  body_scanner_.reset();
  body_substituter_.reset();
  redactor_.reset();
  interim_response_ = false;
  upgrade_requested_ = false;
  first_request_ = false;
  req_parser_->resume();
  arm(ctx_.options.limits.idle_timeout, false, "keepalive");
}

bool Connection::process_eof() {
  bool progress = false;
  // Upstream side.
  if (upstream_.fd.valid() && (upstream_.failed || (upstream_.read_eof && upstream_.in.empty()))) {
    if (resp_ == RespState::body && resp_body_ != BodyMode::none && !upstream_.failed &&
        resp_parser_->body_until_eof()) {
      auto outcome = resp_parser_->finish();
      upstream_keep_alive_ = false;
      if (outcome.event == HttpParser::Event::message_end) {
        end_response();
        return true;
      }
    }
    if (resp_ == RespState::awaiting && !response_started_ && upstream_reused_ && !retried_ &&
        req_ == ReqState::done && req_body_ == BodyMode::none) {
      // A kept-alive connection the server closed just as the request went out: nothing of
      // the request was answered, and it had no body, so send it once more on a new one.
      retried_ = true;
      close_side(upstream_);
      upstream_ready_ = false;
      head_sent_ = false;
      resp_ = RespState::none;
      event_.bytes_up = 0;
      ensure_upstream();
      return true;
    }
    if (resp_ == RespState::awaiting || resp_ == RespState::body) {
      upstream_failed(
          upstream_.failed ? "upstream connection failed" : "upstream closed the connection early",
          502);
      return true;
    }
    close_side(upstream_);
    upstream_ready_ = false;
    progress = true;
  }
  // Client side.
  if (client_.read_eof && client_.in.empty()) {
    if (req_ == ReqState::idle && resp_ == RespState::none) {
      close_now();  // between requests: a normal end
      return true;
    }
    if (req_ == ReqState::body && !kick_request_) {
      event_.decision = AuditEvent::Decision::error;
      event_.reason = "client closed the connection during the request";
      record_audit();
      close_now();
      return true;
    }
    // Half-closed after a complete request: still owed the response, then closed.
    close_after_response_ = true;
  }
  return progress;
}

void Connection::upstream_failed(const std::string& why, int status) {
  if (closed_) return;
  if (response_head_sent_ || splice_) {
    event_.decision = AuditEvent::Decision::error;
    event_.reason = why;
    record_audit();
    finish(true);
    return;
  }
  refuse(status, why);
}

}  // namespace airlock::proxy
