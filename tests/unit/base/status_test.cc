#include <doctest/doctest.h>

#include "airlock/status.hpp"
#include "base/fd.h"
#include "base/secret.h"

using namespace airlock;

TEST_CASE("Result carries a value or an error") {
  Result<int> a = 5;
  CHECK(a.ok());
  CHECK(*a == 5);
  Result<int> b = Status(Errc::timeout, "too slow");
  CHECK(!b.ok());
  CHECK(b.status().code() == Errc::timeout);
  CHECK(b.status().to_string() == "timeout: too slow");
  Result<int> c = Status();  // an ok Status is not a value: becomes internal
  CHECK(c.status().code() == Errc::internal);
}

TEST_CASE("errno maps to codes") {
  CHECK(errno_status(EACCES, "open /dev/kvm").code() == Errc::permission_denied);
  CHECK(errno_status(ENOENT, "x").code() == Errc::not_found);
}

TEST_CASE("Secret compares and wipes") {
  Secret s("sk-123");
  CHECK(s.equals("sk-123"));
  CHECK(!s.equals("sk-124"));
  Secret t = std::move(s);
  CHECK(s.empty());
  CHECK(t.reveal() == "sk-123");
}

