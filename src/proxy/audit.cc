#include "proxy/audit.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include <fmt/format.h>

namespace airlock::proxy {
namespace {

// Length of the valid UTF-8 sequence at s[i], or 0 if there is none (overlong forms,
// surrogates and code points above U+10FFFF are invalid).
size_t utf8_sequence(std::string_view s, size_t i) {
  unsigned char c = s[i];
  size_t len;
  uint32_t cp;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    cp = c & 0x1f;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    cp = c & 0x0f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    unsigned char cc = s[i + k];
    if ((cc & 0xc0) != 0x80) return 0;
    cp = cp << 6 | (cc & 0x3f);
  }
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return 0;
  return len;
}

void append_quoted(std::string* out, std::string_view s) {
  out->push_back('"');
  for (size_t i = 0; i < s.size();) {
    unsigned char c = s[i];
    if (c < 0x80) {
      switch (c) {
        case '"':
          out->append("\\\"");
          break;
        case '\\':
          out->append("\\\\");
          break;
        case '\n':
          out->append("\\n");
          break;
        case '\r':
          out->append("\\r");
          break;
        case '\t':
          out->append("\\t");
          break;
        default:
          // Controls (and DEL, which some terminals act on) as \u00XX.
          if (c < 0x20 || c == 0x7f)
            out->append(fmt::format("\\u{:04x}", c));
          else
            out->push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    size_t len = utf8_sequence(s, i);
    if (len == 0) {
      out->append("\\ufffd");
      ++i;
      continue;
    }
    // U+2028/U+2029 break JavaScript consumers of JSON lines; escape them.
    if (len == 3 && c == 0xe2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
        (static_cast<unsigned char>(s[i + 2]) == 0xa8 ||
         static_cast<unsigned char>(s[i + 2]) == 0xa9)) {
      out->append(static_cast<unsigned char>(s[i + 2]) == 0xa8 ? "\\u2028" : "\\u2029");
    } else {
      out->append(s.substr(i, len));
    }
    i += len;
  }
  out->push_back('"');
}

std::string format_time(std::chrono::system_clock::time_point t) {
  auto us = std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(us / 1000000);
  long frac = static_cast<long>(us % 1000000);
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  struct tm tm;
  if (!gmtime_r(&secs, &tm)) return "1970-01-01T00:00:00.000000Z";
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z", tm.tm_year + 1900, tm.tm_mon + 1,
                     tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
}

}  // namespace

const char* decision_name(AuditEvent::Decision d) {
  switch (d) {
    case AuditEvent::Decision::allowed:
      return "allowed";
    case AuditEvent::Decision::denied:
      return "denied";
    case AuditEvent::Decision::error:
      return "error";
  }
  return "error";
}

std::string json_quote(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() + 2);
  append_quoted(&out, bytes);
  return out;
}

std::string audit_to_json(const AuditEvent& e) {
  std::string out;
  out.reserve(256 + e.path.size());
  auto key = [&](const char* k) {
    out.append(out.size() > 1 ? ",\"" : "\"").append(k).append("\":");
  };
  auto str = [&](const char* k, std::string_view v) {
    key(k);
    append_quoted(&out, v);
  };
  auto num = [&](const char* k, auto v) {
    key(k);
    out.append(fmt::format("{}", v));
  };
  out.push_back('{');
  str("time", format_time(e.time));
  num("connection_id", e.connection_id);
  str("client", e.client);
  str("method", e.method);
  str("scheme", e.scheme);
  str("host", e.host);
  num("port", e.port);
  str("path", e.path);
  num("status", e.status);
  num("bytes_up", e.bytes_up);
  num("bytes_down", e.bytes_down);
  num("duration_us", static_cast<int64_t>(e.duration.count()));
  str("decision", decision_name(e.decision));
  str("reason", e.reason);
  key("secrets_substituted");
  out.push_back('[');
  for (size_t i = 0; i < e.secrets_substituted.size(); ++i) {
    if (i) out.push_back(',');
    append_quoted(&out, e.secrets_substituted[i]);
  }
  out.push_back(']');
  key("exfiltration_attempt");
  out.append(e.exfiltration_attempt ? "true" : "false");
  out.push_back('}');
  return out;
}

Result<std::unique_ptr<AuditLog>> AuditLog::create(AuditCallback callback,
                                                   const std::string& jsonl_path,
                                                   SecretSet redact) {
  std::unique_ptr<AuditLog> log(new AuditLog());
  log->callback_ = std::move(callback);
  log->redact_ = std::move(redact);
  if (!jsonl_path.empty()) {
    int fd = open(jsonl_path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0) return errno_status(fmt::format("opening audit log {}", jsonl_path));
    log->file_.reset(fd);
  }
  return log;
}

void AuditLog::record(const AuditEvent& event) noexcept {
  events_.fetch_add(1, std::memory_order_relaxed);
  try {
    if (redact_.empty()) {
      deliver(event);
    } else {
      AuditEvent copy = event;
      for (std::string* field :
           {&copy.client, &copy.method, &copy.scheme, &copy.host, &copy.path, &copy.reason})
        *field = redact_.redact(*field);
      deliver(copy);
    }
  } catch (...) {
    failures_.fetch_add(1, std::memory_order_relaxed);
  }
}

void AuditLog::deliver(const AuditEvent& event) {
  {
    std::lock_guard<std::mutex> lock(counters_mu_);
    // Denied names are guest-chosen: bound the map, fold the rest into one bucket.
    auto it = counters_.find(event.host);
    if (it == counters_.end())
      it = counters_.size() < kMaxHosts ? counters_.emplace(event.host, HostCounters{}).first
                                        : counters_.emplace(kOtherHosts, HostCounters{}).first;
    HostCounters& c = it->second;
    ++c.requests;
    if (event.decision == AuditEvent::Decision::denied) ++c.denied;
    if (event.decision == AuditEvent::Decision::error) ++c.errors;
    c.bytes_up += event.bytes_up;
    c.bytes_down += event.bytes_down;
  }
  if (file_.valid()) {
    std::string line = audit_to_json(event);
    line.push_back('\n');
    // One write(2) per line with O_APPEND keeps lines whole between writers; finish a short
    // write (rare on regular files) in a loop.
    size_t off = 0;
    while (off < line.size()) {
      ssize_t n = ::write(file_.get(), line.data() + off, line.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        failures_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      off += static_cast<size_t>(n);
    }
  }
  if (callback_) {
    std::lock_guard<std::mutex> lock(callback_mu_);
    callback_(event);
  }
}

std::map<std::string, uint64_t> AuditLog::requests_per_host() const {
  std::map<std::string, uint64_t> out;
  std::lock_guard<std::mutex> lock(counters_mu_);
  for (const auto& [host, c] : counters_) out[host] = c.requests;
  return out;
}

std::map<std::string, HostCounters> AuditLog::host_counters() const {
  std::lock_guard<std::mutex> lock(counters_mu_);
  return counters_;
}

}  // namespace airlock::proxy
