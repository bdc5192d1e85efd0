// Connection, part 1: lifecycle, socket and TLS I/O, deadlines, refusals and audit.
// (Part 2, connection_request.cc: requests; part 3, connection_response.cc: responses.)
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

namespace airlock::proxy {

using namespace conn;  // NOLINT: internal constants and helpers of this state machine

void Side::on_io(int, uint32_t events) {
  try {
    conn->on_side_io(*this, events);
  } catch (...) {
    // Out of memory or a bug: lose this connection, never the worker.
    AIRLOCK_LOG_ERROR("proxy", "connection {} failed with an exception", conn->id());
    conn->abort_and_retire();
  }
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
}

Connection::~Connection() {
  tear_down();
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

void Connection::tear_down() noexcept {
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
  tear_down();
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
  timeout_ = timeout;
  timeout_on_activity_ = on_activity;
  phase_ = phase;
  phase_start_ = last_activity_ = Clock::now();
  // One loop timer per connection. Deadlines mostly move later, so a pending timer that fires
  // no later than the new deadline is kept; on_deadline() re-checks and re-arms if early.
  schedule_timer(phase_start_ + timeout);
}

void Connection::schedule_timer(Clock::time_point due) {
  if (timer_ && timer_due_ <= due) return;
  if (timer_) worker_->loop().cancel(timer_);
  Worker* worker = worker_;
  uint64_t id = id_;
  timer_due_ = due;
  timer_ = worker_->loop().schedule(due, [worker, id] {
    if (Connection* c = worker->find(id)) c->on_deadline();
  });
}

void Connection::on_deadline() {
  timer_ = 0;
  if (closed_) return;
  auto due = (timeout_on_activity_ ? last_activity_ : phase_start_) + timeout_;
  if (Clock::now() < due) {
    schedule_timer(due);
    return;
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
