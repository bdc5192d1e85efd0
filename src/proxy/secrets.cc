#include "proxy/secrets.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>

#include <fmt/format.h>

#include "base/secret.h"

namespace airlock::proxy {

namespace {

constexpr size_t kMaxValueBytes = 8 * 1024;
constexpr size_t kMaxSecrets = 256;
// A base64 run shorter than this cannot hold an encoded placeholder (91 bytes -> 122 chars).
constexpr size_t kMinBase64Run = 120;
constexpr int kTripwireDepth = 2;
constexpr size_t kMaxUnknownTracked = 64;
constexpr std::string_view kLowerPrefix = "airlock_secret_placeholder_";
constexpr char kB64Std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

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

std::string percent_encode(std::string_view s, bool (*keep)(unsigned char), bool upper = true) {
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

std::string base64_encode(std::string_view in, const char* alphabet = kB64Std, bool pad = true) {
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

// Percent-decoding that remembers where each decoded byte came from, so a match in the decoded
// text maps back to a span of the original.
struct Decoded {
  std::string text;
  std::vector<uint32_t> origin;  // origin[i] = offset in the source of decoded byte i; +1 end
};

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

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

bool valid_name(std::string_view n) {
  if (n.empty() || n.size() > 128) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_' ||
              (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

void wipe_string(std::string* s) {
  secure_wipe(s->data(), s->size());
  s->clear();
}

void add_unique(std::vector<std::string>* v, const std::string& s) {
  if (std::find(v->begin(), v->end(), s) == v->end()) v->push_back(s);
}

}  // namespace

struct SecretEntry {
  std::string name;
  Secret value;
  std::string placeholder;
  HostPatternSet hosts;
};

struct RedactPattern {
  Secret pattern;           // derived from a value: kept in a Secret so it is wiped
  std::string replacement;  // the placeholder, or an encoding of it
};

struct SecretSetImpl {
  std::vector<SecretEntry> secrets;
  std::unordered_map<std::string, size_t> by_hex;  // lowercase 64-hex -> index
  std::vector<RedactPattern> patterns;
  size_t max_pattern = 0;
  size_t max_value = 0;
  bool first_char[256] = {};

  bool bound(size_t index, const Target& target) const {
    return !target.host.empty() && secrets[index].hosts.matches(target);
  }

  // Calls on_hit(lower_start, index_or_npos, lower_hex) for every well-formed placeholder in
  // `lower` (already lowercased).
  template <class F>
  void find_placeholders(std::string_view lower_text, F&& on_hit) const {
    size_t p = 0;
    while ((p = lower_text.find(kLowerPrefix, p)) != std::string_view::npos) {
      size_t hex_at = p + kLowerPrefix.size();
      if (hex_at + kPlaceholderHexDigits > lower_text.size()) return;
      std::string_view hex = lower_text.substr(hex_at, kPlaceholderHexDigits);
      bool ok = std::all_of(hex.begin(), hex.end(), [](char c) { return is_hex(c); });
      if (!ok) {
        p += 1;
        continue;
      }
      auto it = by_hex.find(std::string(hex));
      on_hit(p, it == by_hex.end() ? std::string::npos : it->second, hex);
      p += kPlaceholderLength;
    }
  }

  struct Tripwire {
    std::vector<size_t> known;             // indexes seen
    std::vector<std::string> unknown_hex;  // distinct, bounded
  };

  // Looks for placeholders in `text` and in its decodings (percent, JSON \u escapes, base64 at
  // every alignment), `depth` levels deep.
  void tripwire(std::string_view text, int depth, Tripwire* out) const {
    std::string lowered = to_lower(text);
    find_placeholders(lowered, [&](size_t, size_t index, std::string_view hex) {
      if (index != std::string::npos) {
        if (std::find(out->known.begin(), out->known.end(), index) == out->known.end())
          out->known.push_back(index);
      } else if (out->unknown_hex.size() < kMaxUnknownTracked) {
        std::string h(hex);
        if (std::find(out->unknown_hex.begin(), out->unknown_hex.end(), h) ==
            out->unknown_hex.end())
          out->unknown_hex.push_back(std::move(h));
      }
    });
    if (depth <= 0) return;
    if (text.find('%') != std::string_view::npos) {
      std::string d = percent_decode(text);
      if (d != text) tripwire(d, depth - 1, out);
    }
    if (text.find("\\u") != std::string_view::npos || text.find("\\/") != std::string_view::npos) {
      std::string d = json_unescape(text);
      if (d != text) tripwire(d, depth - 1, out);
    }
    // Base64 runs (either alphabet), line breaks inside a run skipped (MIME wrapping).
    std::string run;
    auto flush = [&] {
      if (run.size() >= kMinBase64Run) {
        for (size_t align = 0; align < 4; ++align)
          tripwire(base64_decode_lenient(std::string_view(run).substr(align)), depth - 1, out);
      }
      run.clear();
    };
    for (char c : text) {
      if (b64_value(c) >= 0) {
        run += c;
      } else if (c == '\r' || c == '\n') {
        continue;
      } else {
        flush();
      }
    }
    flush();
  }

  // Raw and percent-encoded placeholders of bound secrets replaced; unbound ones reported.
  void substitute_level1(std::string_view text, const Target& target, SubstitutionContext ctx,
                         std::string* out_text, std::vector<size_t>* substituted,
                         std::vector<size_t>* refused) const {
    Decoded d = percent_decode_mapped(text);
    std::string lowered = to_lower(d.text);
    std::string out;
    size_t copied = 0;  // in the source text
    bool changed = false;
    find_placeholders(lowered, [&](size_t start, size_t index, std::string_view) {
      if (index == std::string::npos) return;
      if (!bound(index, target)) {
        if (std::find(refused->begin(), refused->end(), index) == refused->end())
          refused->push_back(index);
        return;
      }
      size_t src_begin = d.origin[start];
      size_t src_end = d.origin[start + kPlaceholderLength];
      bool encoded = src_end - src_begin != kPlaceholderLength;
      std::string_view value = secrets[index].value.reveal();
      out.append(text.substr(copied, src_begin - copied));
      if (encoded)
        out += percent_encode(value, is_unreserved);
      else if (ctx == SubstitutionContext::request_target)
        out += percent_encode(value, allowed_in_target);
      else
        out.append(value);
      copied = src_end;
      changed = true;
      if (std::find(substituted->begin(), substituted->end(), index) == substituted->end())
        substituted->push_back(index);
    });
    if (!changed) {
      out_text->assign(text);
      return;
    }
    out.append(text.substr(copied));
    *out_text = std::move(out);
    wipe_string(&out);
  }
};

namespace {

Status bad_spec(std::string_view name, std::string_view why) {
  // Names are checked to be identifiers before they are ever quoted here.
  return Status(Errc::invalid_argument, fmt::format("secret {}: {}", name, why));
}

Result<std::string> random_hex(size_t bytes) {
  std::vector<uint8_t> buf(bytes);
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = getrandom(buf.data() + got, bytes - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status(Errc::io, "getrandom failed");
    }
    got += static_cast<size_t>(n);
  }
  std::string out;
  for (uint8_t b : buf) out += fmt::format("{:02x}", b);
  secure_wipe(buf.data(), buf.size());
  return out;
}

// The base64 forms of `value` at each of the three byte alignments, as the stretch of whole
// 4-character groups that depends on the value alone (what an echo of Basic credentials or of
// any base64 blob containing the value must contain). The replacement encodes the placeholder
// cycled to the same byte length, so decoders still see valid base64 and read placeholder text.
void add_base64_patterns(std::string_view value, const std::string& placeholder,
                         std::vector<RedactPattern>* out) {
  for (size_t align = 0; align < 3; ++align) {
    size_t first_byte = (3 - align) % 3;  // first value byte that starts a group
    if (value.size() < first_byte) continue;
    size_t whole = (value.size() - first_byte) / 3 * 3;
    if (whole < 9) continue;  // 12 characters at least, so random text never matches
    std::string_view core = value.substr(first_byte, whole);
    std::string filler;
    for (size_t i = 0; i < whole; ++i) filler += placeholder[i % placeholder.size()];
    for (const char* alphabet : {kB64Std, kB64Url}) {
      std::string enc = base64_encode(core, alphabet);
      if (alphabet == kB64Url && enc == base64_encode(core, kB64Std)) {
        wipe_string(&enc);
        continue;
      }
      out->push_back(RedactPattern{Secret(enc), base64_encode(filler, alphabet)});
      wipe_string(&enc);
    }
  }
}

}  // namespace

SecretSet::SecretSet() : impl_(std::make_shared<SecretSetImpl>()) {}

Result<SecretSet> SecretSet::create(const std::vector<SecretSpec>& specs) {
  if (specs.size() > kMaxSecrets)
    return Status(Errc::invalid_argument, fmt::format("more than {} secrets", kMaxSecrets));
  auto impl = std::make_shared<SecretSetImpl>();
  for (size_t i = 0; i < specs.size(); ++i) {
    const SecretSpec& spec = specs[i];
    if (!valid_name(spec.name))
      return Status(Errc::invalid_argument,
                    fmt::format("secret #{}: name must match [A-Za-z_][A-Za-z0-9_]* (at most 128 "
                                "characters)",
                                i + 1));
    for (const SecretEntry& e : impl->secrets)
      if (e.name == spec.name) return bad_spec(spec.name, "defined twice");
    if (spec.value.empty()) return bad_spec(spec.name, "empty value");
    if (spec.value.size() > kMaxValueBytes) return bad_spec(spec.name, "value longer than 8 KiB");
    for (unsigned char c : spec.value)
      if ((c < 0x20 && c != '\t') || c == 0x7f)
        return bad_spec(spec.name, "value contains CR, LF or another control character");
    if (to_lower(spec.value).find(kLowerPrefix) != std::string::npos)
      return bad_spec(spec.name, "value contains a placeholder");
    if (spec.hosts.empty()) return bad_spec(spec.name, "bound to no host");
    auto hosts = HostPatternSet::parse(spec.hosts);
    if (!hosts.ok()) return hosts.status().prefix(fmt::format("secret {}", spec.name));
    AIRLOCK_ASSIGN_OR_RETURN(std::string hex, random_hex(32));
    SecretEntry e;
    e.name = spec.name;
    e.value = Secret(spec.value);
    e.placeholder = std::string(kPlaceholderPrefix) + hex;
    e.hosts = std::move(*hosts);
    impl->by_hex[hex] = impl->secrets.size();
    impl->secrets.push_back(std::move(e));
  }
  if (impl->by_hex.size() != impl->secrets.size())
    return Status(Errc::internal, "placeholder collision");
  for (const SecretEntry& e : impl->secrets) {
    std::string_view v = e.value.reveal();
    impl->max_value = std::max(impl->max_value, v.size());
    impl->patterns.push_back(RedactPattern{Secret(v), e.placeholder});
    std::string up = percent_encode(v, is_unreserved, true);
    std::string low = percent_encode(v, is_unreserved, false);
    if (up != v) impl->patterns.push_back(RedactPattern{Secret(up), e.placeholder});
    if (low != up) impl->patterns.push_back(RedactPattern{Secret(low), e.placeholder});
    wipe_string(&up);
    wipe_string(&low);
    add_base64_patterns(v, e.placeholder, &impl->patterns);
  }
  for (const RedactPattern& p : impl->patterns) {
    impl->max_pattern = std::max(impl->max_pattern, p.pattern.size());
    impl->first_char[static_cast<uint8_t>(p.pattern.reveal()[0])] = true;
  }
  return SecretSet(std::move(impl));
}

bool SecretSet::empty() const {
  return impl_->secrets.empty();
}
size_t SecretSet::size() const {
  return impl_->secrets.size();
}
size_t SecretSet::max_value_length() const {
  return impl_->max_value;
}

std::vector<std::string> SecretSet::names() const {
  std::vector<std::string> out;
  for (const SecretEntry& e : impl_->secrets) out.push_back(e.name);
  return out;
}

std::string SecretSet::placeholder(std::string_view name) const {
  for (const SecretEntry& e : impl_->secrets)
    if (e.name == name) return e.placeholder;
  return "";
}

std::vector<std::pair<std::string, std::string>> SecretSet::env() const {
  std::vector<std::pair<std::string, std::string>> out;
  for (const SecretEntry& e : impl_->secrets) out.emplace_back(e.name, e.placeholder);
  return out;
}

bool SecretSet::bound_to(std::string_view name, const Target& target) const {
  for (size_t i = 0; i < impl_->secrets.size(); ++i)
    if (impl_->secrets[i].name == name) return impl_->bound(i, target);
  return false;
}

Substitution SecretSet::substitute(std::string_view text, std::string_view host, uint16_t port,
                                   SubstitutionContext context) const {
  auto target = parse_target(host, port);
  return substitute(text, target.ok() ? *target : Target{}, context);
}

Substitution SecretSet::substitute(std::string_view text, const Target& target,
                                   SubstitutionContext context) const {
  Substitution result;
  const SecretSetImpl& s = *impl_;
  if (s.secrets.empty()) {
    result.text.assign(text);
    return result;
  }
  std::vector<size_t> substituted, refused;
  std::string working(text);

  // Basic credentials: decode, substitute inside, re-encode.
  if (context == SubstitutionContext::header_value) {
    size_t i = 0;
    while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
    if (text.size() - i > 6 && to_lower(text.substr(i, 5)) == "basic" &&
        (text[i + 5] == ' ' || text[i + 5] == '\t')) {
      size_t tok = i + 5;
      while (tok < text.size() && (text[tok] == ' ' || text[tok] == '\t')) ++tok;
      size_t end = tok;
      while (end < text.size() && text[end] != ' ' && text[end] != '\t') ++end;
      if (auto creds = base64_decode_strict(text.substr(tok, end - tok))) {
        std::string inner;
        std::vector<size_t> inner_sub;
        s.substitute_level1(*creds, target, SubstitutionContext::header_value, &inner, &inner_sub,
                            &refused);
        if (!inner_sub.empty()) {
          std::string enc = base64_encode(inner);
          working = std::string(text.substr(0, tok)) + enc + std::string(text.substr(end));
          wipe_string(&enc);
          for (size_t k : inner_sub)
            if (std::find(substituted.begin(), substituted.end(), k) == substituted.end())
              substituted.push_back(k);
        }
        wipe_string(&inner);
        wipe_string(&*creds);
      }
    }
  }

  std::string out;
  s.substitute_level1(working, target, context, &out, &substituted, &refused);
  wipe_string(&working);

  // The tripwire looks at the text the client sent, in every encoding it knows.
  SecretSetImpl::Tripwire trip;
  s.tripwire(text, kTripwireDepth, &trip);
  for (size_t k : trip.known)
    if (!s.bound(k, target) && std::find(refused.begin(), refused.end(), k) == refused.end())
      refused.push_back(k);
  result.unknown_placeholders = trip.unknown_hex.size();

  if (!refused.empty()) {
    wipe_string(&out);
    result.text.assign(text);
    for (size_t k : refused) result.refused.push_back(s.secrets[k].name);
    return result;
  }
  result.text = std::move(out);
  for (size_t k : substituted) result.substituted.push_back(s.secrets[k].name);
  return result;
}

std::string SecretSet::redact(std::string_view text) const {
  return Redactor(*this).redact(text);
}

// --- PlaceholderScanner ---------------------------------------------------------------------

PlaceholderScanner::PlaceholderScanner(const SecretSet& secrets, Target target)
    : impl_(secrets.shared_impl()), target_(std::move(target)) {}

void PlaceholderScanner::feed(std::string_view chunk) {
  if (impl_->secrets.empty() || chunk.empty()) return;
  window_.append(chunk);
  SecretSetImpl::Tripwire trip;
  impl_->tripwire(window_, kTripwireDepth, &trip);
  for (size_t k : trip.known) {
    add_unique(&found_, impl_->secrets[k].name);
    if (!impl_->bound(k, target_)) add_unique(&refused_, impl_->secrets[k].name);
  }
  for (std::string& h : trip.unknown_hex)
    if (unknown_seen_.size() < kMaxUnknownTracked) add_unique(&unknown_seen_, h);
  unknown_ = unknown_seen_.size();
  if (window_.size() > kTailBytes) window_.erase(0, window_.size() - kTailBytes);
}

// --- BodySubstituter ------------------------------------------------------------------------

BodySubstituter::BodySubstituter(const SecretSet& secrets, Target target)
    : impl_(secrets.shared_impl()), target_(target), scanner_(secrets, std::move(target)) {}

void BodySubstituter::feed(std::string_view chunk, std::string* out) {
  if (impl_->secrets.empty()) {
    out->append(chunk);
    return;
  }
  scanner_.feed(chunk);
  if (held_.empty()) {
    emit(chunk, false, out);
  } else {
    std::string buf = std::move(held_);
    held_.clear();
    buf.append(chunk);
    emit(buf, false, out);
  }
}

void BodySubstituter::finish(std::string* out) {
  std::string buf = std::move(held_);
  held_.clear();
  emit(buf, true, out);
}

void BodySubstituter::emit(std::string_view text, bool final, std::string* out) {
  // Hold back the longest suffix that could still grow into a placeholder.
  size_t hold = text.size();
  if (!final) {
    size_t from = text.size() > kPlaceholderLength - 1 ? text.size() - (kPlaceholderLength - 1) : 0;
    for (size_t p = from; p < text.size(); ++p) {
      if (lower(text[p]) != 'a') continue;
      bool could = true;
      for (size_t k = 0; p + k < text.size() && could; ++k) {
        char c = lower(text[p + k]);
        could = k < kLowerPrefix.size() ? c == kLowerPrefix[k] : is_hex(c);
      }
      if (could) {
        hold = p;
        break;
      }
    }
  }
  std::string_view body = text.substr(0, hold);
  std::string lowered = to_lower(body);
  size_t copied = 0;
  impl_->find_placeholders(lowered, [&](size_t start, size_t index, std::string_view) {
    if (index == std::string::npos || !impl_->bound(index, target_)) return;
    out->append(body.substr(copied, start - copied));
    out->append(impl_->secrets[index].value.reveal());
    copied = start + kPlaceholderLength;
    add_unique(&substituted_, impl_->secrets[index].name);
  });
  out->append(body.substr(copied));
  held_.assign(text.substr(hold));
}

// --- Redactor -------------------------------------------------------------------------------

namespace {

// Leftmost (then longest) complete match of any pattern in text[pos, limit_start) -> start.
struct Match {
  size_t start = std::string::npos;
  size_t pattern = 0;
};

Match next_match(const SecretSetImpl& s, std::string_view text, size_t pos, size_t limit_start,
                 std::vector<size_t>* cache) {
  Match best;
  for (size_t i = 0; i < s.patterns.size(); ++i) {
    size_t& at = (*cache)[i];
    if (at == std::string::npos - 1 || (at != std::string::npos && at < pos))
      at = text.find(s.patterns[i].pattern.reveal(), pos);
    if (at == std::string::npos || at >= limit_start) continue;
    if (at < best.start || (at == best.start &&
                            s.patterns[i].pattern.size() > s.patterns[best.pattern].pattern.size()))
      best = Match{at, i};
  }
  return best;
}

// Earliest p >= from such that text[p..] is a proper prefix of some pattern.
size_t hold_start(const SecretSetImpl& s, std::string_view text, size_t from) {
  size_t lo = text.size() > s.max_pattern - 1 ? text.size() - (s.max_pattern - 1) : 0;
  for (size_t p = std::max(lo, from); p < text.size(); ++p) {
    if (!s.first_char[static_cast<uint8_t>(text[p])]) continue;
    std::string_view tail = text.substr(p);
    for (const RedactPattern& pat : s.patterns) {
      std::string_view v = pat.pattern.reveal();
      if (tail.size() < v.size() && v.substr(0, tail.size()) == tail) return p;
    }
  }
  return text.size();
}

void redact_into(const SecretSetImpl& s, std::string_view text, bool final, std::string* out,
                 std::string* held, uint64_t* count) {
  std::vector<size_t> cache(s.patterns.size(), std::string::npos - 1);  // npos-1: not searched
  size_t pos = 0;
  size_t hold = final ? text.size() : hold_start(s, text, 0);
  while (true) {
    Match m = next_match(s, text, pos, hold, &cache);
    if (m.start == std::string::npos) break;
    out->append(text.substr(pos, m.start - pos));
    out->append(s.patterns[m.pattern].replacement);
    ++*count;
    pos = m.start + s.patterns[m.pattern].pattern.size();
    if (!final && pos > hold) hold = hold_start(s, text, pos);
  }
  size_t emit_end = std::max(pos, hold);
  out->append(text.substr(pos, emit_end - pos));
  if (held) held->assign(text.substr(emit_end));
}

}  // namespace

Redactor::Redactor(const SecretSet& secrets) : impl_(secrets.shared_impl()) {}

Redactor::~Redactor() {
  wipe_string(&held_);
}

void Redactor::feed(std::string_view chunk, std::string* out) {
  if (impl_->patterns.empty()) {
    out->append(chunk);
    return;
  }
  if (held_.empty()) {
    redact_into(*impl_, chunk, false, out, &held_, &redactions_);
    return;
  }
  std::string buf = std::move(held_);
  held_.clear();
  buf.append(chunk);
  redact_into(*impl_, buf, false, out, &held_, &redactions_);
  wipe_string(&buf);
}

void Redactor::finish(std::string* out) {
  if (held_.empty()) return;
  std::string buf = std::move(held_);
  held_.clear();
  redact_into(*impl_, buf, true, out, nullptr, &redactions_);
  wipe_string(&buf);
}

std::string Redactor::redact(std::string_view text) const {
  std::string out;
  if (impl_->patterns.empty()) {
    out.assign(text);
    return out;
  }
  uint64_t unused = 0;
  redact_into(*impl_, text, true, &out, nullptr, &unused);
  return out;
}

}  // namespace airlock::proxy
