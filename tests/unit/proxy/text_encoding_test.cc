#include <doctest/doctest.h>

#include "proxy/text_encoding.h"

using namespace airlock::proxy::textenc;

TEST_CASE("base64 matches the RFC 4648 test vectors, both ways") {
  const char* vectors[][2] = {{"", ""},
                              {"f", "Zg=="},
                              {"fo", "Zm8="},
                              {"foo", "Zm9v"},
                              {"foob", "Zm9vYg=="},
                              {"fooba", "Zm9vYmE="},
                              {"foobar", "Zm9vYmFy"}};
  for (auto& v : vectors) {
    CHECK(base64_encode(v[0]) == v[1]);
    CHECK(base64_decode_lenient(v[1]) == v[0]);
    if (*v[0]) {
      auto strict = base64_decode_strict(v[1]);
      REQUIRE(strict.has_value());
      CHECK(*strict == v[0]);
    }
  }
  CHECK(base64_encode("\xfb\xff", kB64Std) == "+/8=");
  CHECK(base64_encode("\xfb\xff", kB64Url, false) == "-_8");
  CHECK(base64_decode_lenient("-_8") == "\xfb\xff");
  CHECK(base64_decode_lenient("Zm9v!garbage") == "foo");  // stops at the first non-alphabet byte
  for (const char* bad : {"", "Z", "Zm9v!", "-_8=", "Zm 9v", "=", "Zm9vY"})
    CHECK_MESSAGE(!base64_decode_strict(bad).has_value(), bad);
  CHECK(base64_decode_strict("Zm9vYg").value() == "foob");  // padding optional
}

TEST_CASE("percent decoding maps decoded bytes back to the source") {
  Decoded d = percent_decode_mapped("a%41b%4x%%62c%");
  CHECK(d.text == "aAb%4x%bc%");
  REQUIRE(d.origin.size() == d.text.size() + 1);
  CHECK(d.origin[0] == 0);  // a
  CHECK(d.origin[1] == 1);  // %41
  CHECK(d.origin[2] == 4);  // b
  CHECK(d.origin[3] == 5);  // '%' of an invalid escape stays literal
  CHECK(d.origin[7] == 9);  // %62
  CHECK(d.origin.back() == 14);
  CHECK(percent_decode("%2541") == "%41");  // one level only
  CHECK(percent_encode("a b/~", is_unreserved) == "a%20b%2F~");
  CHECK(percent_encode("a b/~", is_unreserved, false) == "a%20b%2f~");
  CHECK(percent_encode("/p?q=a b#", allowed_in_target) == "/p?q=a%20b%23");
}

TEST_CASE("JSON escapes and line breaks") {
  CHECK(json_unescape("\\u0041\\u0062\\/x\\u20AC\\u00") == "Ab/x?\\u00");
  CHECK(json_escape("a\"b\\c/d\te", false) == "a\\\"b\\\\c/d\\te");
  CHECK(json_escape("a/b", true) == "a\\/b");
  std::string out;
  CHECK(!remove_line_breaks("no breaks", &out));
  CHECK(remove_line_breaks("ab\r\ncd\nef\rg\n", &out));
  CHECK(out == "abcdefg");
  CHECK(remove_line_breaks("\n", &out));
  CHECK(out.empty());
  CHECK(to_lower("AbC-Ü") == "abc-Ü");
  CHECK(hex_value('f') == 15);
  CHECK(hex_value('G') == -1);
}
