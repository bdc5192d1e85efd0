// Lifetime (src/sandbox/lifecycle.h): timeouts, extensions and the max_lifetime cap, on a clock
// the test moves (no sleeping).
#include <doctest/doctest.h>

#include "sandbox/lifecycle.h"

using namespace airlock;
using namespace airlock::sandbox;
using namespace std::chrono_literals;
using Clock = Lifetime::Clock;

TEST_CASE("lifetime: options are checked") {
  CHECK(Lifetime::validate(0ms, 0ms).ok());
  CHECK(Lifetime::validate(1000ms, 2000ms).ok());
  CHECK(Lifetime::validate(-1ms, 0ms).code() == Errc::invalid_argument);
  CHECK(Lifetime::validate(0ms, -5ms).code() == Errc::invalid_argument);
  Status st = Lifetime::validate(3000ms, 2000ms);
  CHECK(st.code() == Errc::invalid_argument);
  CHECK(st.message().find("max_lifetime") != std::string::npos);
}

TEST_CASE("lifetime: no timeout never expires and a timeout expires with a clear status") {
  auto t0 = Clock::now();
  Lifetime none;
  none.start(0ms, 0ms, t0);
  CHECK(none.expired(t0 + 1000h).ok());
  CHECK_FALSE(none.remaining(t0).has_value());

  Lifetime l;
  l.start(1000ms, 0ms, t0);
  CHECK(l.expired(t0 + 999ms).ok());
  CHECK(l.remaining(t0 + 400ms) == 600ms);
  Status st = l.expired(t0 + 1000ms);
  CHECK(st.code() == Errc::timeout);
  CHECK(st.message() == "sandbox timed out after 1000 ms and was killed");
}

TEST_CASE("lifetime: extend and set_timeout move the deadline and max_lifetime caps them") {
  auto t0 = Clock::now();
  Lifetime l;
  l.start(1000ms, 5000ms, t0);
  REQUIRE(l.extend(2000ms).ok());
  CHECK(l.expired(t0 + 2999ms).ok());
  CHECK(l.expired(t0 + 3000ms).code() == Errc::timeout);
  CHECK(l.expired(t0 + 3000ms).message().find("3000 ms") != std::string::npos);
  // 3000 + 2001 > 5000: refused, deadline unchanged.
  Status st = l.extend(2001ms);
  CHECK(st.code() == Errc::resource_exhausted);
  CHECK(st.message().find("max_lifetime") != std::string::npos);
  CHECK(l.remaining(t0) == 3000ms);
  CHECK(l.extend(2000ms).ok());  // exactly up to the cap is allowed
  CHECK(l.extend(0ms).code() == Errc::invalid_argument);
  // set_timeout counts from now.
  CHECK(l.set_timeout(1000ms, t0 + 3500ms).ok());
  CHECK(l.remaining(t0 + 3500ms) == 1000ms);
  CHECK(l.set_timeout(2000ms, t0 + 3500ms).code() == Errc::resource_exhausted);
  // Clearing the timeout leaves the hard cap.
  CHECK(l.set_timeout(0ms, t0 + 3500ms).ok());
  CHECK(l.remaining(t0 + 3500ms) == 1500ms);
  CHECK(l.extend(10ms).code() == Errc::invalid_argument);  // nothing to extend
  Status end = l.expired(t0 + 5000ms);
  CHECK(end.code() == Errc::timeout);
  CHECK(end.message().find("max_lifetime of 5000 ms") != std::string::npos);
}
