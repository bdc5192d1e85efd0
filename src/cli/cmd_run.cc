// airlock run: boots a sandbox, runs one command in it, prints its output, and exits with the
// command's exit code (128+N when it was killed by signal N; 124 when its --timeout expired;
// 125 when airlock itself failed).
//
//   airlock run [--memory MiB] [--cpus N] [--timeout SECONDS] [--env K=V]... -- CMD ARGS...
//   airlock run [options] 'shell string'        (one argument: run by /bin/sh -c)
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "airlock/sandbox.hpp"
#include "cli/commands.h"

#include "cli/util.h"

namespace airlock::cli {

namespace {

void run_usage(FILE* out) {
  std::fprintf(
      out,
      "usage: airlock run [options] -- COMMAND [ARGS...]\n"
      "       airlock run [options] 'SHELL COMMAND'\n"
      "  --memory MiB       guest memory (default 512)\n"
      "  --cpus N           vCPUs (default 2)\n"
      "  --timeout SECONDS  kill the command after this long (exit code 124)\n"
      "  --env KEY=VALUE    environment for the command (repeatable)\n"
      "  --kernel PATH      guest kernel (default: the cached one)\n"
      "  --initramfs PATH   guest initramfs (default: the cached sandbox image)\n"
      "  --console          copy the guest console to stderr\n"
      "  --allow HOST       let the guest reach HOST through the egress proxy (repeatable;\n"
      "                     \"*.example.com\", \"host:port\"); without it: no network\n"
      "  --secret NAME=ENV@HOST[,HOST...]\n"
      "                     the guest's $NAME is a placeholder that the proxy replaces by\n"
      "                     the value of the host's environment variable ENV on requests\n"
      "                     to those hosts only\n"
      "  --resolve HOST=IP  upstream name override for the proxy (tests, local upstreams)\n"
      "  --extra-ca FILE    also trust FILE's CAs for upstream TLS\n");
}

}  // namespace

int cmd_run(int argc, char** argv) {
  SandboxOptions options;
  ExecOptions exec;
  std::vector<std::string> command;
  bool dashdash = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    unsigned long long v = 0;
    auto value = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    if (dashdash) {
      command.push_back(a);
    } else if (a == "--") {
      dashdash = true;
    } else if (a == "-h" || a == "--help") {
      run_usage(stdout);
      return 0;
    } else if (a == "--memory" && parse_uint(value(), v) && v > 0 && v < (1ull << 20)) {
      options.memory_bytes = v << 20;
    } else if (a == "--cpus" && parse_uint(value(), v) && v > 0 && v <= 64) {
      options.vcpus = static_cast<unsigned>(v);
    } else if (a == "--timeout" && parse_uint(value(), v) && v > 0 && v < 4000000) {
      exec.timeout = Millis(v * 1000);
    } else if (a == "--env") {
      const char* kv = value();
      const char* eq = kv ? std::strchr(kv, '=') : nullptr;
      if (!eq || eq == kv) {
        std::fprintf(stderr, "airlock run: --env needs KEY=VALUE\n");
        return 2;
      }
      exec.env[std::string(kv, eq)] = eq + 1;
    } else if (a == "--kernel" && i + 1 < argc) {
      options.kernel_path = argv[++i];
    } else if (a == "--initramfs" && i + 1 < argc) {
      options.initramfs_path = argv[++i];
    } else if (a == "--console") {
      options.on_console = [](std::string_view s) { (void)!::write(2, s.data(), s.size()); };
    } else if (a == "--allow" && i + 1 < argc) {
      options.allow_net.push_back(argv[++i]);
    } else if (a == "--secret" && i + 1 < argc) {
      // NAME=ENV@host1,host2: the value is read from the host environment, never from argv.
      std::string spec = argv[++i];
      size_t eq = spec.find('='), at = spec.find('@');
      if (eq == std::string::npos || at == std::string::npos || at < eq || eq == 0) {
        std::fprintf(stderr, "airlock run: --secret needs NAME=ENV@HOST[,HOST...]\n");
        return 2;
      }
      SecretSpec secret;
      secret.name = spec.substr(0, eq);
      std::string env_name = spec.substr(eq + 1, at - eq - 1);
      const char* env_value = std::getenv(env_name.c_str());
      if (env_value == nullptr || *env_value == '\0') {
        std::fprintf(stderr, "airlock run: --secret: environment variable %s is not set\n",
                     env_name.c_str());
        return 2;
      }
      secret.value = env_value;
      std::string hosts = spec.substr(at + 1);
      for (size_t start = 0; start <= hosts.size();) {
        size_t comma = hosts.find(',', start);
        if (comma == std::string::npos) comma = hosts.size();
        if (comma > start) secret.hosts.push_back(hosts.substr(start, comma - start));
        start = comma + 1;
      }
      options.secrets.push_back(std::move(secret));
    } else if (a == "--resolve" && i + 1 < argc) {
      std::string spec = argv[++i];
      size_t eq = spec.rfind('=');
      if (eq == std::string::npos || eq == 0) {
        std::fprintf(stderr, "airlock run: --resolve needs HOST=IP\n");
        return 2;
      }
      options.resolve_override[spec.substr(0, eq)] = spec.substr(eq + 1);
    } else if (a == "--extra-ca" && i + 1 < argc) {
      options.extra_ca_files.push_back(argv[++i]);
    } else if (!a.empty() && a[0] == '-') {
      std::fprintf(stderr, "airlock run: bad option or value: %s\n", a.c_str());
      run_usage(stderr);
      return 2;
    } else {
      command.push_back(a);
    }
  }
  if (command.empty()) {
    run_usage(stderr);
    return 2;
  }
  // One argument without "--" is a shell string, as `airlock run 'ls -l | wc -l'`.
  if (!dashdash && command.size() == 1) command = {"/bin/sh", "-c", command[0]};

  auto sb = Sandbox::create(std::move(options));
  if (!sb.ok()) {
    std::fprintf(stderr, "airlock run: %s\n", sb.status().to_string().c_str());
    return 125;
  }
  // Output is streamed as it comes, not collected.
  SpawnOptions spawn;
  spawn.env = exec.env;
  spawn.timeout = exec.timeout;
  spawn.on_stdout = [](std::string_view d) { write_all(1, d); };
  spawn.on_stderr = [](std::string_view d) { write_all(2, d); };
  auto p = (*sb)->spawn(command, std::move(spawn));
  Result<ExecResult> r = p.ok() ? Result<ExecResult>(ExecResult{}) : Result<ExecResult>(p.status());
  if (p.ok()) {
    (void)(*p)->close_stdin();
    r = (*p)->wait(Millis(24ll * 3600 * 1000));
  }
  (*sb)->close();
  if (!r.ok()) {
    std::fprintf(stderr, "airlock run: %s\n", r.status().to_string().c_str());
    return 125;
  }
  if (r->timed_out) return 124;
  if (r->signal) return 128 + r->signal;
  return r->exit_code;
}

}  // namespace airlock::cli
