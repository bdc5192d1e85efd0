#include "proxy/policy.h"

namespace airlock::proxy {
Result<std::string> normalize_host(std::string_view) { return Status(Errc::internal, "stub"); }
Result<std::string> punycode_encode(const std::u32string&) { return Status(Errc::internal, "stub"); }
std::string Target::authority() const { return ""; }
Result<Target> parse_target(std::string_view, uint16_t) { return Status(Errc::internal, "stub"); }
Result<Target> parse_authority(std::string_view, uint16_t) { return Status(Errc::internal, "stub"); }
std::string HostPattern::to_string() const { return ""; }
Result<HostPattern> parse_host_pattern(std::string_view) { return Status(Errc::internal, "stub"); }
Result<HostPatternSet> HostPatternSet::parse(const std::vector<std::string>&) { return Status(Errc::internal, "stub"); }
bool HostPatternSet::matches_name(std::string_view, uint16_t) const { return false; }
bool HostPatternSet::matches_ip(const IpAddress&, uint16_t) const { return false; }
bool HostPatternSet::matches(const Target&) const { return false; }
Result<Policy> Policy::parse(const std::vector<std::string>&) { return Status(Errc::internal, "stub"); }
}  // namespace airlock::proxy
