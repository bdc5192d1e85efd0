// A secret value (an API key). It cannot be printed or formatted, compares in constant time,
// and its memory is wiped when it is destroyed. Only the egress proxy reads the bytes, to put
// them into requests bound for the secret's hosts. Thread-safety: a value type.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace airlock {

class Secret {
 public:
  Secret() = default;
  explicit Secret(std::string_view value) : value_(value) {}
  Secret(const Secret& o) : value_(o.value_) {}
  Secret(Secret&& o) noexcept : value_(std::move(o.value_)) { o.wipe(); }
  Secret& operator=(const Secret& o) {
    if (this != &o) {
      wipe();
      value_ = o.value_;
    }
    return *this;
  }
  Secret& operator=(Secret&& o) noexcept {
    if (this != &o) {
      wipe();
      value_ = std::move(o.value_);
      o.wipe();
    }
    return *this;
  }
  ~Secret() { wipe(); }

  // The only way to the bytes; grep for it to audit every use.
  std::string_view reveal() const noexcept { return value_; }
  size_t size() const noexcept { return value_.size(); }
  bool empty() const noexcept { return value_.empty(); }
  bool equals(std::string_view other) const noexcept;  // constant time in the secret's length

 private:
  void wipe() noexcept;
  std::string value_;
};

// Wipes a buffer so the compiler cannot elide it.
void secure_wipe(void* p, size_t n) noexcept;

}  // namespace airlock
