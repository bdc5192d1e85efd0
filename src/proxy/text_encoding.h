// The text encodings the secret code must see through or produce: percent-encoding (with a map
// back to the source), base64 (both alphabets), JSON string escapes, ASCII case. Pure functions
// on bytes; any thread may call them. In their own namespace so their short names cannot clash
// with other proxy helpers.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::proxy::textenc {

inline constexpr char kB64Std[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
inline constexpr char kB64Url[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

char lower(char c);
std::string to_lower(std::string_view s);
bool is_hex(char c);
int hex_value(char c);  // -1 if not a hex digit

// RFC 3986 unreserved: ALPHA DIGIT - . _ ~
bool is_unreserved(unsigned char c);
// Characters that may stand unencoded in a request-target (path or query).
bool allowed_in_target(unsigned char c);
// %XX for every byte `keep` rejects.
std::string percent_encode(std::string_view s, bool (*keep)(unsigned char), bool upper = true);

// Percent-decoding that remembers where each decoded byte came from, so a match in the decoded
// text maps back to a span of the source. Invalid escapes stay literal.
struct Decoded {
  std::string text;
  std::vector<uint32_t> origin;  // origin[i]: source offset of decoded byte i; one extra at end
};
Decoded percent_decode_mapped(std::string_view s);
std::string percent_decode(std::string_view s);

std::string base64_encode(std::string_view in, const char* alphabet = kB64Std, bool pad = true);
int b64_value(char c);  // either alphabet; -1 otherwise
// For detection: either alphabet, padding optional, stops at the first other character.
std::string base64_decode_lenient(std::string_view in);
// For Basic credentials: the whole input in the standard alphabet, padding optional.
std::optional<std::string> base64_decode_strict(std::string_view in);

// "\u0041" (ASCII only; others become '?') and "\/" as JSON writes them.
std::string json_unescape(std::string_view s);
// A JSON string body: quotes, backslashes, tabs escaped; '/' as "\/" when asked.
std::string json_escape(std::string_view s, bool escape_slash);

// Copies `text` without CR and LF into *out (base64 is often wrapped); false if it has none.
bool remove_line_breaks(std::string_view text, std::string* out);

}  // namespace airlock::proxy::textenc
