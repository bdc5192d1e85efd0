// airlock egress proxy: the only way out of a sandbox.
//
// Serves clients as an explicit HTTP proxy (absolute-form and CONNECT) and transparently
// (clients that connected to it as if it were the server: TLS routed by SNI, plain HTTP by
// Host). Only hosts matching `allow_net` are reached; TLS is intercepted with a per-proxy CA so
// that secret placeholders can be replaced by real values on requests to the hosts each secret
// is bound to, and real values coming back are redacted to the placeholder.
//
// Threads: start()/stop() and the accessors may be called from any thread. Audit callbacks and
// hooks run on the proxy's worker threads; they must not call stop() on the same proxy.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "airlock/status.hpp"

namespace airlock {

// A real credential and the hosts (allow_net-style patterns) it may be sent to.
struct SecretSpec {
  std::string name;                // also the guest environment variable holding the placeholder
  std::string value;               // the real value; never logged, never sent to the guest
  std::vector<std::string> hosts;  // "api.openai.com", "*.anthropic.com", "host:port"
};

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct AuditEvent {
  enum class Decision { allowed, denied, error };
  std::chrono::system_clock::time_point time;
  uint64_t connection_id = 0;
  std::string client;   // peer address of the guest side
  std::string method;   // "GET", "CONNECT", ...
  std::string scheme;   // "https" or "http"
  std::string host;     // connection identity (SNI / CONNECT authority / Host)
  uint16_t port = 0;
  std::string path;     // request target, secrets redacted to placeholders
  int status = 0;       // status sent to the client (0 if none)
  uint64_t bytes_up = 0;    // request bytes sent upstream
  uint64_t bytes_down = 0;  // response bytes sent to the client
  std::chrono::microseconds duration{0};
  Decision decision = Decision::allowed;
  std::string reason;   // why denied / errored; "" when allowed
  std::vector<std::string> secrets_substituted;  // names only
  bool exfiltration_attempt = false;  // a placeholder was sent towards an unbound host
};

// What a request hook sees, before the request goes upstream (after policy and before secret
// substitution: header values still hold placeholders).
struct HookRequest {
  std::string method;
  std::string scheme;
  std::string host;
  uint16_t port = 0;
  std::string target;  // origin-form path and query
  HeaderList headers;
};

struct HookDecision {
  enum class Action { allow, deny };
  Action action = Action::allow;
  int status = 403;          // for deny
  std::string message;       // for deny: body sent to the client
  HeaderList set_headers;    // for allow: replace or add these headers
  std::vector<std::string> remove_headers;
};

using RequestHook = std::function<HookDecision(const HookRequest&)>;
using AuditCallback = std::function<void(const AuditEvent&)>;

// How a listener serves the clients that connect to it.
enum class ListenMode { explicit_proxy, transparent_https, transparent_http };

struct ListenerSpec {
  ListenMode mode = ListenMode::explicit_proxy;
  std::string address = "127.0.0.1:0";  // "ip:port"; port 0 picks one
  int fd = -1;  // or an already bound, listening socket (e.g. made inside a sandbox's netns);
                // the proxy takes ownership
  // Transparent modes: the upstream port clients meant to reach (0: 443 for transparent_https,
  // 80 for transparent_http). Explicit mode ignores it (CONNECT and URLs carry the port).
  uint16_t upstream_port = 0;
};

struct ProxyLimits {
  size_t max_header_bytes = 64 * 1024;
  size_t max_headers = 128;
  size_t max_url_bytes = 16 * 1024;
  size_t max_connections = 1024;
  size_t max_body_substitution_bytes = 8 * 1024 * 1024;
  std::chrono::milliseconds header_timeout{10000};
  std::chrono::milliseconds tls_handshake_timeout{10000};
  std::chrono::milliseconds connect_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
};

struct ProxyOptions {
  std::vector<std::string> allow_net;  // default deny: empty means nothing is reachable
  std::vector<SecretSpec> secrets;
  bool substitute_in_body = false;
  std::vector<ListenerSpec> listeners = {ListenerSpec{}};
  // Name -> address overrides for upstream resolution, like curl --resolve: "host:port" or
  // "host" -> "ip". Off (empty) by default; for tests.
  std::map<std::string, std::string> resolve_override;
  std::string ca_bundle = "/etc/ssl/certs/ca-certificates.crt";  // upstream trust
  std::vector<std::string> extra_ca_files;                          // also trusted upstream
  unsigned worker_threads = 2;
  ProxyLimits limits;
  AuditCallback on_audit;
  std::string audit_jsonl_path;  // optional: append one JSON object per event
  RequestHook hook;
  std::chrono::milliseconds hook_deadline{2000};
};

struct ProxyStats {
  uint64_t connections = 0;
  uint64_t requests = 0;
  uint64_t denied = 0;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
  std::map<std::string, uint64_t> requests_per_host;
};

class Proxy {
 public:
  static Result<std::unique_ptr<Proxy>> start(ProxyOptions options);
  virtual ~Proxy() = default;

  // The per-proxy CA certificate (PEM) clients must trust.
  virtual std::string ca_pem() const = 0;
  // The placeholder that stands for secret `name` ("" if unknown).
  virtual std::string placeholder(const std::string& name) const = 0;
  // Bound addresses ("ip:port") of the listeners, in the order given.
  virtual std::vector<std::string> listen_addresses() const = 0;
  virtual ProxyStats stats() const = 0;
  // Stops accepting, closes every connection, joins workers. Idempotent.
  virtual void stop() = 0;
};

}  // namespace airlock
