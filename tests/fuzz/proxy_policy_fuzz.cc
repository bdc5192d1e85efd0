// libFuzzer target for the proxy's pure policy logic: allow_net rule parsing, host/authority
// normalisation, IP literal parsing and classification, secret substitution, the placeholder
// scanner, streaming body substitution and redaction, and audit JSON encoding. Each input is
// lines: every line is also tried as a rule, host and authority; the first line is the request's
// identity, the rest the text to substitute. Tokens {P0} {P1} (placeholders), {E0} (percent-
// encoded placeholder), {B0} (base64 "user:{P0}"), {V0} (a real value) and {W0} (base64
// "user:{V0}", an echoed credential) are expanded so
// the fuzzer reaches the interesting paths without guessing random placeholders.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/address.h"
#include "proxy/audit.h"
#include "proxy/policy.h"
#include "proxy/secrets.h"

using namespace airlock;
using namespace airlock::proxy;

namespace {

const char* kValue0 = "sk-fuzz-0123456789abcdef";
const char* kValue1 = "tok/with+odd=chars&x";

#define FUZZ_CHECK(cond)                                                    \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      abort();                                                              \
    }                                                                       \
  } while (0)

// Several sets, chosen by the input: placeholders are random, and some code paths depend on
// how a placeholder looks (its last digits, a letter after the prefix); sixteen draws cover them.
const SecretSet* g_set = nullptr;

const SecretSet& secrets() {
  return *g_set;
}

void choose_set(size_t which) {
  static const std::vector<SecretSet> sets = [] {
    std::vector<SecretSet> v;
    for (int i = 0; i < 16; ++i) {
      auto s = SecretSet::create({{"ZERO", kValue0, {"api.example.com", "*.bound.example"}},
                                  {"ONE", kValue1, {"127.0.0.1:8443", "[::1]"}}});
      if (!s.ok()) abort();
      v.push_back(*s);
    }
    return v;
  }();
  g_set = &sets[which % sets.size()];
}

std::string pct(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    out += '%';
    out += "0123456789ABCDEF"[c >> 4];
    out += "0123456789ABCDEF"[c & 15];
  }
  return out;
}

std::string b64(std::string_view in) {
  static const char* a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v =
        uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8 | uint8_t(in[i + 2]);
    for (int k = 18; k >= 0; k -= 6) out += a[(v >> k) & 63];
  }
  if (in.size() - i == 1) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16;
    out += a[v >> 18];
    out += a[(v >> 12) & 63];
  } else if (in.size() - i == 2) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
    out += a[v >> 18];
    out += a[(v >> 12) & 63];
    out += a[(v >> 6) & 63];
  }
  return out;
}

std::string expand(std::string_view in) {
  const SecretSet& s = secrets();
  std::string p0 = s.placeholder("ZERO"), p1 = s.placeholder("ONE");
  std::string out;
  for (size_t i = 0; i < in.size();) {
    std::string_view rest = in.substr(i);
    if (rest.substr(0, 4) == "{P0}")
      out += p0;
    else if (rest.substr(0, 4) == "{P1}")
      out += p1;
    else if (rest.substr(0, 4) == "{E0}")
      out += pct(p0);
    else if (rest.substr(0, 4) == "{B0}")
      out += b64("user:" + p0);
    else if (rest.substr(0, 4) == "{W0}")
      out += b64(std::string("user:") + kValue0);
    else if (rest.substr(0, 4) == "{V0}")
      out += kValue0;
    else {
      out += in[i++];
      continue;
    }
    i += 4;
  }
  return out;
}

void check_host_functions(std::string_view line) {
  if (auto ip = parse_ip_literal(line)) {
    auto again = parse_ip_literal(ip->to_string());
    FUZZ_CHECK(again && *again == *ip);
    (void)classify(*ip);
    (void)ip->embedded_v4();
    FUZZ_CHECK(!looks_like_numeric_host(line) || ip->family == IpAddress::v4);
  }
  if (looks_like_numeric_host(line)) (void)parse_legacy_ipv4(line);
  auto host = normalize_host(line);
  if (host.ok()) {
    FUZZ_CHECK(host->size() <= kMaxHostLength && !host->empty());
    for (char c : *host)
      FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' ||
                 c == '_');
    auto again = normalize_host(*host);
    FUZZ_CHECK(again.ok() && *again == *host);  // idempotent
    FUZZ_CHECK(!looks_like_numeric_host(*host));
  }
  auto target = parse_authority(line, 443);
  if (target.ok()) {
    auto again = parse_authority(target->authority(), 1);
    FUZZ_CHECK(again.ok() && again->host == target->host && again->port == target->port);
  }
  auto rule = parse_host_pattern(line);
  if (rule.ok()) {
    auto again = parse_host_pattern(rule->to_string());
    FUZZ_CHECK(again.ok() && again->to_string() == rule->to_string());
  }
}

bool contains(std::string_view h, std::string_view n) {
  return h.find(n) != std::string_view::npos;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 16384) return 0;
  size_t mix = size;
  for (size_t i = 0; i < size; ++i) mix = mix * 31 + data[i];
  choose_set(mix);
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> lines;
  for (size_t start = 0; start <= input.size();) {
    size_t nl = input.find('\n', start);
    if (nl == std::string_view::npos) nl = input.size();
    lines.emplace_back(input.substr(start, nl - start));
    start = nl + 1;
  }
  for (const std::string& l : lines) check_host_functions(l);
  auto policy = Policy::parse(lines);
  (void)policy;

  const SecretSet& s = secrets();
  std::string text = expand(input.substr(std::min(input.size(), lines[0].size() + 1)));
  auto parsed = parse_target(lines[0], 443);
  Target target = parsed.ok() ? *parsed : Target{};

  for (auto ctx : {SubstitutionContext::header_value, SubstitutionContext::request_target,
                   SubstitutionContext::body}) {
    Substitution sub = s.substitute(text, target, ctx);
    if (sub.refused_any()) FUZZ_CHECK(sub.text == text);
    // Towards a host no secret is bound to, nothing is ever substituted.
    Substitution evil = s.substitute(text, "unbound.example", 443, ctx);
    FUZZ_CHECK(evil.text == text);
    FUZZ_CHECK(evil.substituted.empty());
    if (!contains(text, kValue0) && !contains(text, kValue1) && !target.ip &&
        !s.bound_to("ZERO", target)) {
      FUZZ_CHECK(!contains(sub.text, kValue0));
    }
  }

  // Streaming = one-shot, wherever the chunks are cut.
  size_t cut1 = size ? data[0] % (text.size() + 1) : 0;
  size_t cut2 = size > 1 ? cut1 + data[1] % (text.size() - cut1 + 1) : cut1;
  std::string_view tv = text;
  std::string whole = s.redact(text);
  Redactor red(s);
  std::string streamed;
  red.feed(tv.substr(0, cut1), &streamed);
  red.feed(tv.substr(cut1, cut2 - cut1), &streamed);
  red.feed(tv.substr(cut2), &streamed);
  red.finish(&streamed);
  FUZZ_CHECK(streamed == whole);

  BodySubstituter one(s, target), split(s, target);
  std::string a, b;
  one.feed(text, &a);
  one.finish(&a);
  split.feed(tv.substr(0, cut1), &b);
  split.feed(tv.substr(cut1, cut2 - cut1), &b);
  split.feed(tv.substr(cut2), &b);
  split.finish(&b);
  FUZZ_CHECK(a == b);
  FUZZ_CHECK(one.substituted() == split.substituted());

  // Chunking never hides a placeholder from the scanner.
  PlaceholderScanner scan(s, target);
  scan.feed(tv.substr(0, cut1));
  scan.feed(tv.substr(cut1, cut2 - cut1));
  scan.feed(tv.substr(cut2));
  Substitution body = s.substitute(text, target, SubstitutionContext::body);
  for (const std::string& name : body.refused)
    FUZZ_CHECK(std::find(scan.refused().begin(), scan.refused().end(), name) !=
               scan.refused().end());

  AuditEvent ev;
  ev.host = lines[0];
  ev.path = text;
  ev.reason = input;
  std::string json = audit_to_json(ev);
  for (unsigned char c : json) FUZZ_CHECK(c >= 0x20);
  FUZZ_CHECK(json.front() == '{' && json.back() == '}');
  return 0;
}
