// One client connection and its upstream: the whole per-connection state machine.
//
//   client bytes ──(TLS?)──► request parser ──► checks: identity, policy, hook, secrets
//        ▲                                           │
//        │                                           ▼
//   response head/body ◄── response parser ◄──(TLS)── upstream (resolved, checked address)
//
// Requests on a connection are handled one at a time (pipelined requests wait in the input
// buffer); request body and response may stream concurrently. Every buffer is bounded: a side is
// not read while the other side's output buffer is above the high-water mark. Every phase has a
// deadline. Threads: only the owning worker's thread touches a Connection.
// Code: connection.cc (I/O, TLS, deadlines, refusals), connection_request.cc (request side),
// connection_response.cc (response side); connection_internal.h holds shared bounds.
#pragma once

#include <openssl/ssl.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "airlock/proxy.hpp"
#include "base/fd.h"
#include "proxy/event_loop.h"
#include "proxy/http_parser.h"
#include "proxy/policy.h"
#include "proxy/resolver.h"
#include "proxy/secrets.h"
#include "proxy/server.h"
#include "proxy/tls.h"
#include "proxy/websocket_redactor.h"

namespace airlock::proxy {

class Connection;

// One socket of a connection (client or upstream), optionally TLS.
struct Side : IoHandler {
  Connection* conn = nullptr;
  bool upstream = false;
  UniqueFd fd;
  bssl::UniquePtr<SSL> ssl;
  bool registered = false;
  uint32_t interest = 0;
  bool connecting = false;   // TCP connect in progress (upstream)
  bool handshaking = false;  // TLS handshake in progress
  bool read_eof = false;     // no more plaintext will come
  bool socket_eof = false;
  bool readable = false;  // epoll reported input not yet drained   // TLS: the socket reached EOF
                          // (the memory BIO may still hold data)
  bool failed = false;
  bool ssl_read_wants_write = false;
  bool ssl_write_wants_read = false;
  bool hs_wants_write = false;
  std::string in;   // plaintext received, not yet consumed
  std::string out;  // plaintext to send
  size_t out_off = 0;

  size_t pending_out() const { return out.size() - out_off; }
  void on_io(int fd, uint32_t events) override;
};

class Connection : public ClientHelloObserver {
 public:
  Connection(Worker* worker, uint64_t id, UniqueFd client_fd, const Listener& listener,
             std::string peer);
  ~Connection() override;

  uint64_t id() const { return id_; }
  void start();
  // Closes both sides now (proxy stop); no audit.
  void tear_down() noexcept;
  // Closes both sides and hands the connection back to the worker to be freed.
  void abort_and_retire() noexcept;

  void on_side_io(Side& side, uint32_t events);
  // Makes every possible progress on both sides, then updates epoll interest.
  void pump();
  Result<std::string> on_client_hello(const std::string& sni) override;

 private:
  enum class ReqState { idle, deciding, connecting, body, done };
  enum class RespState { none, awaiting, body, done };
  enum class BodyMode { none, content_length, chunked, until_close };

  HttpLimits http_limits() const;

  // I/O
  bool do_io(Side& side);
  bool handshake(Side& side);
  bool fill_tls_input(Side& side);
  bool read_side(Side& side);
  bool flush_side(Side& side);
  void update_interest(Side& side);
  void close_side(Side& side) noexcept;
  void close_now() noexcept;
  void finish(bool flush_first);  // close, after flushing what the client is owed

  // Protocol
  bool process();
  bool process_splice();
  bool process_request_bytes();
  bool process_response_bytes();
  bool process_eof();
  void begin_event(const std::string& method, const std::string& scheme);
  void begin_event_if_needed();
  void on_request_head();
  void on_hook_result(uint64_t seq, const std::optional<HookDecision>& decision,
                      const std::string& error);
  void continue_after_hook();
  void ensure_upstream();
  void release_upstream();
  void on_resolved(uint64_t seq, const Result<ResolvedAddress>& resolved);
  void on_upstream_ready();
  std::string build_request_head(int64_t content_length);
  void maybe_send_request();
  void on_request_body(std::string_view data);
  void end_request_body();
  bool on_response_head();
  void on_response_body(std::string_view data);
  void emit_response_body(std::string_view data);
  void end_response();
  void request_complete();
  void upstream_failed(const std::string& why, int status);

  // Refusals and audit
  void refuse(int status, const std::string& reason, bool exfiltration = false);
  void set_pending_refusal(int status, std::string reason, bool exfiltration);
  void apply_pending_refusal();
  void reset_both(const std::string& reason, bool exfiltration);
  void record_audit();

  // Deadlines: one per phase; `on_activity` deadlines move with every byte transferred.
  void arm(std::chrono::milliseconds timeout, bool on_activity, const char* phase);
  void on_deadline();
  void schedule_timer(Clock::time_point due);
  bool phase_is(const char* name) const;
  void touch() { last_activity_ = Clock::now(); }

  Worker* worker_;
  ProxyContext& ctx_;
  uint64_t id_;
  ListenMode mode_;
  uint16_t transparent_port_;
  std::string peer_;
  Side client_;
  Side upstream_;
  bool closing_ = false;
  bool closed_ = false;
  bool retired_ = false;

  // Identity: SNI, CONNECT authority or Host; fixed once set (per request for explicit HTTP).
  std::optional<Target> identity_;
  bool tls_client_ = false;  // the client side speaks TLS (CONNECT tunnel or transparent https)
  bool tunneled_ = false;    // explicit proxy after CONNECT
  bool start_tls_after_flush_ = false;
  bool splice_ = false;  // upgraded: bytes flow both ways unparsed
  bool first_request_ = true;
  bool request_bytes_seen_ = false;  // any byte of a request head since the connection began
  std::string hello_refusal_;
  std::string hello_host_;

  std::unique_ptr<HttpParser> req_parser_;
  std::unique_ptr<HttpParser> resp_parser_;
  ReqState req_ = ReqState::idle;
  RespState resp_ = RespState::none;
  bool kick_request_ = false;  // feed the parser even without bytes (body-less message end)
  bool kick_response_ = false;

  // Current request.
  std::string method_;
  std::string target_;  // origin-form, secrets substituted
  HeaderList req_headers_;
  bool client_keep_alive_ = true;
  bool client_http10_ = false;
  bool upgrade_requested_ = false;
  BodyMode req_body_ = BodyMode::none;
  int64_t req_content_length_ = -1;
  bool buffer_request_body_ = false;
  std::string buffered_body_;
  uint64_t body_limit_ = 0;
  std::unique_ptr<PlaceholderScanner> body_scanner_;
  std::unique_ptr<BodySubstituter> body_substituter_;
  bool request_body_forwarded_ = false;
  bool head_sent_ = false;
  bool force_identity_encoding_ = false;
  bool pending_refusal_ = false;
  int refusal_status_ = 0;
  std::string refusal_reason_;
  bool refusal_exfiltration_ = false;
  uint64_t async_seq_ = 0;  // bumps invalidate pending hook/resolve results
  AuditEvent event_;
  bool event_recorded_ = false;
  Clock::time_point request_start_;

  // Upstream.
  std::string upstream_key_;  // host:port of the live upstream connection
  bool upstream_ready_ = false;
  bool upstream_keep_alive_ = true;
  bool upstream_reused_ = false;   // the request went out on a kept-alive connection
  bool response_started_ = false;  // any response byte parsed for the current request
  bool retried_ = false;           // the current request was already sent a second time

  // Current response.
  BodyMode resp_body_ = BodyMode::none;
  bool response_head_sent_ = false;
  bool interim_response_ = false;
  std::unique_ptr<Redactor> redactor_;
  std::unique_ptr<WebSocketRedactor> ws_redactor_;  // server-to-client frames after an upgrade
  bool close_after_response_ = false;

  // Deadline.
  EventLoop::TimerId timer_ = 0;
  Clock::time_point timer_due_;
  std::chrono::milliseconds timeout_{0};
  bool timeout_on_activity_ = false;
  const char* phase_ = "";
  Clock::time_point phase_start_;
  Clock::time_point last_activity_;
};

}  // namespace airlock::proxy
