#include "proxy/secrets.h"

#include <string.h>
#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>

#include <fmt/format.h>

#include "base/secret.h"
#include "proxy/pattern_search.h"
#include "proxy/text_encoding.h"

namespace airlock::proxy {

using namespace textenc;  // NOLINT: this file is the encodings' main user

namespace {

constexpr size_t kMaxValueBytes = 8 * 1024;
constexpr size_t kMaxSecrets = 256;
constexpr int kTripwireDepth = 2;
constexpr size_t kMaxUnknownTracked = 64;
constexpr std::string_view kLowerPrefix = "airlock_secret_placeholder_";

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

namespace {

// The placeholder prefix in any letter case, and the alignment-stable base64 cores of the
// prefix (upper and lower case, both alphabets) with what each one tells about its alignment.
struct PrefixSearch {
  PatternSearch raw;
  PatternSearch base64;
  std::vector<size_t> base64_skip;  // prefix bytes before the core starts, per base64 pattern

  PrefixSearch() : raw({kPlaceholderPrefix}, true) {
    std::vector<std::string> cores;
    for (std::string prefix : {std::string(kPlaceholderPrefix), std::string(kLowerPrefix)}) {
      for (size_t first_byte = 0; first_byte < 3; ++first_byte) {
        size_t whole = (prefix.size() - first_byte) / 3 * 3;
        std::string_view core = std::string_view(prefix).substr(first_byte, whole);
        for (const char* alphabet : {kB64Std, kB64Url}) {
          std::string enc = base64_encode(core, alphabet);
          if (std::find(cores.begin(), cores.end(), enc) != cores.end()) continue;
          cores.push_back(enc);
          base64_skip.push_back(first_byte);
        }
      }
    }
    base64 = PatternSearch(std::vector<std::string_view>(cores.begin(), cores.end()));
  }
};

const PrefixSearch& prefix_search() {
  static const PrefixSearch search;
  return search;
}

}  // namespace

struct SecretSetImpl {
  std::vector<SecretEntry> secrets;
  std::unordered_map<std::string, size_t> by_hex;  // lowercase 64-hex -> index
  PatternSearch redact_search;                     // values and their encodings
  std::vector<std::string> replacements;           // per redact_search pattern
  std::vector<char> lead_char, trail_char;         // per pattern; 0: none
  bool any_lead = false;
  size_t max_value = 0;

  bool bound(size_t index, const Target& target) const {
    return !target.host.empty() && secrets[index].hosts.matches(target);
  }

  // The secret index for the 64 hex digits at text[at..], npos if unknown, or nullopt when
  // there are not 64 hex digits there.
  std::optional<size_t> lookup_hex(std::string_view text, size_t at, std::string* hex_out) const {
    if (at + kPlaceholderHexDigits > text.size()) return std::nullopt;
    std::string hex(text.substr(at, kPlaceholderHexDigits));
    for (char& c : hex) {
      if (!is_hex(c)) return std::nullopt;
      c = lower(c);
    }
    auto it = by_hex.find(hex);
    if (hex_out) *hex_out = std::move(hex);
    return it == by_hex.end() ? std::string::npos : it->second;
  }

  // Calls on_hit(start, index_or_npos, hex) for every well-formed raw placeholder (any case).
  template <class F>
  void find_placeholders(std::string_view text, F&& on_hit) const {
    const PatternSearch& raw = prefix_search().raw;
    size_t from = 0;
    while (auto hit = raw.find(text, from)) {
      std::string hex;
      auto index = lookup_hex(text, hit->pos + kPlaceholderPrefix.size(), &hex);
      if (!index) {
        from = hit->pos + 1;
        continue;
      }
      on_hit(hit->pos, *index, hex);
      from = hit->pos + kPlaceholderLength;
    }
  }

  struct Tripwire {
    std::vector<size_t> known;             // indexes seen
    std::vector<std::string> unknown_hex;  // distinct, bounded
    void add(size_t index, const std::string& hex) {
      if (index != std::string::npos) {
        if (std::find(known.begin(), known.end(), index) == known.end()) known.push_back(index);
      } else if (unknown_hex.size() < kMaxUnknownTracked &&
                 std::find(unknown_hex.begin(), unknown_hex.end(), hex) == unknown_hex.end()) {
        unknown_hex.push_back(hex);
      }
    }
  };

  // Looks for placeholders in `text`: raw in any case; base64-encoded (either alphabet, any
  // alignment, line breaks ignored); and, `depth` levels deep, inside percent-encoding and
  // JSON \u escapes (so also base64 inside percent-encoding, percent-encoding twice, ...).
  void tripwire(std::string_view text, int depth, Tripwire* out) const {
    if (text.size() < kPlaceholderLength) return;  // no encoding is shorter than the raw form
    std::string compacted;
    if (remove_line_breaks(text, &compacted)) text = compacted;
    find_placeholders(text,
                      [&](size_t, size_t index, const std::string& hex) { out->add(index, hex); });
    const PrefixSearch& ps = prefix_search();
    size_t from = 0;
    while (auto hit = ps.base64.find(text, from)) {
      // The core starts on a 4-character group boundary: decode from there.
      size_t skip = ps.base64_skip[hit->index];
      size_t bytes = kPlaceholderLength - skip;
      std::string decoded = base64_decode_lenient(text.substr(hit->pos, (bytes + 2) / 3 * 4));
      std::string hex;
      if (decoded.size() >= bytes) {
        auto index = lookup_hex(decoded, kPlaceholderPrefix.size() - skip, &hex);
        if (index) out->add(*index, hex);
      }
      from = hit->pos + 1;
    }
    if (depth <= 0) return;
    if (text.find('%') != std::string_view::npos) {
      std::string d = percent_decode(text);
      if (d != text) tripwire(d, depth - 1, out);
    }
    if (text.find("\\u") != std::string_view::npos || text.find("\\/") != std::string_view::npos) {
      std::string d = json_unescape(text);
      if (d != text) tripwire(d, depth - 1, out);
    }
  }

  // Raw and percent-encoded placeholders of bound secrets replaced; unbound ones reported.
  void substitute_level1(std::string_view text, const Target& target, SubstitutionContext ctx,
                         std::string* out_text, std::vector<size_t>* substituted,
                         std::vector<size_t>* refused) const {
    Decoded d;
    std::string_view search = text;
    bool mapped = text.find('%') != std::string_view::npos;
    if (mapped) {
      d = percent_decode_mapped(text);
      search = d.text;
    }
    std::string out;
    size_t copied = 0;  // in the source text
    bool changed = false;
    find_placeholders(search, [&](size_t start, size_t index, const std::string&) {
      if (index == std::string::npos) return;
      if (!bound(index, target)) {
        if (std::find(refused->begin(), refused->end(), index) == refused->end())
          refused->push_back(index);
        return;
      }
      size_t src_begin = mapped ? d.origin[start] : start;
      size_t src_end = mapped ? d.origin[start + kPlaceholderLength] : start + kPlaceholderLength;
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

struct RedactPattern {
  Secret pattern;           // derived from a value: kept in a Secret so it is wiped
  std::string replacement;  // the placeholder, or an encoding of it
  char lead = 0;            // base64: the character before the match is replaced by this
  char trail = 0;           // base64: the character after the match is replaced by this
};

// The base64 forms of `value` at each of the three byte alignments: the characters whose six
// bits all come from the value (what an echo of Basic credentials, or of any base64 blob
// holding the value, must contain). The characters just outside share bits with unknown
// neighbours, so they cannot be part of the pattern; they are replaced along with it (`lead`,
// `trail`). The replacement has the same length and position, so the text stays valid base64
// and decodes to placeholder bytes where the value was.
void add_base64_patterns(std::string_view value, const std::string& placeholder,
                         std::vector<RedactPattern>* out) {
  std::string filler;
  for (size_t i = 0; i < value.size(); ++i) filler += placeholder[i % placeholder.size()];
  for (size_t align = 0; align < 3; ++align) {
    size_t first = (8 * align + 5) / 6;            // first char made of value bits only
    size_t last = 8 * (align + value.size()) / 6;  // one past the last such char
    if (last < first + 12) continue;               // too short to be told from random text
    std::string padded = std::string(align, '\0') + std::string(value) + std::string(2, '\0');
    std::string padded_filler = std::string(align, '\0') + filler + std::string(2, '\0');
    for (const char* alphabet : {kB64Std, kB64Url}) {
      std::string enc = base64_encode(padded, alphabet).substr(first, last - first);
      bool duplicate = false;
      for (const RedactPattern& p : *out) duplicate = duplicate || p.pattern.equals(enc);
      if (!duplicate) {
        std::string fill = base64_encode(padded_filler, alphabet);
        char lead = (8 * align) % 6 ? fill[first - 1] : 0;
        char trail = (8 * (align + value.size())) % 6 ? fill[last] : 0;
        out->push_back(RedactPattern{Secret(enc), fill.substr(first, last - first), lead, trail});
      }
      wipe_string(&enc);
    }
    wipe_string(&padded);
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
  std::vector<RedactPattern> patterns;
  for (const SecretEntry& e : impl->secrets) {
    std::string_view v = e.value.reveal();
    impl->max_value = std::max(impl->max_value, v.size());
    patterns.push_back(RedactPattern{Secret(v), e.placeholder});
    std::string up = percent_encode(v, is_unreserved, true);
    std::string low = percent_encode(v, is_unreserved, false);
    if (up != v) patterns.push_back(RedactPattern{Secret(up), e.placeholder});
    if (low != up) patterns.push_back(RedactPattern{Secret(low), e.placeholder});
    wipe_string(&up);
    wipe_string(&low);
    // As a JSON string writes it (an API echoing the request back): quotes and backslashes
    // escaped, and '/' both as is and as "\/".
    for (bool escape_slash : {false, true}) {
      std::string json = json_escape(v, escape_slash);
      if (json != v) patterns.push_back(RedactPattern{Secret(json), e.placeholder});
      wipe_string(&json);
    }
    add_base64_patterns(v, e.placeholder, &patterns);
  }
  std::vector<std::string_view> views;
  for (const RedactPattern& p : patterns) {
    views.push_back(p.pattern.reveal());
    impl->replacements.push_back(p.replacement);
    impl->lead_char.push_back(p.lead);
    impl->trail_char.push_back(p.trail);
    impl->any_lead = impl->any_lead || p.lead;
  }
  impl->redact_search = PatternSearch(views);
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
  // Every form of a placeholder (raw, percent, base64, JSON) is at least as long as the raw one.
  if (s.secrets.empty() || text.size() < kPlaceholderLength) {
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
  // A complete placeholder always starts before `hold` (it is longer than the held suffix),
  // and wins over a suffix that merely looks like the start of another one.
  size_t copied = 0;
  impl_->find_placeholders(text, [&](size_t start, size_t index, const std::string&) {
    if (index == std::string::npos || !impl_->bound(index, target_)) return;
    out->append(text.substr(copied, start - copied));
    out->append(impl_->secrets[index].value.reveal());
    copied = start + kPlaceholderLength;
    add_unique(&substituted_, impl_->secrets[index].name);
  });
  size_t emit_end = std::max(copied, hold);
  out->append(text.substr(copied, emit_end - copied));
  held_.assign(text.substr(emit_end));
}

// --- Redactor -------------------------------------------------------------------------------

namespace {

// Earliest p >= from such that text[p..] is a proper prefix of some pattern (the stream may
// still be inside a value there); text.size() if none.
size_t hold_start(const PatternSearch& search, std::string_view text, size_t from) {
  size_t max = search.max_length();
  size_t lo = text.size() > max - 1 ? text.size() - (max - 1) : 0;
  for (size_t p = std::max(lo, from); p < text.size(); ++p)
    if (search.proper_prefix_at(text, p)) return p;
  return text.size();
}

void redact_into(const SecretSetImpl& s, std::string_view text, bool final, std::string* out,
                 std::string* held, uint64_t* count) {
  const PatternSearch& search = s.redact_search;
  size_t pos = 0;
  size_t hold = final ? text.size() : hold_start(search, text, 0);
  while (auto m = search.find(text, pos)) {
    if (m->pos >= hold) break;  // decided once more of the stream is known
    size_t end = m->pos + search.pattern_length(m->index);
    char lead = s.lead_char[m->index], trail = s.trail_char[m->index];
    if (trail && end == text.size() && !final) {
      hold = m->pos;  // the character after it is still to come
      break;
    }
    size_t start = m->pos;
    if (lead && start > pos && b64_value(text[start - 1]) >= 0) --start;
    out->append(text.substr(pos, start - pos));
    if (start < m->pos) out->push_back(lead);
    out->append(s.replacements[m->index]);
    pos = end;
    if (trail && end < text.size() && b64_value(text[end]) >= 0) {
      out->push_back(trail);
      ++pos;
    }
    ++*count;
    if (!final && pos > hold) hold = hold_start(search, text, pos);
  }
  // Keep one base64 character of context before what is held (or at the end): it may be the
  // leading edge of a base64 match that starts in the next chunk.
  if (!final && s.any_lead && hold > pos && b64_value(text[hold - 1]) >= 0) --hold;
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
  if (impl_->redact_search.empty()) {
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
  if (impl_->redact_search.empty()) {
    out.assign(text);
    return out;
  }
  uint64_t unused = 0;
  redact_into(*impl_, text, true, &out, nullptr, &unused);
  return out;
}

}  // namespace airlock::proxy
