#include "sandbox/lifecycle.h"

#include <fmt/format.h>

namespace airlock::sandbox {

namespace {

using std::chrono::duration_cast;

std::string ms(Millis d) {
  return fmt::format("{} ms", d.count());
}

}  // namespace

Status Lifetime::validate(Millis timeout, Millis max_lifetime) {
  if (timeout.count() < 0) return Status(Errc::invalid_argument, "timeout must not be negative");
  if (max_lifetime.count() < 0)
    return Status(Errc::invalid_argument, "max_lifetime must not be negative");
  if (max_lifetime.count() > 0 && timeout > max_lifetime)
    return Status(Errc::invalid_argument, fmt::format("timeout of {} is above max_lifetime of {}",
                                                      ms(timeout), ms(max_lifetime)));
  return ok_status();
}

void Lifetime::start(Millis timeout, Millis max_lifetime, Clock::time_point now) {
  std::lock_guard lock(mutex_);
  started_ = true;
  started_at_ = now;
  max_lifetime_ = max_lifetime;
  timeout_total_ = timeout;
  if (timeout.count() > 0) deadline_ = now + timeout;
}

std::optional<Lifetime::Clock::time_point> Lifetime::hard_end() const {
  if (!started_ || max_lifetime_.count() <= 0) return std::nullopt;
  return started_at_ + max_lifetime_;
}

Status Lifetime::set_timeout(Millis timeout, Clock::time_point now) {
  if (timeout.count() < 0) return Status(Errc::invalid_argument, "timeout must not be negative");
  std::lock_guard lock(mutex_);
  if (timeout.count() == 0) {
    deadline_.reset();
    timeout_total_ = Millis(0);
    return ok_status();
  }
  auto end = hard_end();
  if (end && now + timeout > *end)
    return Status(
        Errc::resource_exhausted,
        fmt::format("a timeout of {} would pass the sandbox's max_lifetime of {} ({} left)",
                    ms(timeout), ms(max_lifetime_),
                    ms(std::max(Millis(0), duration_cast<Millis>(*end - now)))));
  deadline_ = now + timeout;
  timeout_total_ = duration_cast<Millis>(*deadline_ - started_at_);
  return ok_status();
}

Status Lifetime::extend(Millis more) {
  if (more.count() <= 0) return Status(Errc::invalid_argument, "extend needs a positive duration");
  std::lock_guard lock(mutex_);
  if (!deadline_)
    return Status(Errc::invalid_argument, "the sandbox has no timeout to extend: use set_timeout");
  auto end = hard_end();
  if (end && *deadline_ + more > *end)
    return Status(Errc::resource_exhausted,
                  fmt::format("extending by {} would pass the sandbox's max_lifetime of {} "
                              "(at most {} more allowed)",
                              ms(more), ms(max_lifetime_),
                              ms(std::max(Millis(0), duration_cast<Millis>(*end - *deadline_)))));
  *deadline_ += more;
  timeout_total_ += more;
  return ok_status();
}

std::optional<Millis> Lifetime::remaining(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  std::optional<Clock::time_point> end = deadline_;
  auto hard = hard_end();
  if (hard && (!end || *hard < *end)) end = hard;
  if (!end) return std::nullopt;
  return std::max(Millis(0), duration_cast<Millis>(*end - now));
}

Status Lifetime::expired(Clock::time_point now) const {
  std::lock_guard lock(mutex_);
  if (!started_) return ok_status();
  auto hard = hard_end();
  if (hard && now >= *hard)
    return Status(
        Errc::timeout,
        fmt::format("sandbox reached its max_lifetime of {} and was killed", ms(max_lifetime_)));
  if (deadline_ && now >= *deadline_)
    return Status(Errc::timeout,
                  fmt::format("sandbox timed out after {} and was killed", ms(timeout_total_)));
  return ok_status();
}

}  // namespace airlock::sandbox
