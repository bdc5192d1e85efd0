#include "proxy/connection.h"

#include <errno.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>

#include "base/log.h"
#include "base/secret.h"
#include "proxy/http_util.h"

namespace airlock::proxy {

namespace {

constexpr size_t kReadChunk = 16 * 1024;
constexpr size_t kMaxInput = 64 * 1024;    // unconsumed input per side
constexpr size_t kHighWater = 256 * 1024;  // output above this: the other side is not consumed
constexpr size_t kTlsFillChunk = 16 * 1024 + 512;  // one full record and its framing
constexpr size_t kScanBufferLimit = 1024 * 1024;   // small bodies are scanned before forwarding
constexpr std::chrono::milliseconds kLinger{2000};

std::string chunk_frame(std::string_view data) {
  return fmt::format("{:x}\r\n", data.size()).append(data).append("\r\n");
}

uint16_t default_port(bool tls) {
  return tls ? 443 : 80;
}

// "host[:port]" for a Host header, brackets around IPv6, port omitted when it is the default.
std::string host_header_for(const Target& t, bool tls) {
  std::string host = t.ip && t.ip->family == IpAddress::v6 ? "[" + t.host + "]" : t.host;
  if (t.port != default_port(tls)) host += ":" + std::to_string(t.port);
  return host;
}

bool same_target(const Target& a, const Target& b) {
  return a.host == b.host && a.port == b.port;
}

// Splits an absolute-form URL "scheme://authority/path?q" into authority and origin-form.
bool split_absolute(std::string_view url, std::string_view scheme, std::string* authority,
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

}  // namespace

void Side::on_io(int, uint32_t events) {
  conn->on_side_io(*this, events);
}

Connection::Connection(Worker* worker, uint64_t id, UniqueFd client_fd, const Listener& listener,
                       std::string peer)
    : worker_(worker),
      ctx_(worker->ctx()),
      id_(id),
      mode_(listener.spec.mode),
      transparent_port_(listener.upstream_port),
      peer_(std::move(peer)) {
  client_.conn = this;
  client_.fd = std::move(client_fd);
  upstream_.conn = this;
  upstream_.upstream = true;
  ctx_.counters.connections.fetch_add(1, std::memory_order_relaxed);
  ctx_.counters.active_connections.fetch_add(1, std::memory_order_relaxed);
}

Connection::~Connection() {
  abort();
  ctx_.counters.active_connections.fetch_sub(1, std::memory_order_relaxed);
}

HttpLimits Connection::http_limits() const {
  HttpLimits l;
  l.max_head_bytes = ctx_.options.limits.max_header_bytes;
  l.max_headers = ctx_.options.limits.max_headers;
  l.max_url_bytes = ctx_.options.limits.max_url_bytes;
  return l;
}

void Connection::start() {
  req_parser_ = std::make_unique<HttpParser>(HttpParser::Kind::request, http_limits());
  req_parser_->set_body_sink([this](std::string_view d) { on_request_body(d); });
  if (mode_ == ListenMode::transparent_https) {
    tls_client_ = true;
    client_.ssl = ctx_.tls->new_server(client_.fd.get(), this);
    if (!client_.ssl) {
      finish(false);
      return;
    }
    client_.handshaking = true;
    arm(ctx_.options.limits.tls_handshake_timeout, false, "tls");
  } else {
    arm(ctx_.options.limits.header_timeout, false, "headers");
  }
  pump();
}

void Connection::abort_and_retire() noexcept {
  close_now();
}

void Connection::abort() noexcept {
  if (timer_) worker_->loop().cancel(timer_);
  timer_ = 0;
  close_side(client_);
  close_side(upstream_);
  closed_ = true;
}

// ---------------------------------------------------------------------------------------------
// I/O

void Connection::on_side_io(Side& side, uint32_t events) {
  if (closed_) return;
  // recv(2) is only tried when epoll said so or the last read filled its buffer: the
  // alternative is one EAGAIN per side per pump round.
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR | EPOLLRDHUP)) side.readable = true;
  if (side.upstream && side.connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(side.fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == EINPROGRESS || err == EALREADY) return;
    side.connecting = false;
    if (err != 0) {
      upstream_failed(fmt::format("cannot connect to upstream: {}", strerror(err)), 502);
      pump();
      return;
    }
    touch();
    if (tls_client_) {
      side.ssl = ctx_.tls->new_client(side.fd.get(), identity_->host, identity_->ip.has_value());
      if (!side.ssl) {
        upstream_failed("cannot create upstream TLS session", 502);
        pump();
        return;
      }
      side.handshaking = true;
    } else {
      on_upstream_ready();
    }
  }
  pump();
}

void Connection::pump() {
  for (int round = 0; round < 64 && !closed_; ++round) {
    bool progress = do_io(client_);
    if (closed_) return;
    if (upstream_.fd.valid() && !upstream_.connecting) progress |= do_io(upstream_);
    if (closed_) return;
    progress |= process();
    if (closed_) return;
    if (!progress) break;
  }
  if (closed_) return;
  if (closing_ && client_.pending_out() == 0) {
    close_now();
    return;
  }
  update_interest(client_);
  update_interest(upstream_);
}

bool Connection::do_io(Side& side) {
  if (!side.fd.valid() || side.failed) return false;
  bool progress = false;
  if (&side == &client_ && start_tls_after_flush_) {
    progress |= flush_side(side);
    if (side.pending_out() > 0 || side.failed) return progress;
    start_tls_after_flush_ = false;
    side.ssl = ctx_.tls->new_server(side.fd.get(), this);
    // A client may send its ClientHello without waiting for the 200: those bytes are TLS.
    if (!side.ssl || !feed_tls_input(side.ssl.get(), side.in.data(), side.in.size())) {
      side.failed = true;
      return true;
    }
    side.in.clear();
    side.handshaking = true;
    progress = true;
  }
  if (side.handshaking) {
    progress |= handshake(side);
    if (side.handshaking || side.failed) return progress;
  }
  progress |= flush_side(side);
  if (!closing_ || side.upstream) progress |= read_side(side);
  progress |= flush_side(side);
  return progress;
}

bool Connection::fill_tls_input(Side& side) {
  if (side.socket_eof || side.failed || !side.readable) return false;
  bool progress = false;
  // About one TLS record per recv: BoringSSL's memory BIO moves its unread bytes to the front
  // on every read, so keeping little buffered there keeps that copying small.
  char buf[kTlsFillChunk];
  while (pending_tls_input(side.ssl.get()) < kTlsFillChunk) {
    ssize_t n = ::recv(side.fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      if (!feed_tls_input(side.ssl.get(), buf, static_cast<size_t>(n))) {
        side.failed = true;
        return true;
      }
      progress = true;
      if (static_cast<size_t>(n) < sizeof buf) {
        side.readable = false;
        break;
      }
      continue;
    }
    if (n == 0) {
      side.socket_eof = true;
      return true;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      side.failed = true;
      return true;
    }
    side.readable = false;
    break;
  }
  if (progress) touch();
  return progress;
}

bool Connection::handshake(Side& side) {
  bool filled = fill_tls_input(side);
  if (side.failed) return true;
  int r = SSL_do_handshake(side.ssl.get());
  if (r == 1) {
    side.handshaking = false;
    side.hs_wants_write = false;
    touch();
    if (side.upstream) {
      on_upstream_ready();
    } else {
      arm(ctx_.options.limits.header_timeout, false, "headers");
    }
    return true;
  }
  int err = SSL_get_error(side.ssl.get(), r);
  if (err == SSL_ERROR_WANT_READ && !side.socket_eof) {
    side.hs_wants_write = false;
    return filled;
  }
  if (err == SSL_ERROR_WANT_WRITE) {
    side.hs_wants_write = true;
    return filled;
  }
  std::string why = TlsContexts::handshake_error(side.ssl.get(), r);
  side.failed = true;
  if (side.upstream) {
    upstream_failed("upstream " + why, 502);
  } else {
    begin_event("", tls_client_ ? "https" : "http");
    if (!hello_refusal_.empty()) {
      event_.decision = AuditEvent::Decision::denied;
      event_.reason = hello_refusal_;
      event_.host = hello_host_;
      ctx_.counters.denied.fetch_add(1, std::memory_order_relaxed);
    } else {
      event_.decision = AuditEvent::Decision::error;
      event_.reason = "client " + why;
    }
    record_audit();
    close_now();
  }
  return true;
}

bool Connection::read_side(Side& side) {
  if (side.read_eof || side.failed || side.handshaking || side.connecting) return false;
  bool progress = false;
  char buf[kReadChunk];
  while (side.in.size() < kMaxInput) {
    size_t want = std::min(sizeof buf, kMaxInput - side.in.size());
    if (side.ssl) {
      side.ssl_read_wants_write = false;
      if (pending_tls_input(side.ssl.get()) == 0) progress |= fill_tls_input(side);
      if (side.failed) return true;
      int n = SSL_read(side.ssl.get(), buf, static_cast<int>(want));
      if (n > 0) {
        side.in.append(buf, static_cast<size_t>(n));
        progress = true;
        continue;
      }
      int err = SSL_get_error(side.ssl.get(), n);
      if (err == SSL_ERROR_WANT_READ) {
        if (side.socket_eof && pending_tls_input(side.ssl.get()) == 0) {
          side.read_eof = true;  // closed without close_notify: the stream ends here
          return true;
        }
        if (pending_tls_input(side.ssl.get()) > 0) continue;
        if (!fill_tls_input(side)) break;
        continue;
      }
      if (err == SSL_ERROR_WANT_WRITE) {
        side.ssl_read_wants_write = true;
        break;
      }
      if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
        side.read_eof = true;
      } else {
        side.failed = true;
      }
      ERR_clear_error();
      return true;
    }
    if (!side.readable) break;
    ssize_t n = ::recv(side.fd.get(), buf, want, 0);
    if (n > 0) {
      side.in.append(buf, static_cast<size_t>(n));
      progress = true;
      if (static_cast<size_t>(n) < want) {
        side.readable = false;
        break;
      }
      continue;
    }
    if (n == 0) {
      side.read_eof = true;
      return true;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      side.readable = false;
      break;
    }
    side.failed = true;
    return true;
  }
  if (progress) touch();
  return progress;
}

bool Connection::flush_side(Side& side) {
  if (side.connecting || side.handshaking || side.failed || !side.fd.valid()) return false;
  bool progress = false;
  while (side.pending_out() > 0) {
    const char* data = side.out.data() + side.out_off;
    size_t len = side.pending_out();
    if (side.ssl) {
      side.ssl_write_wants_read = false;
      int n = SSL_write(side.ssl.get(), data, static_cast<int>(std::min<size_t>(len, 1 << 20)));
      if (n > 0) {
        side.out_off += static_cast<size_t>(n);
        progress = true;
        continue;
      }
      int err = SSL_get_error(side.ssl.get(), n);
      if (err == SSL_ERROR_WANT_WRITE) break;
      if (err == SSL_ERROR_WANT_READ) {
        side.ssl_write_wants_read = true;
        break;
      }
      ERR_clear_error();
      side.failed = true;
      return true;
    }
    ssize_t n = ::send(side.fd.get(), data, len, MSG_NOSIGNAL);
    if (n > 0) {
      side.out_off += static_cast<size_t>(n);
      progress = true;
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) break;
    side.failed = true;
    return true;
  }
  if (side.out_off > 0 && side.out_off == side.out.size()) {
    side.out.clear();
    side.out_off = 0;
  } else if (side.out_off > 64 * 1024 && side.out_off * 2 > side.out.size()) {
    // Compact only when the sent prefix is most of the buffer: amortised O(1) per byte.
    side.out.erase(0, side.out_off);
    side.out_off = 0;
  }
  if (progress) touch();
  return progress;
}

void Connection::update_interest(Side& side) {
  if (!side.fd.valid() || closed_) return;
  uint32_t ev = 0;
  if (side.failed) {
    ev = 0;
  } else if (side.connecting) {
    ev = EPOLLOUT;
  } else if (side.handshaking) {
    ev = EPOLLIN | (side.hs_wants_write ? static_cast<uint32_t>(EPOLLOUT) : 0u);
  } else {
    bool may_read = !side.read_eof && side.in.size() < kMaxInput && !(closing_ && !side.upstream);
    if (&side == &client_ && start_tls_after_flush_) may_read = false;
    if (may_read || side.ssl_write_wants_read) ev |= EPOLLIN;
    if (side.pending_out() > 0 || side.ssl_read_wants_write ||
        (&side == &client_ && start_tls_after_flush_))
      ev |= EPOLLOUT;
  }
  if (ev == 0) {
    // Not registered while idle: a hung-up socket would otherwise wake the loop forever.
    if (side.registered) worker_->loop().remove(side.fd.get());
    side.registered = false;
    side.interest = 0;
    return;
  }
  if (!side.registered) {
    if (worker_->loop().add(side.fd.get(), ev, &side).ok()) {
      side.registered = true;
      side.interest = ev;
    } else {
      side.failed = true;
    }
  } else if (ev != side.interest) {
    if (worker_->loop().modify(side.fd.get(), ev, &side).ok()) side.interest = ev;
  }
}

void Connection::close_side(Side& side) noexcept {
  if (!side.fd.valid()) return;
  if (side.registered) worker_->loop().remove(side.fd.get());
  side.registered = false;
  side.interest = 0;
  if (side.ssl && !side.failed && !side.handshaking) SSL_shutdown(side.ssl.get());
  side.ssl.reset();
  side.fd.reset();
  side.connecting = side.handshaking = false;
  side.read_eof = side.failed = side.socket_eof = side.readable = false;
  side.ssl_read_wants_write = side.ssl_write_wants_read = side.hs_wants_write = false;
  side.in.clear();
  side.out.clear();
  side.out_off = 0;
}

void Connection::close_now() noexcept {
  if (closed_) return;
  try {
    release_upstream();
  } catch (...) {
  }
  abort();
  if (!retired_) {
    retired_ = true;
    worker_->retire(id_);
  }
}

void Connection::finish(bool flush_first) {
  if (closed_) return;
  closing_ = true;
  release_upstream();
  if (!flush_first || client_.pending_out() == 0 || client_.failed || !client_.fd.valid()) {
    close_now();
    return;
  }
  arm(kLinger, false, "closing");
}

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
    client_.out.append(upstream_.in);
    event_.bytes_down += upstream_.in.size();
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
  if (mode_ == ListenMode::explicit_proxy && !tunneled_) {
    // Identity is per request for explicit plain HTTP.
  }
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

// ---------------------------------------------------------------------------------------------
// Refusals and audit

void Connection::refuse(int status, const std::string& reason, bool exfiltration) {
  if (closed_) return;
  event_.status = status;
  event_.reason = reason;
  event_.exfiltration_attempt = exfiltration;
  event_.decision = status >= 500 ? AuditEvent::Decision::error : AuditEvent::Decision::denied;
  if (event_.decision == AuditEvent::Decision::denied)
    ctx_.counters.denied.fetch_add(1, std::memory_order_relaxed);
  ++async_seq_;  // results of pending hooks/resolutions are stale now
  std::string host = event_.host.empty() ? std::string("(unknown host)") : event_.host;
  std::string body = fmt::format("airlock: request to {} refused: {}\n", host, reason);
  bool can_answer = !response_head_sent_ && client_.fd.valid() && !client_.failed &&
                    !client_.handshaking && !start_tls_after_flush_;
  if (can_answer) {
    std::string answer = plain_response(status, body, true);
    event_.bytes_down += answer.size();
    client_.out += answer;
  }
  record_audit();
  finish(can_answer);
}

void Connection::reset_both(const std::string& reason, bool exfiltration) {
  event_.decision = AuditEvent::Decision::denied;
  event_.reason = reason + " (connection reset)";
  event_.exfiltration_attempt = exfiltration;
  event_.status = 0;
  ctx_.counters.denied.fetch_add(1, std::memory_order_relaxed);
  record_audit();
  linger l{1, 0};  // RST instead of FIN: the upstream must not take a truncated body as complete
  if (upstream_.fd.valid()) ::setsockopt(upstream_.fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  if (client_.fd.valid()) ::setsockopt(client_.fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  upstream_.failed = client_.failed = true;  // no TLS close_notify either
  close_now();
}

void Connection::record_audit() {
  if (event_recorded_ || (event_.method.empty() && event_.reason.empty())) return;
  event_recorded_ = true;
  event_.duration =
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - request_start_);
  if (event_.time == std::chrono::system_clock::time_point{})
    event_.time = std::chrono::system_clock::now();
  ctx_.counters.bytes_up.fetch_add(event_.bytes_up, std::memory_order_relaxed);
  ctx_.counters.bytes_down.fetch_add(event_.bytes_down, std::memory_order_relaxed);
  ctx_.record(event_);
}

Result<std::string> Connection::on_client_hello(const std::string& sni) {
  hello_host_ = sni.substr(0, 256);
  if (tunneled_ && identity_) {
    hello_host_ = identity_->host;
    if (sni.empty()) return identity_->host;  // the name comes from the CONNECT authority
    auto t = parse_target(sni, identity_->port);
    if (!t.ok() || t->host != identity_->host) {
      hello_refusal_ = "TLS server name does not match the CONNECT authority";
      return Status(Errc::denied, hello_refusal_);
    }
    return identity_->host;
  }
  if (sni.empty()) {
    hello_refusal_ = "no SNI: a transparent TLS connection needs a server name";
    return Status(Errc::denied, hello_refusal_);
  }
  auto t = parse_target(sni, transparent_port_);
  if (!t.ok()) {
    hello_refusal_ = "invalid TLS server name";
    return Status(Errc::denied, hello_refusal_);
  }
  identity_ = *t;
  hello_host_ = t->host;
  return t->host;
}

// ---------------------------------------------------------------------------------------------
// Deadlines

bool Connection::phase_is(const char* name) const {
  return std::string_view(phase_) == name;
}

void Connection::arm(std::chrono::milliseconds timeout, bool on_activity, const char* phase) {
  if (closed_) return;
  if (timer_) worker_->loop().cancel(timer_);
  timeout_ = timeout;
  timeout_on_activity_ = on_activity;
  phase_ = phase;
  phase_start_ = last_activity_ = Clock::now();
  Worker* worker = worker_;
  uint64_t id = id_;
  timer_ = worker_->loop().schedule(phase_start_ + timeout, [worker, id] {
    if (Connection* c = worker->find(id)) c->on_deadline();
  });
}

void Connection::on_deadline() {
  timer_ = 0;
  if (closed_) return;
  if (timeout_on_activity_) {
    auto due = last_activity_ + timeout_;
    if (Clock::now() < due) {
      Worker* worker = worker_;
      uint64_t id = id_;
      timer_ = worker_->loop().schedule(due, [worker, id] {
        if (Connection* c = worker->find(id)) c->on_deadline();
      });
      return;
    }
  }
  std::string_view phase = phase_;
  if (phase == "closing" || phase == "keepalive") {
    close_now();
    return;
  }
  if (phase == "tls") {
    begin_event("", "https");
    event_.decision = AuditEvent::Decision::error;
    event_.reason = "TLS handshake timeout";
    event_.host = hello_host_;
    record_audit();
    close_now();
    return;
  }
  if (phase == "headers") {
    if (!request_bytes_seen_) {
      close_now();  // connected and never sent a byte: nothing to answer or record
      return;
    }
    begin_event(req_parser_->head().method, tls_client_ ? "https" : "http");
    refuse(408, "request header timeout");
  } else if (phase == "hook") {
    refuse(403, "the request hook missed its deadline");
  } else if (phase == "connect") {
    refuse(504, "upstream connect timeout");
  } else {
    if (splice_) {
      record_audit();
      close_now();
      return;
    }
    upstream_failed("upstream idle timeout", 504);
  }
  pump();
}

}  // namespace airlock::proxy
