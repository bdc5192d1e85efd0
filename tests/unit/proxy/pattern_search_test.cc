#include <doctest/doctest.h>

#include <random>
#include <string>

#include "proxy/pattern_search.h"

using namespace airlock::proxy;

namespace {

// Reference: leftmost, then longest, by brute force.
std::optional<PatternSearch::Hit> reference(const std::vector<std::string>& pats,
                                            std::string_view text, size_t from, bool fold) {
  auto eq = [fold](char a, char b) {
    if (fold) {
      a = static_cast<char>(tolower(static_cast<unsigned char>(a)));
      b = static_cast<char>(tolower(static_cast<unsigned char>(b)));
    }
    return a == b;
  };
  for (size_t pos = from; pos < text.size(); ++pos) {
    std::optional<PatternSearch::Hit> best;
    for (size_t i = 0; i < pats.size(); ++i) {
      const std::string& p = pats[i];
      if (p.empty() || pos + p.size() > text.size()) continue;
      bool ok = true;
      for (size_t k = 0; k < p.size() && ok; ++k) ok = eq(text[pos + k], p[k]);
      if (ok && (!best || p.size() > pats[best->index].size())) best = PatternSearch::Hit{pos, i};
    }
    if (best) return best;
  }
  return std::nullopt;
}

}  // namespace

TEST_CASE("pattern search agrees with brute force on random texts and patterns") {
  std::mt19937 rng(12345);
  for (int round = 0; round < 3000; ++round) {
    // A small alphabet makes partial matches and overlaps frequent.
    const char* alphabet = round % 2 ? "abAB" : "abcdefgh";
    size_t alpha = round % 2 ? 4 : 8;
    std::vector<std::string> pats(1 + rng() % 5);
    for (auto& p : pats) {
      size_t len = 1 + rng() % (round % 3 == 0 ? 3 : 12);
      for (size_t k = 0; k < len; ++k) p += alphabet[rng() % alpha];
    }
    std::string text;
    size_t len = rng() % 200;
    for (size_t k = 0; k < len; ++k) text += alphabet[rng() % alpha];
    bool fold = round % 4 == 1;
    std::vector<std::string_view> views(pats.begin(), pats.end());
    PatternSearch search(views, fold);
    size_t from = text.empty() ? 0 : rng() % (text.size() + 1);
    auto got = search.find(text, from);
    auto want = reference(pats, text, from, fold);
    REQUIRE(got.has_value() == want.has_value());
    if (got) {
      CHECK(got->pos == want->pos);
      // Equal patterns may be listed twice; compare by length, not index.
      CHECK(pats[got->index].size() == pats[want->index].size());
    }
    // proper_prefix_at agrees with its definition.
    for (size_t p = 0; p < text.size(); ++p) {
      bool expect = false;
      for (const auto& pat : pats) {
        size_t rest = text.size() - p;
        if (rest >= pat.size()) continue;
        bool ok = true;
        for (size_t k = 0; k < rest && ok; ++k)
          ok = fold ? tolower(static_cast<unsigned char>(text[p + k])) ==
                          tolower(static_cast<unsigned char>(pat[k]))
                    : text[p + k] == pat[k];
        expect = expect || ok;
      }
      REQUIRE(search.proper_prefix_at(text, p) == expect);
    }
  }
}

TEST_CASE("pattern search: long patterns, case folding, edges") {
  std::string needle = "AIRLOCK_SECRET_PLACEHOLDER_";
  PatternSearch folded({needle}, true);
  std::string text = std::string(10000, 'x') + "airlock_Secret_placeholder_" + "tail";
  auto hit = folded.find(text);
  REQUIRE(hit);
  CHECK(hit->pos == 10000);
  CHECK(!folded.find(text, 10001));
  PatternSearch exact({needle});
  CHECK(!exact.find(text));
  CHECK(exact.find("..." + needle)->pos == 3);
  CHECK(!exact.find(needle.substr(1)));
  CHECK(!exact.find(""));
  CHECK(exact.min_length() == needle.size());
  PatternSearch empty(std::vector<std::string_view>{});
  CHECK(empty.empty());
  CHECK(!empty.find("anything"));
  PatternSearch ignores_empty({"", "ab"});
  CHECK(ignores_empty.size() == 1);
  CHECK(ignores_empty.find("xxab")->pos == 2);
  // All 256 byte values, including NUL, are ordinary bytes.
  std::string bin;
  for (int i = 0; i < 256; ++i) bin += static_cast<char>(i);
  PatternSearch b({std::string_view(bin).substr(250, 6), std::string_view(bin).substr(0, 4)});
  CHECK(b.find(bin)->pos == 0);
  CHECK(b.find(bin, 1)->pos == 250);
}
