// airlock: errors as values.
//
// Every fallible call in airlock returns a Status or a Result<T>. Nothing the outside world
// controls (a guest, a network peer, a caller's options) is reported by exception or abort.
// Thread-safety: values; copy or move them freely between threads.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace airlock {

// Stable numbering: the C ABI returns the negated value of these codes.
enum class Errc : int {
  ok = 0,
  invalid_argument = 1,   // the caller passed something unusable
  not_found = 2,          // a file, device or object does not exist
  permission_denied = 3,  // the OS refused (no /dev/kvm access, no CAP_NET_ADMIN, ...)
  unavailable = 4,        // a needed facility is missing (no KVM, no kernel cached, ...)
  io = 5,                 // an OS call failed
  timeout = 6,            // a deadline passed
  closed = 7,             // the object was closed or the peer went away
  protocol = 8,           // a peer (guest, client, upstream) broke the protocol
  resource_exhausted = 9, // a bound was hit (memory, connections, buffer)
  denied = 10,            // policy refused (egress, secret binding)
  bad_image = 11,         // a kernel, initramfs or disk image is malformed
  internal = 12,          // an invariant broke: a bug in airlock
  cancelled = 13,         // stopped on request
};

const char* errc_name(Errc e) noexcept;

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() noexcept { return Status(); }

  bool ok() const noexcept { return code_ == Errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  Errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }
  // "timeout: agent did not answer within 5000 ms"
  std::string to_string() const;

  // Adds context in front of the message: "booting kernel: <old message>".
  Status& prefix(const std::string& context);

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

inline Status ok_status() noexcept { return Status(); }

// A value or the Status explaining why there is none. Never holds an ok Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(implicit)
    if (std::get<Status>(v_).ok()) v_ = Status(Errc::internal, "Result built from an ok Status");
  }
  Result(Errc code, std::string message) : Result(Status(code, std::move(message))) {}

  bool ok() const noexcept { return std::holds_alternative<T>(v_); }
  explicit operator bool() const noexcept { return ok(); }

  // Preconditions: ok() for value(), !ok() meaningful for status().
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &std::get<T>(v_); }
  const T* operator->() const { return &std::get<T>(v_); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  Status status() const {
    if (ok()) return Status();
    return std::get<Status>(v_);
  }
  T value_or(T fallback) const& { return ok() ? std::get<T>(v_) : std::move(fallback); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace airlock

// Early-return helpers for code inside airlock.
#define AIRLOCK_CONCAT_INNER(a, b) a##b
#define AIRLOCK_CONCAT(a, b) AIRLOCK_CONCAT_INNER(a, b)

#define AIRLOCK_RETURN_IF_ERROR(expr)            \
  do {                                           \
    ::airlock::Status _airlock_st = (expr);      \
    if (!_airlock_st.ok()) return _airlock_st;   \
  } while (0)

#define AIRLOCK_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()

#define AIRLOCK_ASSIGN_OR_RETURN(lhs, expr) \
  AIRLOCK_ASSIGN_OR_RETURN_IMPL(AIRLOCK_CONCAT(_airlock_res_, __LINE__), lhs, expr)
