#include "airlock/status.hpp"

#include <fmt/format.h>

namespace airlock {

const char* errc_name(Errc e) noexcept {
  switch (e) {
    case Errc::ok: return "ok";
    case Errc::invalid_argument: return "invalid argument";
    case Errc::not_found: return "not found";
    case Errc::permission_denied: return "permission denied";
    case Errc::unavailable: return "unavailable";
    case Errc::io: return "I/O error";
    case Errc::timeout: return "timeout";
    case Errc::closed: return "closed";
    case Errc::protocol: return "protocol error";
    case Errc::resource_exhausted: return "resource exhausted";
    case Errc::denied: return "denied";
    case Errc::bad_image: return "bad image";
    case Errc::internal: return "internal error";
    case Errc::cancelled: return "cancelled";
  }
  return "unknown error";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return fmt::format("{}: {}", errc_name(code_), message_);
}

Status& Status::prefix(const std::string& context) {
  if (!ok()) message_ = context + ": " + message_;
  return *this;
}

}  // namespace airlock
