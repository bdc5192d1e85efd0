#include "proxy/pattern_search.h"

#include <algorithm>
#include <string>

namespace airlock::proxy {

uint8_t PatternSearch::byte(char c) const {
  auto b = static_cast<uint8_t>(c);
  return (fold_case_ && b >= 'A' && b <= 'Z') ? static_cast<uint8_t>(b + 32) : b;
}

uint32_t PatternSearch::hash(uint8_t a, uint8_t b, uint8_t c) {
  uint32_t v = uint32_t{a} << 16 | uint32_t{b} << 8 | c;
  return (v * 2654435761u) >> (32 - kTableBits);
}

PatternSearch::PatternSearch(const std::vector<std::string_view>& patterns, bool fold_case)
    : fold_case_(fold_case) {
  for (std::string_view p : patterns) {
    if (p.empty()) continue;
    std::string folded(p);
    for (char& c : folded) c = static_cast<char>(byte(c));
    patterns_.emplace_back(folded);
    secure_wipe(folded.data(), folded.size());
  }
  if (patterns_.empty() || patterns_.size() > 0xffff) {
    patterns_.clear();
    return;
  }
  min_len_ = patterns_[0].size();
  for (const Secret& p : patterns_) {
    min_len_ = std::min(min_len_, p.size());
    max_len_ = std::max(max_len_, p.size());
    first_byte_[static_cast<uint8_t>(p.reveal()[0])] = true;
  }
  if (min_len_ < kBlock) return;  // find_naive
  size_t default_shift = std::min<size_t>(min_len_ - kBlock + 1, 255);
  shift_.assign(size_t{1} << kTableBits, static_cast<uint8_t>(default_shift));
  buckets_.resize(size_t{1} << kTableBits);
  for (size_t i = 0; i < patterns_.size(); ++i) {
    std::string_view p = patterns_[i].reveal();
    // Blocks of the first min_len_ bytes: a block ending at j allows a shift of min_len_-1-j.
    for (size_t j = kBlock - 1; j < min_len_; ++j) {
      uint32_t h = hash(p[j - 2], p[j - 1], p[j]);
      size_t s = min_len_ - 1 - j;
      if (s < shift_[h]) shift_[h] = static_cast<uint8_t>(s);
    }
    uint32_t h = hash(p[min_len_ - 3], p[min_len_ - 2], p[min_len_ - 1]);
    buckets_[h].push_back(static_cast<uint16_t>(i));
  }
}

bool PatternSearch::equal_at(std::string_view text, size_t pos, size_t index) const {
  std::string_view p = patterns_[index].reveal();
  if (pos + p.size() > text.size()) return false;
  if (!fold_case_) return text.compare(pos, p.size(), p) == 0;
  for (size_t k = 0; k < p.size(); ++k)
    if (byte(text[pos + k]) != static_cast<uint8_t>(p[k])) return false;
  return true;
}

std::optional<PatternSearch::Hit> PatternSearch::find_naive(std::string_view text,
                                                            size_t from) const {
  for (size_t pos = from; pos < text.size(); ++pos) {
    if (!first_byte_[byte(text[pos])]) continue;
    std::optional<Hit> best;
    for (size_t i = 0; i < patterns_.size(); ++i)
      if (equal_at(text, pos, i) && (!best || patterns_[i].size() > patterns_[best->index].size()))
        best = Hit{pos, i};
    if (best) return best;
  }
  return std::nullopt;
}

std::optional<PatternSearch::Hit> PatternSearch::find(std::string_view text, size_t from) const {
  if (patterns_.empty() || from >= text.size() || text.size() - from < min_len_)
    return std::nullopt;
  if (shift_.empty()) return find_naive(text, from);
  const size_t m = min_len_;
  size_t end = from + m - 1;  // index of the last byte of the current window
  while (end < text.size()) {
    uint32_t h = hash(byte(text[end - 2]), byte(text[end - 1]), byte(text[end]));
    size_t s = shift_[h];
    if (s) {
      end += s;
      continue;
    }
    size_t start = end + 1 - m;
    std::optional<Hit> best;
    for (uint16_t i : buckets_[h])
      if (equal_at(text, start, i) &&
          (!best || patterns_[i].size() > patterns_[best->index].size()))
        best = Hit{start, i};
    if (best) return best;
    ++end;
  }
  return std::nullopt;
}

bool PatternSearch::proper_prefix_at(std::string_view text, size_t pos) const {
  if (pos >= text.size() || !first_byte_[byte(text[pos])]) return false;
  size_t rest = text.size() - pos;
  for (const Secret& s : patterns_) {
    std::string_view p = s.reveal();
    if (rest >= p.size()) continue;
    size_t k = 0;
    while (k < rest && byte(text[pos + k]) == static_cast<uint8_t>(p[k])) ++k;
    if (k == rest) return true;
  }
  return false;
}

}  // namespace airlock::proxy
