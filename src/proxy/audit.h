// Audit events of the egress proxy: JSON encoding (one line per event), delivery to the host's
// callback and optionally to a JSON-lines file, and per-host counters. record() is called from
// the proxy's worker threads concurrently; it never throws and never blocks on anything but
// the callback and one write(2). Callbacks are serialised (never run concurrently), so a host
// callback need not be thread-safe; it must not call back into the proxy's stop().
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "airlock/proxy.hpp"
#include "airlock/status.hpp"
#include "base/fd.h"
#include "proxy/secrets.h"

namespace airlock::proxy {

// One line, no trailing newline. Strings are escaped per RFC 8259 (quotes, backslash, every
// control character as \u00XX); bytes that are not valid UTF-8 become U+FFFD. Keys: time
// (RFC 3339 UTC with microseconds), connection_id, client, method, scheme, host, port, path,
// status, bytes_up, bytes_down, duration_us, decision ("allowed"|"denied"|"error"), reason,
// secrets_substituted (array of names), exfiltration_attempt.
std::string audit_to_json(const AuditEvent& event);

// A JSON string literal (with the quotes) for arbitrary bytes.
std::string json_quote(std::string_view bytes);

const char* decision_name(AuditEvent::Decision d);

struct HostCounters {
  uint64_t requests = 0;  // events recorded for the host (requests and refused connections)
  uint64_t denied = 0;
  uint64_t errors = 0;
  uint64_t bytes_up = 0;
  uint64_t bytes_down = 0;
};

class AuditLog {
 public:
  // `jsonl_path` empty: no file. The file is opened O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC with
  // mode 0600 (the guest must never be able to read it, and it names every host contacted).
  // `redact`: defence in depth; any real value of these secrets that reaches an event's text
  // fields (a bug elsewhere) is replaced by its placeholder before anyone sees the event.
  static Result<std::unique_ptr<AuditLog>> create(AuditCallback callback,
                                                  const std::string& jsonl_path,
                                                  SecretSet redact = SecretSet());

  void record(const AuditEvent& event) noexcept;

  // Per-host counters cover at most kMaxHosts names; later names count under kOtherHosts.
  static constexpr size_t kMaxHosts = 4096;
  static constexpr const char* kOtherHosts = "(other hosts)";

  std::map<std::string, uint64_t> requests_per_host() const;
  std::map<std::string, HostCounters> host_counters() const;
  uint64_t events() const { return events_.load(std::memory_order_relaxed); }
  // Failed file writes and callbacks that threw; recording goes on regardless.
  uint64_t failures() const { return failures_.load(std::memory_order_relaxed); }

 private:
  AuditLog() = default;
  void deliver(const AuditEvent& event);
  AuditCallback callback_;
  SecretSet redact_;
  UniqueFd file_;
  std::mutex callback_mu_;
  mutable std::mutex counters_mu_;
  std::map<std::string, HostCounters> counters_;
  std::atomic<uint64_t> events_{0};
  std::atomic<uint64_t> failures_{0};
};

}  // namespace airlock::proxy
