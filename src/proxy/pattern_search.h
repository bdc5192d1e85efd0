// Multi-pattern substring search (Wu-Manber style: a shift table over 3-byte blocks lets the
// scan skip most of the text when every pattern is long, as secret values and placeholder
// encodings are). Used by secrets.cc for redaction of response bodies and for the placeholder
// tripwire, which run over every byte of a transfer. Patterns are kept in Secret storage (they
// may be secret values) and wiped on destruction. Immutable after construction: any thread may
// call find() concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "base/secret.h"

namespace airlock::proxy {

class PatternSearch {
 public:
  PatternSearch() = default;
  // Empty patterns are ignored. fold_case: ASCII letters match in either case.
  explicit PatternSearch(const std::vector<std::string_view>& patterns, bool fold_case = false);

  struct Hit {
    size_t pos;    // where the match starts in the text
    size_t index;  // which pattern (the longest one when several start at pos)
  };
  // The leftmost match starting at or after `from` (then the longest at that position).
  std::optional<Hit> find(std::string_view text, size_t from = 0) const;
  // Whether some pattern starts with text[pos..] but is longer than what remains: the stream
  // may still be inside a match there.
  bool proper_prefix_at(std::string_view text, size_t pos) const;

  size_t size() const { return patterns_.size(); }
  bool empty() const { return patterns_.empty(); }
  size_t pattern_length(size_t i) const { return patterns_[i].size(); }
  size_t min_length() const { return min_len_; }
  size_t max_length() const { return max_len_; }

 private:
  static constexpr size_t kBlock = 3;
  static constexpr size_t kTableBits = 12;

  uint8_t byte(char c) const;
  static uint32_t hash(uint8_t a, uint8_t b, uint8_t c);
  bool equal_at(std::string_view text, size_t pos, size_t index) const;
  std::optional<Hit> find_naive(std::string_view text, size_t from) const;

  std::vector<Secret> patterns_;  // folded to lowercase when fold_case_
  bool fold_case_ = false;
  size_t min_len_ = 0;
  size_t max_len_ = 0;
  std::vector<uint8_t> shift_;                  // by block hash
  std::vector<std::vector<uint16_t>> buckets_;  // zero-shift hash -> patterns ending there
  bool first_byte_[256] = {};
};

}  // namespace airlock::proxy
