#include "proxy/text_encoding.h"

#include <string.h>

namespace airlock::proxy::textenc {

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// Characters that may stand unencoded in a request-target (path or query).
bool allowed_in_target(unsigned char c) {
  if (is_unreserved(c)) return true;
  return std::string_view("!$&'()*+,;=:@/?").find(static_cast<char>(c)) != std::string_view::npos;
}

std::string percent_encode(std::string_view s, bool (*keep)(unsigned char), bool upper) {
  std::string out;
  out.reserve(s.size() * 3);
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  for (unsigned char c : s) {
    if (keep(c)) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

std::string base64_encode(std::string_view in, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v =
        uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  size_t rest = in.size() - i;
  if (rest) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    if (rest == 2) v |= uint32_t(uint8_t(in[i + 1])) << 8;
    out += alphabet[v >> 18];
    out += alphabet[(v >> 12) & 63];
    if (rest == 2) out += alphabet[(v >> 6) & 63];
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+' || c == '-') return 62;
  if (c == '/' || c == '_') return 63;
  return -1;
}

// Lenient decoding (either alphabet, padding optional, stops at the first non-alphabet
// character): for detection only.
std::string base64_decode_lenient(std::string_view in) {
  std::string out;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = b64_value(c);
    if (v < 0) break;
    acc = (acc << 6 | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// Strict standard base64 for Basic credentials: whole input, padding optional but correct.
std::optional<std::string> base64_decode_strict(std::string_view in) {
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.empty() || in.size() % 4 == 1) return std::nullopt;
  for (char c : in)
    if (b64_value(c) < 0 || c == '-' || c == '_') return std::nullopt;
  return base64_decode_lenient(in);
}

Decoded percent_decode_mapped(std::string_view s) {
  Decoded d;
  d.text.reserve(s.size());
  d.origin.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    d.origin.push_back(static_cast<uint32_t>(i));
    if (s[i] == '%' && i + 2 < s.size() && is_hex(s[i + 1]) && is_hex(s[i + 2])) {
      d.text += static_cast<char>(hex_value(s[i + 1]) << 4 | hex_value(s[i + 2]));
      i += 3;
    } else {
      d.text += s[i++];
    }
  }
  d.origin.push_back(static_cast<uint32_t>(s.size()));
  return d;
}

std::string percent_decode(std::string_view s) {
  return percent_decode_mapped(s).text;
}

// "\u0041" and "\/" as JSON writes them.
std::string json_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    if (s[i] == '\\' && i + 5 < s.size() && s[i + 1] == 'u' && is_hex(s[i + 2]) &&
        is_hex(s[i + 3]) && is_hex(s[i + 4]) && is_hex(s[i + 5])) {
      unsigned v = hex_value(s[i + 2]) << 12 | hex_value(s[i + 3]) << 8 | hex_value(s[i + 4]) << 4 |
                   hex_value(s[i + 5]);
      out += v < 0x80 ? static_cast<char>(v) : '?';
      i += 6;
    } else if (s[i] == '\\' && i + 1 < s.size() && s[i + 1] == '/') {
      out += '/';
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// Copies `text` without CR and LF into *out (base64 is often wrapped); false if it has none.
bool remove_line_breaks(std::string_view text, std::string* out) {
  const char* p = text.data();
  const char* end = p + text.size();
  // Next CR and next LF, each searched again only once passed (one pass over the text).
  auto find = [end](const char* from, char c) {
    const char* f = static_cast<const char*>(memchr(from, c, end - from));
    return f ? f : end;
  };
  const char* nl = find(p, '\n');
  const char* cr = find(p, '\r');
  if (nl == end && cr == end) return false;
  out->clear();
  out->reserve(text.size());
  while (p < end) {
    if (nl < p) nl = find(p, '\n');
    if (cr < p) cr = find(p, '\r');
    const char* brk = nl < cr ? nl : cr;
    out->append(p, brk - p);
    p = brk + (brk < end ? 1 : 0);
  }
  return true;
}

std::string json_escape(std::string_view s, bool escape_slash) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    if (c == '"' || c == '\\' || (escape_slash && c == '/')) out += '\\';
    if (c == '\t') {
      out += "\\t";
      continue;
    }
    out += c;
  }
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

}  // namespace airlock::proxy::textenc
