// A sandbox's lifetime budget: the timeout (a deadline that set_timeout() moves and extend()
// pushes back) and the hard max_lifetime no change may pass. Both count from start(), the moment
// the sandbox became ready. The sandbox's monitor thread asks expired() and, once it answers,
// ends the sandbox with that status.
//
// Pure bookkeeping on a steady clock (time is a parameter, so tests need no sleeps).
// Threads: every method may be called from any thread.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>

#include "airlock/sandbox.hpp"
#include "airlock/status.hpp"

namespace airlock::sandbox {

class Lifetime {
 public:
  using Clock = std::chrono::steady_clock;

  // Checks the options (negative values are invalid_argument; so is a timeout above
  // max_lifetime). Zero means "none" for both.
  static Status validate(Millis timeout, Millis max_lifetime);

  // Starts counting at `now` with the checked options.
  void start(Millis timeout, Millis max_lifetime, Clock::time_point now);

  // The deadline becomes now + timeout (zero: no timeout, max_lifetime still applies).
  // Errc::resource_exhausted when it would pass max_lifetime; invalid_argument if negative.
  Status set_timeout(Millis timeout, Clock::time_point now);
  // Pushes the current deadline back by `more`. Errc::invalid_argument without a timeout (use
  // set_timeout) or for a non-positive amount; Errc::resource_exhausted past max_lifetime.
  Status extend(Millis more);

  // Time until the sandbox is ended (the earlier of deadline and max lifetime); none if neither.
  std::optional<Millis> remaining(Clock::time_point now) const;
  // Non-ok (Errc::timeout, with why) once the deadline or the max lifetime has passed.
  Status expired(Clock::time_point now) const;

 private:
  std::optional<Clock::time_point> hard_end() const;

  mutable std::mutex mutex_;
  bool started_ = false;
  Clock::time_point started_at_;
  std::optional<Clock::time_point> deadline_;
  Millis timeout_total_{0};  // the timeout as set plus extensions (for the message)
  Millis max_lifetime_{0};
};

}  // namespace airlock::sandbox
