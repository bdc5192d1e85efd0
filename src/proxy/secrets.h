// Secret placeholders: the guest only ever sees AIRLOCK_SECRET_PLACEHOLDER_<64 hex>; the proxy
// swaps in the real value on requests whose connection identity matches a host the secret is
// bound to, refuses requests that carry a placeholder towards any other host (exfiltration
// attempt), and redacts real values coming back in responses to the placeholder.
//
// Guarantee vs tripwire: the hard guarantee is that a value is only ever written into requests
// for bound hosts (substitution is the only place values enter a request). Detection of
// placeholders sent elsewhere is a tripwire that also looks through the encodings clients use
// on their own: any letter case (raw form); percent-encoding, also partial and twice; JSON
// \u00XX escapes; base64 in either alphabet, at any alignment, line-wrapped (e.g. Basic
// credentials, JWT-like blobs) of the placeholder written in upper or lower case; and these
// nested two levels deep (base64 inside percent-encoding, ...). Not base64 inside base64, not
// compressed bodies. A guest that deliberately scrambles a placeholder (XOR, reversal) only
// sends the scrambled placeholder, which is worthless outside airlock.
//
// Redaction covers the raw value, its percent-encoding (either hex case), its JSON-escaped
// forms and, for values of at least 9 bytes, its base64 forms (both alphabets, every
// alignment): the value-only characters are matched and replaced together with the edge
// characters they share with neighbours, so no bit of the value survives a base64 echo.
// Unknown placeholders (the prefix plus 64 hex that are not this set's) are counted, not
// refused: they carry no secret of this set (e.g. another sandbox's placeholder).
//
// A SecretSet is immutable and cheap to copy (shared); any thread may use it. The streaming
// helpers (PlaceholderScanner, BodySubstituter, Redactor) belong to one connection/thread each.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "airlock/proxy.hpp"
#include "airlock/status.hpp"
#include "proxy/policy.h"

namespace airlock::proxy {

inline constexpr std::string_view kPlaceholderPrefix = "AIRLOCK_SECRET_PLACEHOLDER_";
inline constexpr size_t kPlaceholderHexDigits = 64;
inline constexpr size_t kPlaceholderLength = kPlaceholderPrefix.size() + kPlaceholderHexDigits;

// Where a text is substituted decides how a value is written into it.
enum class SubstitutionContext {
  header_value,    // raw value (values never contain CR, LF or other controls)
  request_target,  // characters not allowed in a request-target are percent-encoded
  body,            // raw value
};

struct Substitution {
  std::string text;                      // the text to send (unchanged if anything was refused)
  std::vector<std::string> substituted;  // names whose placeholder was replaced, each once
  std::vector<std::string> refused;      // names whose placeholder was seen for an unbound host
  size_t unknown_placeholders = 0;       // well-formed placeholders not belonging to this set

  bool refused_any() const { return !refused.empty(); }
};

struct SecretSetImpl;

class SecretSet {
 public:
  SecretSet();  // no secrets
  // Validates every spec: name matches [A-Za-z_][A-Za-z0-9_]* and is unique; value non-empty,
  // at most 8 KiB, without control characters (CR, LF, NUL, ... : it goes into header values);
  // at least one host, each a valid rule (policy.h grammar). Errors name the secret, never
  // its value. Placeholders are drawn from the kernel CSPRNG, fresh for every set.
  static Result<SecretSet> create(const std::vector<SecretSpec>& specs);

  bool empty() const;
  size_t size() const;
  std::vector<std::string> names() const;
  // The placeholder for `name`, or "" if there is no such secret.
  std::string placeholder(std::string_view name) const;
  // (name, placeholder) pairs for the guest's environment.
  std::vector<std::pair<std::string, std::string>> env() const;
  // Whether secret `name` may be sent to `target`.
  bool bound_to(std::string_view name, const Target& target) const;

  // Replaces the placeholders of secrets bound to `target` (raw, any case, or percent-encoded;
  // inside "Basic <base64>" credentials, which are decoded, substituted and re-encoded) and
  // reports placeholders of secrets not bound to it in `refused`. If anything is refused the
  // returned text is the input, unchanged: it never contains a value then.
  Substitution substitute(std::string_view text, const Target& target,
                          SubstitutionContext context = SubstitutionContext::header_value) const;
  // Same, parsing `host` (name or IP literal) first; an unparsable host binds nothing.
  Substitution substitute(std::string_view text, std::string_view host, uint16_t port,
                          SubstitutionContext context = SubstitutionContext::header_value) const;

  // Replaces every real value (and its percent-encoded and base64 forms) by its placeholder.
  std::string redact(std::string_view text) const;

  size_t max_value_length() const;

  const SecretSetImpl& impl() const { return *impl_; }
  std::shared_ptr<const SecretSetImpl> shared_impl() const { return impl_; }

 private:
  explicit SecretSet(std::shared_ptr<const SecretSetImpl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const SecretSetImpl> impl_;
};

// Finds placeholders in a stream (a request body), across chunk boundaries: keeps a bounded
// tail of the previous input so a placeholder split across writes or chunks, in any encoding
// the tripwire understands, is still seen. Reports names, never values.
class PlaceholderScanner {
 public:
  PlaceholderScanner(const SecretSet& secrets, Target target);

  void feed(std::string_view chunk);
  // Placeholders of this set seen so far, by name (each once), and those not bound to target.
  const std::vector<std::string>& found() const { return found_; }
  const std::vector<std::string>& refused() const { return refused_; }
  bool refused_any() const { return !refused_.empty(); }
  size_t unknown_placeholders() const { return unknown_; }

  static constexpr size_t kTailBytes = 1024;

 private:
  std::shared_ptr<const SecretSetImpl> impl_;
  Target target_;
  std::string window_;  // tail of previous input + current chunk
  std::vector<std::string> found_;
  std::vector<std::string> refused_;
  size_t unknown_ = 0;
  std::vector<std::string> unknown_seen_;  // distinct unknown hex, bounded
};

// Streaming substitution for identity (or de-chunked) request bodies when body substitution is
// on: raw placeholders (any case) of secrets bound to target are replaced; placeholders of
// unbound secrets are reported (refused) and the caller must abort the request. Holds back at
// most kPlaceholderLength-1 bytes between feeds. Output is appended to *out.
class BodySubstituter {
 public:
  BodySubstituter(const SecretSet& secrets, Target target);

  void feed(std::string_view chunk, std::string* out);
  void finish(std::string* out);

  const std::vector<std::string>& substituted() const { return substituted_; }
  const std::vector<std::string>& refused() const { return scanner_.refused(); }
  bool refused_any() const { return scanner_.refused_any(); }

 private:
  void emit(std::string_view text, bool final, std::string* out);
  std::shared_ptr<const SecretSetImpl> impl_;
  Target target_;
  PlaceholderScanner scanner_;
  std::string held_;
  std::vector<std::string> substituted_;
};

// Streaming redaction of response bodies: every real value (raw, percent-encoded, JSON-escaped,
// base64) is replaced by its placeholder. Holds back only the longest suffix that could still
// begin a value, plus one base64 character of context before it (so at most the longest
// pattern's length, and nothing when the stream cannot be inside a value, e.g. after a line
// break); finish() flushes. The held bytes are wiped when the Redactor is destroyed.
class Redactor {
 public:
  explicit Redactor(const SecretSet& secrets);
  ~Redactor();
  Redactor(const Redactor&) = delete;
  Redactor& operator=(const Redactor&) = delete;

  void feed(std::string_view chunk, std::string* out);
  void finish(std::string* out);
  // One-shot, for header values; does not touch the streaming state.
  std::string redact(std::string_view text) const;

  size_t held_bytes() const { return held_.size(); }
  uint64_t redactions() const { return redactions_; }

 private:
  std::shared_ptr<const SecretSetImpl> impl_;
  std::string held_;
  uint64_t redactions_ = 0;
};

}  // namespace airlock::proxy
