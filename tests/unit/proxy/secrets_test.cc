#include <doctest/doctest.h>

#include <set>

#include "proxy/secrets.h"

using namespace airlock;
using namespace airlock::proxy;

namespace {

// Values that look like real API keys; tests check they never show up where they must not.
const std::string kOpenAi = "sk-live-0123456789abcdefOPENAI";
const std::string kGithub = "ghp_ZYXWVUTSRQ9876543210github";

SecretSet make_set() {
  auto s = SecretSet::create({{"OPENAI_API_KEY", kOpenAi, {"api.openai.com"}},
                              {"GITHUB_TOKEN", kGithub, {"*.github.com", "127.0.0.1:8443"}}});
  REQUIRE_MESSAGE(s.ok(), s.status().to_string());
  return *s;
}

std::string pct_all(std::string_view s, bool upper = true) {
  std::string out;
  const char* d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  for (unsigned char c : s) {
    out += '%';
    out += d[c >> 4];
    out += d[c & 15];
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
    out += "==";
  } else if (in.size() - i == 2) {
    uint32_t v = uint32_t(uint8_t(in[i])) << 16 | uint32_t(uint8_t(in[i + 1])) << 8;
    out += a[v >> 18];
    out += a[(v >> 12) & 63];
    out += a[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string b64_decode(std::string_view in) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = -1;
    if (c >= 'A' && c <= 'Z')
      v = c - 'A';
    else if (c >= 'a' && c <= 'z')
      v = c - 'a' + 26;
    else if (c >= '0' && c <= '9')
      v = c - '0' + 52;
    else if (c == '+' || c == '-')
      v = 62;
    else if (c == '/' || c == '_')
      v = 63;
    if (v < 0) break;
    acc = (acc << 6 | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += char((acc >> bits) & 0xff);
    }
  }
  return out;
}

bool contains(std::string_view hay, std::string_view needle) {
  return hay.find(needle) != std::string_view::npos;
}

Target target(const char* host, uint16_t port) {
  auto t = parse_target(host, port);
  REQUIRE(t.ok());
  return *t;
}

}  // namespace

TEST_CASE("placeholders: format, uniqueness, fresh per set, env") {
  SecretSet a = make_set();
  SecretSet b = make_set();
  std::set<std::string> seen;
  for (const SecretSet* s : {&a, &b}) {
    for (const auto& [name, ph] : s->env()) {
      CHECK(ph.size() == kPlaceholderLength);
      CHECK(ph.substr(0, kPlaceholderPrefix.size()) == kPlaceholderPrefix);
      for (char c : ph.substr(kPlaceholderPrefix.size()))
        CHECK(((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')));
      CHECK(s->placeholder(name) == ph);
      CHECK(!contains(ph, kOpenAi));
      CHECK(seen.insert(ph).second);  // never repeats, within or across sets
    }
  }
  CHECK(seen.size() == 4);
  CHECK(a.placeholder("NOPE").empty());
  CHECK(a.size() == 2);
  CHECK(a.names() == std::vector<std::string>{"OPENAI_API_KEY", "GITHUB_TOKEN"});
  CHECK(SecretSet().empty());
  // The hex part has the spread of 256 random bits: all 16 digits appear across 4 placeholders.
  std::set<char> digits;
  for (const auto& p : seen)
    for (char c : p.substr(kPlaceholderPrefix.size())) digits.insert(c);
  CHECK(digits.size() == 16);
}

TEST_CASE("validation errors name the secret and never contain its value") {
  const std::string v = "VERY-SECRET-VALUE-123";
  struct Case {
    std::vector<SecretSpec> specs;
    const char* expect;
  };
  std::vector<Case> cases = {
      {{{"", v, {"a.example"}}}, "name must match"},
      {{{"1ABC", v, {"a.example"}}}, "name must match"},
      {{{"A-B", v, {"a.example"}}}, "name must match"},
      {{{"A B", v, {"a.example"}}}, "name must match"},
      {{{"KEY", "", {"a.example"}}}, "empty value"},
      {{{"KEY", v + "\r\nX-Evil: 1", {"a.example"}}}, "control character"},
      {{{"KEY", v + "\n", {"a.example"}}}, "control character"},
      {{{"KEY", std::string("ab\0cd", 5), {"a.example"}}}, "control character"},
      {{{"KEY", v, {}}}, "bound to no host"},
      {{{"KEY", v, {"*"}}}, "invalid allow rule"},
      {{{"KEY", v, {"bad host"}}}, "invalid allow rule"},
      {{{"KEY", v, {"a.example"}}, {"KEY", v + "2", {"b.example"}}}, "defined twice"},
      {{{"KEY", std::string(9000, 'x'), {"a.example"}}}, "longer than"},
      {{{"KEY", "x" + std::string(kPlaceholderPrefix) + "0", {"a.example"}}}, "placeholder"},
  };
  for (const Case& c : cases) {
    auto s = SecretSet::create(c.specs);
    REQUIRE(!s.ok());
    CHECK(s.status().code() == Errc::invalid_argument);
    CHECK_MESSAGE(contains(s.status().message(), c.expect), s.status().message());
    CHECK(!contains(s.status().message(), v));
    CHECK(!contains(s.status().to_string(), "SECRET-VALUE"));
    if (c.specs[0].name == "KEY") CHECK(contains(s.status().message(), "KEY"));
  }
}

TEST_CASE("substitution in header values: bound hosts get the value, others are refused") {
  SecretSet s = make_set();
  std::string ph = s.placeholder("OPENAI_API_KEY");
  Substitution r = s.substitute("Bearer " + ph, "api.openai.com", 443);
  CHECK(r.text == "Bearer " + kOpenAi);
  CHECK(r.substituted == std::vector<std::string>{"OPENAI_API_KEY"});
  CHECK(r.refused.empty());
  // Identity matching is normalised (case, trailing dot).
  r = s.substitute("Bearer " + ph, "API.OpenAI.com.", 443);
  CHECK(r.text == "Bearer " + kOpenAi);
  // Unbound hosts: refused, text unchanged, no value anywhere.
  for (const char* host : {"evil.example", "openai.com", "api.openai.com.evil.example", "127.0.0.1",
                           "api.github.com"}) {
    r = s.substitute("Bearer " + ph, host, 443);
    CHECK_MESSAGE(r.refused == std::vector<std::string>{"OPENAI_API_KEY"}, host);
    CHECK(r.text == "Bearer " + ph);
    CHECK(r.substituted.empty());
    CHECK(!contains(r.text, kOpenAi));
  }
  // Unparsable identity binds nothing.
  r = s.substitute(ph, "bad host", 443);
  CHECK(r.refused_any());
  // Wildcard and port bindings.
  std::string gh = s.placeholder("GITHUB_TOKEN");
  CHECK(s.substitute("token " + gh, "api.github.com", 443).text == "token " + kGithub);
  CHECK(s.substitute("token " + gh, "github.com", 443).refused_any());  // apex not bound
  CHECK(s.substitute(gh, "127.0.0.1", 8443).text == kGithub);
  CHECK(s.substitute(gh, "127.0.0.1", 443).refused_any());
  CHECK(s.bound_to("GITHUB_TOKEN", target("x.github.com", 1)));
  CHECK(!s.bound_to("GITHUB_TOKEN", target("github.com", 1)));
  // Two placeholders, one bound and one not: the whole text is refused and left untouched.
  r = s.substitute(ph + "," + gh, "api.openai.com", 443);
  CHECK(r.refused == std::vector<std::string>{"GITHUB_TOKEN"});
  CHECK(r.substituted.empty());
  CHECK(r.text == ph + "," + gh);
  // Text without placeholders passes unchanged.
  r = s.substitute("application/json", "api.openai.com", 443);
  CHECK(r.text == "application/json");
  CHECK(r.substituted.empty());
  CHECK(!r.refused_any());
}

TEST_CASE("substitution: letter case and repeated placeholders") {
  SecretSet s = make_set();
  std::string ph = s.placeholder("OPENAI_API_KEY");
  std::string upper = ph;
  for (char& c : upper) c = static_cast<char>(toupper(c));
  std::string lower = ph;
  for (char& c : lower) c = static_cast<char>(tolower(c));
  for (const std::string& form : {upper, lower}) {
    CHECK(s.substitute("k=" + form, "api.openai.com", 443).text == "k=" + kOpenAi);
    CHECK(s.substitute("k=" + form, "evil.example", 443).refused_any());
  }
  CHECK(s.substitute(ph + ph, "api.openai.com", 443).text == kOpenAi + kOpenAi);
  // A placeholder followed by more hex is still found.
  CHECK(s.substitute(ph + "abc", "api.openai.com", 443).text == kOpenAi + "abc");
  // A truncated placeholder is nothing.
  auto r = s.substitute(ph.substr(0, ph.size() - 1), "evil.example", 443);
  CHECK(!r.refused_any());
}

TEST_CASE("substitution: percent-encoded placeholders") {
  SecretSet s = make_set();
  std::string ph = s.placeholder("OPENAI_API_KEY");
  std::string full = pct_all(ph);
  std::string partial = ph.substr(0, 10) + pct_all(ph.substr(10, 5), false) + ph.substr(15);
  std::string double_enc;  // %25 41 ... : percent-encoded twice
  for (char c : pct_all(ph)) double_enc += c == '%' ? std::string("%25") : std::string(1, c);
  for (const std::string& form : {full, partial, pct_all(ph, false)}) {
    Substitution r = s.substitute("/v1/x?key=" + form, "api.openai.com", 443,
                                  SubstitutionContext::request_target);
    CHECK(r.substituted == std::vector<std::string>{"OPENAI_API_KEY"});
    CHECK(r.text == "/v1/x?key=" + kOpenAi);  // all of this value is unreserved
    r = s.substitute("/v1/x?key=" + form, "evil.example", 443, SubstitutionContext::request_target);
    CHECK(r.refused == std::vector<std::string>{"OPENAI_API_KEY"});
    CHECK(r.text == "/v1/x?key=" + form);
  }
  // Twice encoded: not substituted (a server would see the placeholder), but still refused
  // towards an unbound host.
  CHECK(s.substitute("/?k=" + double_enc, "evil.example", 443).refused_any());
  CHECK(s.substitute("/?k=" + double_enc, "api.openai.com", 443).text == "/?k=" + double_enc);
  // JSON \u escapes.
  std::string json_esc;
  for (char c : ph) json_esc += "\\u00" + pct_all(std::string(1, c)).substr(1);
  CHECK(s.substitute("{\"k\":\"" + json_esc + "\"}", "evil.example", 443, SubstitutionContext::body)
            .refused_any());
}

TEST_CASE("substitution into a request target encodes what a target cannot hold") {
  auto s = SecretSet::create({{"ODD", "a b/c?d%e\"f#g+h", {"api.example"}}});
  REQUIRE(s.ok());
  std::string ph = s->placeholder("ODD");
  auto r = s->substitute("/p/" + ph + "?q=" + ph, "api.example", 443,
                         SubstitutionContext::request_target);
  CHECK(r.text == "/p/a%20b/c?d%25e%22f%23g+h?q=a%20b/c?d%25e%22f%23g+h");
  // A percent-encoded placeholder gets a fully percent-encoded value (only unreserved kept).
  r = s->substitute("/?q=" + pct_all(ph), "api.example", 443, SubstitutionContext::request_target);
  CHECK(r.text == "/?q=a%20b%2Fc%3Fd%25e%22f%23g%2Bh");
  // Header values get the raw value.
  r = s->substitute("X " + ph, "api.example", 443);
  CHECK(r.text == "X a b/c?d%e\"f#g+h");
}

TEST_CASE("substitution: Basic credentials are decoded, substituted and re-encoded") {
  SecretSet s = make_set();
  std::string ph = s.placeholder("OPENAI_API_KEY");
  for (const std::string& creds : {"user:" + ph, ph + ":x-oauth-basic", "u:" + pct_all(ph)}) {
    std::string header = "Basic " + b64(creds);
    Substitution r = s.substitute(header, "api.openai.com", 443);
    CHECK(r.substituted == std::vector<std::string>{"OPENAI_API_KEY"});
    REQUIRE(r.text.substr(0, 6) == "Basic ");
    std::string decoded = b64_decode(r.text.substr(6));
    CHECK(contains(decoded, kOpenAi));
    CHECK(!contains(decoded, ph));
    r = s.substitute(header, "evil.example", 443);
    CHECK(r.refused == std::vector<std::string>{"OPENAI_API_KEY"});
    CHECK(r.text == header);
    // Scheme in any case, extra spaces.
    r = s.substitute("  bAsIc   " + b64(creds) + " ", "evil.example", 443);
    CHECK(r.refused_any());
  }
  // Base64 without padding, and base64url elsewhere (e.g. a custom header) is caught too.
  std::string unpadded = b64("user:" + ph + "x");
  while (unpadded.back() == '=') unpadded.pop_back();
  CHECK(s.substitute("Basic " + unpadded, "evil.example", 443).refused_any());
  std::string url = b64("prefix:" + ph);
  for (char& c : url) c = c == '+' ? '-' : c == '/' ? '_' : c;
  CHECK(s.substitute("X-Token " + url, "evil.example", 443).refused_any());
  // Base64 at every alignment, wrapped at 76 columns as MIME does.
  for (int shift = 0; shift < 3; ++shift) {
    std::string enc = b64(std::string(shift, 'x') + ph + "tail");
    std::string wrapped;
    for (size_t i = 0; i < enc.size(); i += 76) wrapped += enc.substr(i, 76) + "\r\n";
    CHECK_MESSAGE(
        s.substitute(wrapped, "evil.example", 443, SubstitutionContext::body).refused_any(), shift);
  }
  // Percent-encoded base64 (Basic credentials in a URL query).
  CHECK(s.substitute("/?auth=" + pct_all(b64("u:" + ph)), "evil.example", 443,
                     SubstitutionContext::request_target)
            .refused_any());
}

TEST_CASE("unknown placeholders are counted, not refused") {
  SecretSet s = make_set();
  std::string foreign = std::string(kPlaceholderPrefix) + std::string(64, 'a');
  Substitution r = s.substitute("x " + foreign, "evil.example", 443);
  CHECK(!r.refused_any());
  CHECK(r.unknown_placeholders == 1);
  CHECK(r.text == "x " + foreign);
  // Another set's placeholder is unknown here.
  SecretSet other = make_set();
  r = s.substitute(other.placeholder("OPENAI_API_KEY"), "api.openai.com", 443);
  CHECK(r.unknown_placeholders == 1);
  CHECK(r.substituted.empty());
  CHECK(r.text == other.placeholder("OPENAI_API_KEY"));
}

TEST_CASE("scanner finds a placeholder split across chunks at every offset") {
  SecretSet s = make_set();
  std::string ph = s.placeholder("OPENAI_API_KEY");
  std::vector<std::string> forms = {ph, pct_all(ph), b64("{\"key\":\"" + ph + "\"}")};
  for (const std::string& form : forms) {
    std::string body = "{\"prompt\":\"hello\",\"x\":\"" + form + "\",\"y\":1}";
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      PlaceholderScanner bad(s, target("evil.example", 443));
      bad.feed(body.substr(0, cut));
      bad.feed(body.substr(cut));
      REQUIRE_MESSAGE(bad.refused() == std::vector<std::string>{"OPENAI_API_KEY"}, cut);
      PlaceholderScanner good(s, target("api.openai.com", 443));
      good.feed(body.substr(0, cut));
      good.feed(body.substr(cut));
      CHECK(good.found() == std::vector<std::string>{"OPENAI_API_KEY"});
      CHECK(!good.refused_any());
    }
  }
  // One byte at a time, with lots of data before and after.
  std::string body = std::string(5000, 'z') + pct_all(ph) + std::string(5000, 'z');
  PlaceholderScanner bytewise(s, target("evil.example", 443));
  for (char c : body) bytewise.feed(std::string_view(&c, 1));
  CHECK(bytewise.refused_any());
  // Clean data is clean.
  PlaceholderScanner clean(s, target("evil.example", 443));
  for (int i = 0; i < 100; ++i) clean.feed(std::string(1000, 'A' + i % 26));
  CHECK(clean.found().empty());
  CHECK(clean.unknown_placeholders() == 0);
}

TEST_CASE("body substitution streams and replaces split placeholders at every offset") {
  // A placeholder ending in 'a' once hid itself: its last byte looked like the start of the
  // next placeholder and was held back. Draw sets until that case is covered too.
  SecretSet s = make_set();
  for (int i = 0; i < 400 && s.placeholder("OPENAI_API_KEY").back() != 'a'; ++i) s = make_set();
  REQUIRE(s.placeholder("OPENAI_API_KEY").back() == 'a');
  std::string ph = s.placeholder("OPENAI_API_KEY");
  std::string body = "{\"a\":\"" + ph + "\",\"b\":\"AIRLOCK_not_it\",\"c\":\"" + ph + "\"}";
  std::string expect =
      "{\"a\":\"" + kOpenAi + "\",\"b\":\"AIRLOCK_not_it\",\"c\":\"" + kOpenAi + "\"}";
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    BodySubstituter sub(s, target("api.openai.com", 443));
    std::string out;
    sub.feed(body.substr(0, cut), &out);
    sub.feed(body.substr(cut), &out);
    sub.finish(&out);
    REQUIRE_MESSAGE(out == expect, cut);
    CHECK(sub.substituted() == std::vector<std::string>{"OPENAI_API_KEY"});
    CHECK(!sub.refused_any());
  }
  // Held back at most kPlaceholderLength-1 bytes; plain data is not held at all.
  BodySubstituter sub(s, target("api.openai.com", 443));
  std::string out;
  sub.feed("hello world", &out);
  CHECK(out == "hello world");
  sub.feed(ph.substr(0, 50), &out);
  CHECK(out == "hello world");
  sub.feed(ph.substr(50), &out);
  CHECK(out == "hello world" + kOpenAi);
  // An unbound placeholder is reported and passed through without a value.
  BodySubstituter bad(s, target("evil.example", 443));
  out.clear();
  bad.feed(body, &out);
  bad.finish(&out);
  CHECK(bad.refused() == std::vector<std::string>{"OPENAI_API_KEY"});
  CHECK(!contains(out, kOpenAi));
}

TEST_CASE("redaction: values become placeholders, split at every offset") {
  SecretSet s = make_set();
  std::string ph = s.placeholder("OPENAI_API_KEY");
  std::string gh = s.placeholder("GITHUB_TOKEN");
  std::string body =
      "echo: Authorization: Bearer " + kOpenAi + "\n token=" + kGithub + "; again " + kOpenAi;
  std::string expect = "echo: Authorization: Bearer " + ph + "\n token=" + gh + "; again " + ph;
  CHECK(s.redact(body) == expect);
  for (size_t cut = 0; cut <= body.size(); ++cut) {
    Redactor r(s);
    std::string out;
    r.feed(body.substr(0, cut), &out);
    CHECK(r.held_bytes() < kOpenAi.size() + 8);
    r.feed(body.substr(cut), &out);
    r.finish(&out);
    REQUIRE_MESSAGE(out == expect, cut);
    CHECK(r.redactions() == 3);
  }
  // Three-way splits.
  for (size_t a = 20; a < 40; ++a) {
    for (size_t b = a; b < 70; b += 3) {
      Redactor r(s);
      std::string out;
      r.feed(body.substr(0, a), &out);
      r.feed(body.substr(a, b - a), &out);
      r.feed(body.substr(b), &out);
      r.finish(&out);
      REQUIRE(out == expect);
    }
  }
  // Byte at a time.
  Redactor bytewise(s);
  std::string out;
  for (char c : body) bytewise.feed(std::string_view(&c, 1), &out);
  bytewise.finish(&out);
  CHECK(out == expect);
  // Nothing is held when the stream cannot be inside a value (so streamed events, which end in
  // a line break, pass at once); at most one base64 character of context otherwise.
  Redactor r(s);
  out.clear();
  r.feed("data: plain text\n\n", &out);
  CHECK(out == "data: plain text\n\n");
  CHECK(r.held_bytes() == 0);
  r.feed("more", &out);
  CHECK(r.held_bytes() == 1);
  r.feed(" sk-live-0123", &out);
  CHECK(r.held_bytes() == 12);
  r.feed("not.", &out);
  CHECK(out == "data: plain text\n\nmore sk-live-0123not.");
  CHECK(r.held_bytes() == 0);
}

TEST_CASE("redaction: percent-encoded and base64 echoes of a value") {
  auto set = SecretSet::create({{"K", "k3y/with+special=chars&more", {"api.example"}}});
  REQUIRE(set.ok());
  const std::string v = "k3y/with+special=chars&more";
  std::string ph = set->placeholder("K");
  CHECK(set->redact("q=" + std::string("k3y%2Fwith%2Bspecial%3Dchars%26more")) == "q=" + ph);
  CHECK(set->redact("q=k3y%2fwith%2bspecial%3dchars%26more") == "q=" + ph);
  // JSON echoes: '/' escaped or not.
  CHECK(set->redact("{\"k\":\"k3y\\/with+special=chars&more\"}") == "{\"k\":\"" + ph + "\"}");
  auto quoted = SecretSet::create({{"Q", "a\"quoted\\value", {"api.example"}}});
  REQUIRE(quoted.ok());
  CHECK(quoted->redact("{\"v\":\"a\\\"quoted\\\\value\"}") ==
        "{\"v\":\"" + quoted->placeholder("Q") + "\"}");
  // Basic credentials echoed back: no alignment of the value survives in base64.
  for (std::string user : {"", "u", "us", "use", "user", "users"}) {
    std::string echoed = b64(user + ":" + v);
    std::string red = set->redact("{\"authorization\":\"Basic " + echoed + "\"}");
    CHECK(!contains(red, echoed));
    std::string decoded = b64_decode(red.substr(red.find("Basic ") + 6));
    CHECK(!contains(decoded, v));
    CHECK(!contains(decoded, "special=chars"));  // the middle of the value is gone
    CHECK(!contains(decoded, v.substr(0, 2)));   // and its edges
    CHECK(!contains(decoded, v.substr(v.size() - 2)));
    // Not a bit of the value is left: every byte where the value was now differs from it.
    REQUIRE(decoded.size() >= user.size() + 1 + v.size());
    std::string_view where = std::string_view(decoded).substr(user.size() + 1, v.size());
    for (size_t i = 0; i < v.size(); ++i) CHECK_MESSAGE(where[i] != v[i], user, " byte ", i);
    CHECK(contains(decoded, ph.substr(3, 6)));  // placeholder bytes stand in its place
  }
}

TEST_CASE("redaction of a base64 echo leaves no bit of the value") {
  // Two values of the same length: after redaction, base64 holding either must read the same,
  // at every alignment and with or without data after the value. The filler standing in for a
  // value is the placeholder's fixed prefix here (27 bytes), so it is the same for both sets.
  const std::string v = "k3y/with+special=chars&more", w = "ZZZ0000111122223333444455xy";
  REQUIRE(v.size() == w.size());
  auto a = SecretSet::create({{"K", v, {"api.example"}}});
  auto b = SecretSet::create({{"K", w, {"api.example"}}});
  REQUIRE(a.ok());
  REQUIRE(b.ok());
  for (std::string user : {"", "u", "us", "use", "user", "users"}) {
    for (std::string tail : {"", "@", "@t", "@ta", "@tail"}) {
      std::string ra = a->redact("[" + b64(user + ":" + v + tail) + "]");
      std::string rb = b->redact("[" + b64(user + ":" + w + tail) + "]");
      CHECK_MESSAGE(ra == rb, "user=", user, " tail=", tail);
      CHECK(!contains(b64_decode(ra.substr(1)), v.substr(3, 20)));
    }
  }
}

TEST_CASE("redaction: overlapping values prefer the leftmost, then the longest") {
  auto set =
      SecretSet::create({{"LONG", "abcdefghij", {"a.example"}}, {"SHORT", "cdefg", {"a.example"}}});
  REQUIRE(set.ok());
  std::string L = set->placeholder("LONG"), S = set->placeholder("SHORT");
  CHECK(set->redact("xxabcdefghijxx") == "xx" + L + "xx");
  CHECK(set->redact("xxabcdefgxx") == "xxab" + S + "xx");
  // Streaming decides the same as one-shot even when the longer candidate is cut.
  for (const std::string& body : {std::string("xxabcdefghijxx"), std::string("xxabcdefgxx")}) {
    std::string expect = set->redact(body);
    for (size_t cut = 0; cut <= body.size(); ++cut) {
      Redactor r(*set);
      std::string out;
      r.feed(body.substr(0, cut), &out);
      r.feed(body.substr(cut), &out);
      r.finish(&out);
      CHECK_MESSAGE(out == expect, cut);
    }
  }
}

TEST_CASE("an empty set is a no-op everywhere") {
  SecretSet s;
  CHECK(s.substitute("anything", "x.example", 1).text == "anything");
  Redactor r(s);
  std::string out;
  r.feed("abc", &out);
  r.finish(&out);
  CHECK(out == "abc");
  BodySubstituter b(s, target("x.example", 1));
  out.clear();
  b.feed("abc", &out);
  b.finish(&out);
  CHECK(out == "abc");
  CHECK(s.redact("abc") == "abc");
  CHECK(s.env().empty());
}
