#include "proxy/secrets.h"

namespace airlock::proxy {
struct SecretSetImpl {};
SecretSet::SecretSet() : impl_(std::make_shared<SecretSetImpl>()) {}
Result<SecretSet> SecretSet::create(const std::vector<SecretSpec>&) { return Status(Errc::internal, "stub"); }
bool SecretSet::empty() const { return true; }
size_t SecretSet::size() const { return 0; }
std::vector<std::string> SecretSet::names() const { return {}; }
std::string SecretSet::placeholder(std::string_view) const { return ""; }
std::vector<std::pair<std::string, std::string>> SecretSet::env() const { return {}; }
bool SecretSet::bound_to(std::string_view, const Target&) const { return false; }
Substitution SecretSet::substitute(std::string_view t, const Target&, SubstitutionContext) const { return {std::string(t), {}, {}, 0}; }
Substitution SecretSet::substitute(std::string_view t, std::string_view, uint16_t, SubstitutionContext) const { return {std::string(t), {}, {}, 0}; }
std::string SecretSet::redact(std::string_view t) const { return std::string(t); }
size_t SecretSet::max_value_length() const { return 0; }
PlaceholderScanner::PlaceholderScanner(const SecretSet& s, Target t) : impl_(s.shared_impl()), target_(std::move(t)) {}
void PlaceholderScanner::feed(std::string_view) {}
BodySubstituter::BodySubstituter(const SecretSet& s, Target t) : impl_(s.shared_impl()), target_(t), scanner_(s, t) {}
void BodySubstituter::feed(std::string_view c, std::string* out) { out->append(c); }
void BodySubstituter::finish(std::string*) {}
Redactor::Redactor(const SecretSet& s) : impl_(s.shared_impl()) {}
Redactor::~Redactor() {}
void Redactor::feed(std::string_view c, std::string* out) { out->append(c); }
void Redactor::finish(std::string*) {}
std::string Redactor::redact(std::string_view t) const { return std::string(t); }
}  // namespace airlock::proxy
