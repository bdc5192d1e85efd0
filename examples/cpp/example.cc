// airlock from C++: run a command, give the guest a secret it only sees as a placeholder, and
// watch a request to a host outside allow_net be refused.
#include <cstdio>
#include <string>

#include "airlock/airlock.hpp"

int main() {
  const std::string real_key = "sk-example-0123456789abcdef-not-real";
  airlock::SandboxOptions options;
  options.boot_timeout = airlock::Millis(240000);
  options.allow_net = {"api.example.com"};
  options.secrets = {{"API_KEY", real_key, {"api.example.com"}}};
  auto sb = airlock::Sandbox::create(std::move(options));
  if (!sb.ok()) {
    std::fprintf(stderr, "create failed: %s\n", sb.status().to_string().c_str());
    return 1;
  }
  auto r = (*sb)->sh("echo hello from $(uname -s) $(uname -r)");
  if (!r.ok() || r->exit_code != 0) return 1;
  std::printf("command: %s\n", r->text().c_str());

  auto key = (*sb)->sh("printf %s \"$API_KEY\"");
  if (!key.ok() || key->stdout.empty() || key->stdout.find(real_key) != std::string::npos) {
    std::fprintf(stderr, "the guest saw the real key or nothing\n");
    return 1;
  }
  std::printf("guest sees API_KEY=%s\n", key->stdout.c_str());
  // The guest's tools go through the proxy (http_proxy is set): example.org gets a 403.
  auto out = (*sb)->sh("wget -q -O /dev/null http://example.org/ 2>&1; echo \" exit=$?\"");
  if (!out.ok()) return 1;
  std::printf("request to example.org: %s\n", out->text().c_str());
  if (out->stdout.find("403") == std::string::npos ||
      out->stdout.find("exit=0") != std::string::npos) {
    std::fprintf(stderr, "expected the proxy's 403 for example.org\n");
    return 1;
  }
  (*sb)->close();
  std::printf("EXAMPLE ok command=ok secret=placeholder egress=refused\n");
  return 0;
}
