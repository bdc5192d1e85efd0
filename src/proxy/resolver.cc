#include "proxy/resolver.h"

namespace airlock::proxy {
Resolver::Resolver(std::map<std::string, std::string>) {}
Result<Resolver> Resolver::create(const std::map<std::string, std::string>&) { return Status(Errc::internal, "stub"); }
Result<Resolution> Resolver::resolve(std::string_view, uint16_t) const { return Status(Errc::internal, "stub"); }
Result<ResolvedAddress> Resolver::resolve_checked(std::string_view, uint16_t, const Policy&) const { return Status(Errc::internal, "stub"); }
}  // namespace airlock::proxy
