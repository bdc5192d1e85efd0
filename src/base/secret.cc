#include "base/secret.h"

#include <string.h>

namespace airlock {

void secure_wipe(void* p, size_t n) noexcept {
  if (p && n) explicit_bzero(p, n);
}

void Secret::wipe() noexcept {
  secure_wipe(value_.data(), value_.capacity());
  value_.clear();
}

bool Secret::equals(std::string_view other) const noexcept {
  if (other.size() != value_.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < value_.size(); ++i)
    diff |= static_cast<unsigned char>(value_[i] ^ other[i]);
  return diff == 0;
}

}  // namespace airlock
