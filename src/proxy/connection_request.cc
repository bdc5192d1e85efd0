// Connection, part 2: the request side (identity, policy, hook, secrets, upstream choice,
// request bodies) and the dispatch of parsed bytes.
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

// ---------------------------------------------------------------------------------------------
// Protocol

bool Connection::process() {
  if (client_.failed) {
    if (req_ != ReqState::idle || resp_ != RespState::none) {
      event_.decision = AuditEvent::Decision::error;
      if (event_.reason.empty()) event_.reason = "client connection failed";
      record_audit();
    }
    close_now();
    return false;
  }
  if (closing_) return false;
  if (splice_) return process_splice();
  if (client_.handshaking || start_tls_after_flush_) return false;
  bool progress = process_request_bytes();
  if (closed_ || closing_) return progress;
  progress |= process_response_bytes();
  if (closed_ || closing_) return progress;
  progress |= process_eof();
  return progress;
}

bool Connection::process_splice() {
  bool progress = false;
  if (!client_.in.empty() && upstream_.pending_out() < kHighWater) {
    upstream_.out.append(client_.in);
    event_.bytes_up += client_.in.size();
    client_.in.clear();
    progress = true;
  }
  if (!upstream_.in.empty() && client_.pending_out() < kHighWater) {
    if (ws_redactor_) {
      std::string redacted;
      if (!ws_redactor_->feed(upstream_.in, &redacted)) {
        // Compressed, malformed or oversized frames cannot be checked for secret values.
        AIRLOCK_LOG_WARN("proxy", "connection {}: WebSocket frame refused", id_);
        close_now();
        return true;
      }
      event_.bytes_down += redacted.size();
      client_.out += redacted;
    } else {
      client_.out.append(upstream_.in);
      event_.bytes_down += upstream_.in.size();
    }
    upstream_.in.clear();
    progress = true;
  }
  bool client_done = client_.failed || (client_.read_eof && client_.in.empty());
  bool upstream_done =
      upstream_.failed || !upstream_.fd.valid() || (upstream_.read_eof && upstream_.in.empty());
  if (client_done || upstream_done) {
    record_audit();
    if (upstream_done && !client_.failed) {
      finish(true);
    } else {
      close_now();
    }
    return true;
  }
  return progress;
}

bool Connection::process_request_bytes() {
  bool progress = false;
  for (int guard = 0; guard < 1024; ++guard) {
    bool feed_ok = (req_ == ReqState::idle && !client_.in.empty()) ||
                   (req_ == ReqState::body && (!client_.in.empty() || kick_request_));
    if (!feed_ok) break;
    size_t room = client_.in.size();
    if (req_ == ReqState::body && !buffer_request_body_) {
      size_t pending = upstream_.pending_out();
      if (pending >= kHighWater) break;
      room = std::min(room, kHighWater - pending);
    }
    if (req_ == ReqState::idle && phase_is("keepalive")) {
      arm(ctx_.options.limits.header_timeout, false, "headers");
    }
    kick_request_ = false;
    if (req_ == ReqState::idle) request_bytes_seen_ = true;
    auto outcome = req_parser_->feed(client_.in.data(), room);
    client_.in.erase(0, outcome.consumed);
    if (outcome.consumed > 0) progress = true;
    if (pending_refusal_) {
      apply_pending_refusal();
      return true;
    }
    switch (outcome.event) {
      case HttpParser::Event::need_more:
        if (outcome.consumed == 0) return progress;
        break;
      case HttpParser::Event::head:
        on_request_head();
        return true;
      case HttpParser::Event::message_end:
        end_request_body();
        return true;
      case HttpParser::Event::upgrade:
        end_request_body();
        return true;
      case HttpParser::Event::error:
        begin_event_if_needed();
        refuse(req_parser_->error_status(), req_parser_->error());
        return true;
    }
  }
  return progress;
}

void Connection::begin_event(const std::string& method, const std::string& scheme) {
  event_ = AuditEvent{};
  event_recorded_ = false;
  event_.time = std::chrono::system_clock::now();
  event_.connection_id = id_;
  event_.client = peer_;
  event_.method = method;
  event_.scheme = scheme;
  if (identity_) {
    event_.host = identity_->host;
    event_.port = identity_->port;
  }
  request_start_ = Clock::now();
}

void Connection::begin_event_if_needed() {
  if (req_ == ReqState::idle)
    begin_event(req_parser_->head().method, tls_client_ ? "https" : "http");
}

void Connection::on_request_head() {
  HttpHead& h = req_parser_->mutable_head();
  begin_event(h.method, tls_client_ ? "https" : "http");
  req_ = ReqState::deciding;
  retried_ = response_started_ = false;
  method_ = h.method;
  client_keep_alive_ = h.keep_alive;
  client_http10_ = h.version_major == 1 && h.version_minor == 0;
  event_.path = h.url;
  arm(ctx_.options.limits.idle_timeout, true, "deciding");

  if (method_ == "CONNECT") {
    event_.scheme = "https";
    if (mode_ != ListenMode::explicit_proxy || tunneled_)
      return refuse(405, "CONNECT is only accepted by the explicit proxy");
    auto target = parse_authority(h.url, 443);
    event_.path.clear();
    if (!target.ok()) {
      event_.host = h.url.substr(0, 256);
      return refuse(400, "invalid CONNECT authority");
    }
    event_.host = target->host;
    event_.port = target->port;
    if (target->non_canonical_ip) return refuse(403, "non-canonical IP literal refused");
    if (!ctx_.policy.allows(*target)) return refuse(403, "host not allowed by allow_net");
    identity_ = *target;
    tunneled_ = true;
    tls_client_ = true;
    client_.out += "HTTP/1.1 200 Connection Established\r\n\r\n";
    start_tls_after_flush_ = true;
    req_parser_ = std::make_unique<HttpParser>(HttpParser::Kind::request, http_limits());
    req_parser_->set_body_sink([this](std::string_view d) { on_request_body(d); });
    req_ = ReqState::idle;
    arm(ctx_.options.limits.tls_handshake_timeout, false, "tls");
    return;
  }

  // The request target and the connection identity.
  std::string path;
  if (mode_ == ListenMode::explicit_proxy && !tunneled_) {
    std::string authority;
    if (!split_absolute(h.url, "http", &authority, &path)) {
      return refuse(400, istarts_with(h.url, "https://")
                             ? "https URLs must be requested with CONNECT"
                             : "an explicit proxy needs an absolute http:// URL or CONNECT");
    }
    if (authority.find('@') != std::string::npos)
      return refuse(400, "credentials in the request URL are refused");
    auto target = parse_authority(authority, 80);
    if (!target.ok()) return refuse(400, "invalid host in the request URL");
    identity_ = *target;  // explicit plain HTTP: one identity per request
  } else {
    if (mode_ == ListenMode::transparent_http && !identity_) {
      if (count_header(h.headers, "host") != 1)
        return refuse(400, "exactly one Host header required");
      auto target = parse_authority(*find_header(h.headers, "host"), transparent_port_);
      if (!target.ok()) return refuse(400, "invalid Host header");
      identity_ = *target;
    }
    if (!identity_) return refuse(400, "no connection identity");
    if (!h.url.empty() && h.url[0] == '/') {
      path = h.url;
    } else if (h.url == "*" && method_ == "OPTIONS") {
      path = "*";
    } else {
      std::string authority;
      if (!split_absolute(h.url, tls_client_ ? "https" : "http", &authority, &path))
        return refuse(400, "invalid request target");
      auto target = parse_authority(authority, identity_->port);
      if (!target.ok() || !same_target(*target, *identity_))
        return refuse(400, "absolute URL does not match the connection's host");
    }
  }
  event_.host = identity_->host;
  event_.port = identity_->port;
  event_.path = path;

  size_t hosts = count_header(h.headers, "host");
  if (hosts > 1) return refuse(400, "more than one Host header");
  if (hosts == 1) {
    auto host_target = parse_authority(*find_header(h.headers, "host"), identity_->port);
    if (!host_target.ok() || !same_target(*host_target, *identity_))
      return refuse(400, "Host header does not match the connection's host");
  } else if (!client_http10_) {
    return refuse(400, "missing Host header");
  }

  if (identity_->non_canonical_ip) return refuse(403, "non-canonical IP literal refused");
  if (!ctx_.policy.allows(*identity_)) return refuse(403, "host not allowed by allow_net");

  target_ = path;
  req_headers_ = h.headers;
  req_body_ = h.chunked ? BodyMode::chunked
                        : (h.content_length > 0 ? BodyMode::content_length : BodyMode::none);
  req_content_length_ = h.content_length;
  upgrade_requested_ = h.upgrade;
  if (upgrade_requested_ && !ctx_.secrets.empty()) {
    auto protocol = find_header(h.headers, "upgrade");
    if (!protocol || !iequals(trim(*protocol), "websocket"))
      return refuse(403, "only WebSocket upgrades can be checked for secret values");
  }

  if (ctx_.options.hook) {
    HookRequest hr;
    hr.method = method_;
    hr.scheme = event_.scheme;
    hr.host = identity_->host;
    hr.port = identity_->port;
    hr.target = target_;
    hr.headers = req_headers_;
    uint64_t seq = ++async_seq_;
    Worker* worker = worker_;
    uint64_t id = id_;
    ProxyContext* ctx = &ctx_;
    auto deadline = ctx_.options.hook_deadline;
    bool queued = ctx_.pool->submit([worker, id, seq, ctx, deadline, hr = std::move(hr)] {
      auto t0 = Clock::now();
      std::optional<HookDecision> decision;
      std::string error;
      try {
        decision = ctx->options.hook(hr);
      } catch (...) {
        error = "the request hook threw";
      }
      if (decision && Clock::now() - t0 > deadline) {
        decision.reset();
        error = "the request hook missed its deadline";
      }
      worker->loop().post([worker, id, seq, decision = std::move(decision), error] {
        if (Connection* c = worker->find(id)) c->on_hook_result(seq, decision, error);
      });
    });
    if (!queued) return refuse(503, "proxy is stopping");
    arm(deadline, false, "hook");
    return;
  }
  continue_after_hook();
}

void Connection::on_hook_result(uint64_t seq, const std::optional<HookDecision>& decision,
                                const std::string& error) {
  if (closed_ || seq != async_seq_ || req_ != ReqState::deciding) return;
  if (!decision) {
    refuse(403, error);
    pump();
    return;
  }
  if (decision->action == HookDecision::Action::deny) {
    int status = decision->status >= 400 && decision->status <= 599 ? decision->status : 403;
    std::string message =
        decision->message.empty() ? "denied by the request hook" : decision->message;
    refuse(status, "request hook: " + message);
    pump();
    return;
  }
  for (const auto& name : decision->remove_headers) remove_header(req_headers_, name);
  for (const auto& [name, value] : decision->set_headers) {
    if (!valid_header_value(value) || name.empty() || is_hop_by_hop(name) || iequals(name, "host"))
      continue;
    set_header(req_headers_, name, value);
  }
  continue_after_hook();
  pump();
}

void Connection::continue_after_hook() {
  const SecretSet& secrets = ctx_.secrets;
  force_identity_encoding_ = false;  // per request: explicit plain HTTP changes host per request
  std::vector<std::string> used;
  auto note = [&used](const std::vector<std::string>& names) {
    for (const auto& n : names)
      if (std::find(used.begin(), used.end(), n) == used.end()) used.push_back(n);
  };
  if (!secrets.empty()) {
    std::vector<std::string> refused;
    auto s = secrets.substitute(target_, *identity_, SubstitutionContext::request_target);
    refused.insert(refused.end(), s.refused.begin(), s.refused.end());
    std::string new_target = s.text;
    note(s.substituted);
    HeaderList new_headers;
    for (const auto& [name, value] : req_headers_) {
      auto hs = secrets.substitute(value, *identity_, SubstitutionContext::header_value);
      refused.insert(refused.end(), hs.refused.begin(), hs.refused.end());
      note(hs.substituted);
      new_headers.emplace_back(name, std::move(hs.text));
    }
    if (!refused.empty()) {
      std::sort(refused.begin(), refused.end());
      refused.erase(std::unique(refused.begin(), refused.end()), refused.end());
      std::string names;
      for (const auto& n : refused) names += (names.empty() ? "" : ", ") + n;
      return refuse(403, "placeholder of secret " + names + " sent to a host it is not bound to",
                    true);
    }
    target_ = std::move(new_target);
    req_headers_ = std::move(new_headers);
    for (const auto& name : secrets.names()) {
      if (secrets.bound_to(name, *identity_)) force_identity_encoding_ = true;
    }
  }
  event_.secrets_substituted = used;

  // Body checks: placeholders in the body are scanned (and substituted when enabled).
  buffer_request_body_ = false;
  body_scanner_.reset();
  body_substituter_.reset();
  buffered_body_.clear();
  if (!secrets.empty() && req_body_ != BodyMode::none) {
    uint64_t limit =
        ctx_.options.substitute_in_body
            ? ctx_.options.limits.max_body_substitution_bytes
            : std::min<uint64_t>(kScanBufferLimit, ctx_.options.limits.max_body_substitution_bytes);
    if (ctx_.options.substitute_in_body) {
      body_substituter_ = std::make_unique<BodySubstituter>(secrets, *identity_);
    } else {
      body_scanner_ = std::make_unique<PlaceholderScanner>(secrets, *identity_);
    }
    if (req_body_ == BodyMode::content_length) {
      if (static_cast<uint64_t>(req_content_length_) <= limit) {
        buffer_request_body_ = true;
        body_limit_ = limit;
      } else if (ctx_.options.substitute_in_body) {
        return refuse(413, "request body too large for secret substitution");
      }
    }
  }
  if (buffer_request_body_) {
    auto expect = find_header(req_headers_, "expect");
    if (expect && iequals(trim(*expect), "100-continue")) {
      // The body is needed before anything goes upstream, so answer the client ourselves.
      remove_header(req_headers_, "expect");
      client_.out += "HTTP/1.1 100 Continue\r\n\r\n";
    }
    req_ = ReqState::body;
    req_parser_->resume();
    kick_request_ = true;
  } else {
    req_ = ReqState::connecting;
  }
  ensure_upstream();
}

void Connection::ensure_upstream() {
  std::string key = std::string(tls_client_ ? "https://" : "http://") + identity_->authority();
  if (upstream_.fd.valid() && upstream_key_ == key && upstream_ready_ && upstream_keep_alive_ &&
      !upstream_.read_eof && !upstream_.failed) {
    upstream_reused_ = true;
    maybe_send_request();
    return;
  }
  release_upstream();
  upstream_keep_alive_ = true;
  upstream_key_ = key;
  UniqueFd pooled_fd;
  bssl::UniquePtr<SSL> pooled_ssl;
  if (worker_->upstream_pool().take(key, &pooled_fd, &pooled_ssl)) {
    // A verified, idle connection to the same scheme://host:port: no resolve, connect or
    // handshake.
    upstream_.fd = std::move(pooled_fd);
    upstream_.ssl = std::move(pooled_ssl);
    upstream_reused_ = true;
    on_upstream_ready();
    return;
  }
  upstream_reused_ = false;
  uint64_t seq = ++async_seq_;
  arm(ctx_.options.limits.connect_timeout, false, "connect");
  if (identity_->ip) {
    // An IP literal needs no DNS: check it here rather than hop through the pool.
    on_resolved(seq, ctx_.resolver.resolve_checked(identity_->host, identity_->port, ctx_.policy));
    return;
  }
  Worker* worker = worker_;
  uint64_t id = id_;
  ProxyContext* ctx = &ctx_;
  Target target = *identity_;
  bool queued = ctx_.pool->submit([worker, id, seq, ctx, target] {
    auto resolved = ctx->resolver.resolve_checked(target.host, target.port, ctx->policy);
    worker->loop().post([worker, id, seq, resolved = std::move(resolved)] {
      if (Connection* c = worker->find(id)) {
        c->on_resolved(seq, resolved);
        c->pump();
      }
    });
  });
  if (!queued) return refuse(503, "proxy is stopping");
}

// Hands an idle, healthy upstream connection to the worker's pool; closes anything else.
void Connection::release_upstream() {
  if (!upstream_.fd.valid()) return;
  bool in_flight = head_sent_ && !(resp_ == RespState::done && req_ == ReqState::done);
  bool reusable = upstream_ready_ && upstream_keep_alive_ && !in_flight && !splice_ &&
                  !upstream_.failed && !upstream_.read_eof && !upstream_.connecting &&
                  !upstream_.handshaking && upstream_.in.empty() && upstream_.pending_out() == 0;
  if (reusable) {
    if (upstream_.registered) worker_->loop().remove(upstream_.fd.get());
    upstream_.registered = false;
    upstream_.interest = 0;
    worker_->upstream_pool().put(upstream_key_, std::move(upstream_.fd), std::move(upstream_.ssl));
  }
  close_side(upstream_);
  upstream_ready_ = false;
}

// Called from the posted resolver result (then pumped) or inline for IP literals (inside pump).
void Connection::on_resolved(uint64_t seq, const Result<ResolvedAddress>& resolved) {
  if (closed_ || seq != async_seq_) return;
  if (!resolved.ok()) {
    const Status& st = resolved.status();
    refuse(st.code() == Errc::denied ? 403 : 502, st.message());
    return;
  }
  sockaddr_storage ss{};
  socklen_t len = to_sockaddr(resolved->address, identity_->port, &ss);
  int fd = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    refuse(502, "cannot create upstream socket");
    return;
  }
  upstream_.fd.reset(fd);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int r = ::connect(fd, reinterpret_cast<sockaddr*>(&ss), len);
  if (r < 0 && errno != EINPROGRESS) {
    upstream_failed(fmt::format("cannot connect to upstream: {}", strerror(errno)), 502);
    return;
  }
  // Even an immediate connect is completed through EPOLLOUT, so this never re-enters pump().
  upstream_.connecting = true;
  update_interest(upstream_);
}

void Connection::on_upstream_ready() {
  upstream_ready_ = true;
  maybe_send_request();
}

std::string Connection::build_request_head(int64_t content_length) {
  std::vector<std::string> tokens = connection_tokens(req_headers_);
  std::string head = method_ + " " + target_ + " HTTP/1.1\r\n";
  head += "Host: " + host_header_for(*identity_, tls_client_) + "\r\n";
  for (const auto& [name, value] : req_headers_) {
    if (iequals(name, "host") || is_hop_by_hop(name)) continue;
    std::string lower = to_lower(name);
    if (std::find(tokens.begin(), tokens.end(), lower) != tokens.end()) continue;
    if (force_identity_encoding_ && lower == "accept-encoding") continue;
    // WebSocket compression would hide echoed values from redaction.
    if (upgrade_requested_ && !ctx_.secrets.empty() && lower == "sec-websocket-extensions")
      continue;
    head += name + ": " + value + "\r\n";
  }
  if (force_identity_encoding_) head += "Accept-Encoding: identity\r\n";
  if (upgrade_requested_) {
    auto upgrade = find_header(req_headers_, "upgrade");
    head += "Connection: Upgrade\r\nUpgrade: " + upgrade.value_or("websocket") + "\r\n";
  }
  if (content_length >= 0) {
    head += "Content-Length: " + std::to_string(content_length) + "\r\n";
  } else if (req_body_ == BodyMode::chunked) {
    head += "Transfer-Encoding: chunked\r\n";
  }
  head += "\r\n";
  return head;
}

void Connection::maybe_send_request() {
  if (head_sent_ || !upstream_ready_ || closing_) return;
  if (buffer_request_body_ && req_ != ReqState::done) return;
  int64_t length = -1;
  if (buffer_request_body_) {
    length = static_cast<int64_t>(buffered_body_.size());
  } else if (req_body_ == BodyMode::content_length) {
    length = req_content_length_;
  }
  std::string head = build_request_head(length);
  event_.bytes_up += head.size();
  upstream_.out += head;
  head_sent_ = true;
  resp_ = RespState::awaiting;
  resp_parser_ = std::make_unique<HttpParser>(HttpParser::Kind::response, http_limits());
  resp_parser_->set_response_to_head(method_ == "HEAD");
  resp_parser_->set_body_sink([this](std::string_view d) { on_response_body(d); });
  arm(ctx_.options.limits.idle_timeout, true, "idle");
  if (buffer_request_body_) {
    event_.bytes_up += buffered_body_.size();
    upstream_.out += buffered_body_;
    secure_wipe(buffered_body_.data(), buffered_body_.size());
    buffered_body_.clear();
    request_body_forwarded_ = true;
  } else if (req_ == ReqState::connecting) {
    req_ = ReqState::body;
    req_parser_->resume();
    kick_request_ = true;
  }
}

void Connection::on_request_body(std::string_view data) {
  if (pending_refusal_) return;
  std::string piece;
  if (body_substituter_) {
    body_substituter_->feed(data, &piece);
    if (body_substituter_->refused_any()) {
      set_pending_refusal(
          403, "secret placeholder in the request body for a host it is not bound to", true);
      return;
    }
  } else {
    if (body_scanner_) {
      body_scanner_->feed(data);
      if (body_scanner_->refused_any()) {
        set_pending_refusal(
            403, "secret placeholder in the request body for a host it is not bound to", true);
        return;
      }
    }
    piece.assign(data);
  }
  if (buffer_request_body_) {
    buffered_body_ += piece;
    if (buffered_body_.size() > body_limit_)
      set_pending_refusal(413, "request body too large for secret substitution", false);
    return;
  }
  if (piece.empty()) return;
  request_body_forwarded_ = true;
  std::string framed = req_body_ == BodyMode::chunked ? chunk_frame(piece) : piece;
  event_.bytes_up += framed.size();
  upstream_.out += framed;
}

void Connection::end_request_body() {
  if (pending_refusal_) {
    apply_pending_refusal();
    return;
  }
  std::string tail;
  if (body_substituter_) {
    body_substituter_->finish(&tail);
    if (body_substituter_->refused_any()) {
      set_pending_refusal(
          403, "secret placeholder in the request body for a host it is not bound to", true);
      apply_pending_refusal();
      return;
    }
    for (const auto& n : body_substituter_->substituted()) {
      auto& names = event_.secrets_substituted;
      if (std::find(names.begin(), names.end(), n) == names.end()) names.push_back(n);
    }
  }
  req_ = ReqState::done;
  if (buffer_request_body_) {
    buffered_body_ += tail;
    if (buffered_body_.size() > body_limit_) {
      refuse(413, "request body too large for secret substitution");
      return;
    }
    maybe_send_request();
  } else {
    if (!tail.empty()) {
      std::string framed = req_body_ == BodyMode::chunked ? chunk_frame(tail) : tail;
      upstream_.out += framed;
      event_.bytes_up += framed.size();
    }
    if (req_body_ == BodyMode::chunked) {
      upstream_.out += "0\r\n\r\n";
      event_.bytes_up += 5;
    }
  }
  if (resp_ == RespState::done) request_complete();
}

void Connection::set_pending_refusal(int status, std::string reason, bool exfiltration) {
  if (pending_refusal_) return;
  pending_refusal_ = true;
  refusal_status_ = status;
  refusal_reason_ = std::move(reason);
  refusal_exfiltration_ = exfiltration;
}

void Connection::apply_pending_refusal() {
  pending_refusal_ = false;
  if (request_body_forwarded_ || (head_sent_ && !buffer_request_body_)) {
    // Part of the request already went upstream: cut both connections rather than let the
    // upstream see a well-formed request.
    reset_both(refusal_reason_, refusal_exfiltration_);
    return;
  }
  refuse(refusal_status_, refusal_reason_, refusal_exfiltration_);
}

}  // namespace airlock::proxy
