// airlock-proxy: the egress proxy as a standalone process, for testing and benchmarking without
// VMs. Secret values are never taken on the command line (they would show in ps and shell
// history): --secret NAME=ENV_VAR@hosts reads the value from the environment variable ENV_VAR.
//
//   airlock-proxy --listen 127.0.0.1:3128 --allow api.example.test
//       --secret OPENAI_API_KEY=REAL_KEY_VAR@api.example.test --ca-out /tmp/ca.pem
//
// Prints one line per listener ("listen <mode> <ip:port>") and per secret ("placeholder NAME
// <placeholder>"), then "ready", and serves until SIGINT or SIGTERM.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "airlock/proxy.hpp"

namespace {

void usage() {
  fprintf(
      stderr,
      "usage: airlock-proxy [options]\n"
      "  --listen IP:PORT             explicit proxy listener (default 127.0.0.1:3128)\n"
      "  --transparent-https IP:PORT  TLS listener routed by SNI\n"
      "  --transparent-http IP:PORT   plain HTTP listener routed by Host\n"
      "  --upstream-port N            port transparent clients meant (default 443/80)\n"
      "  --allow RULE                 allow_net rule (repeatable)\n"
      "  --secret NAME=ENV@h1,h2      secret NAME, value read from env var ENV, bound to hosts\n"
      "  --resolve HOST[:PORT]:IP     resolver override (like curl --resolve)\n"
      "  --ca-out FILE                write the proxy CA certificate (PEM)\n"
      "  --ca-bundle FILE             upstream trust store\n"
      "  --extra-ca FILE              also trusted upstream (repeatable)\n"
      "  --audit-jsonl FILE           append audit events as JSON lines\n"
      "  --workers N                  worker threads (default 2)\n"
      "  --substitute-in-body         substitute placeholders in request bodies\n"
      "  --header-timeout-ms N        client header timeout\n"
      "  --max-connections N\n");
}

bool parse_secret(const std::string& arg, airlock::SecretSpec* out, std::string* error) {
  size_t eq = arg.find('=');
  size_t at = arg.find('@');
  if (eq == std::string::npos || at == std::string::npos || at < eq) {
    *error = "--secret wants NAME=ENV_VAR@host1,host2";
    return false;
  }
  out->name = arg.substr(0, eq);
  std::string env = arg.substr(eq + 1, at - eq - 1);
  const char* value = getenv(env.c_str());
  if (!value || !*value) {
    *error = "environment variable " + env + " (for secret " + out->name + ") is empty";
    return false;
  }
  out->value = value;
  std::string hosts = arg.substr(at + 1);
  size_t start = 0;
  while (start <= hosts.size()) {
    size_t comma = hosts.find(',', start);
    std::string h =
        hosts.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (!h.empty()) out->hosts.push_back(h);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return true;
}

// "host:port:ip" or "host:ip" (IPv6 ip in brackets or bare after the second colon).
bool parse_resolve(const std::string& arg, std::map<std::string, std::string>* out) {
  size_t first = arg.find(':');
  if (first == std::string::npos) return false;
  std::string host = arg.substr(0, first);
  std::string rest = arg.substr(first + 1);
  size_t second = rest.find(':');
  if (second != std::string::npos &&
      rest.substr(0, second).find_first_not_of("0123456789") == std::string::npos && second > 0) {
    std::string ip = rest.substr(second + 1);
    if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
    (*out)[host + ":" + rest.substr(0, second)] = ip;
  } else {
    std::string ip = rest;
    if (ip.size() > 2 && ip.front() == '[' && ip.back() == ']') ip = ip.substr(1, ip.size() - 2);
    (*out)[host] = ip;
  }
  return true;
}

// A whole decimal number in [0, max], or nullopt.
std::optional<unsigned long> parse_number(const std::string& text, unsigned long max) {
  if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos) return {};
  errno = 0;
  unsigned long n = strtoul(text.c_str(), nullptr, 10);
  if (errno != 0 || n > max) return {};
  return n;
}

struct CommandLine {
  airlock::ProxyOptions options;
  std::string ca_out;
};

// What main does after parsing: serve, or end at once with a status.
enum class ParseOutcome { serve, help, bad_usage };

// Fills `cli` from the arguments; reports what is wrong on stderr and returns bad_usage.
ParseOutcome parse_command_line(const std::vector<std::string>& args, CommandLine* cli) {
  airlock::ProxyOptions& options = cli->options;
  options.listeners.clear();
  uint16_t upstream_port = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    // Takes the option's value; false (after saying so) when the arguments end first.
    auto value = [&](std::string* out) {
      if (i + 1 >= args.size()) {
        fprintf(stderr, "airlock-proxy: %s needs a value\n", a.c_str());
        return false;
      }
      *out = args[++i];
      return true;
    };
    auto number = [&](unsigned long max, unsigned long* out) {
      std::string v;
      if (!value(&v)) return false;
      auto n = parse_number(v, max);
      if (!n) {
        fprintf(stderr, "airlock-proxy: %s wants a number up to %lu, not '%s'\n", a.c_str(), max,
                v.c_str());
        return false;
      }
      *out = *n;
      return true;
    };
    std::string v;
    unsigned long n = 0;
    if (a == "--help" || a == "-h") {
      usage();
      return ParseOutcome::help;
    } else if (a == "--listen" || a == "--transparent-https" || a == "--transparent-http") {
      if (!value(&v)) return ParseOutcome::bad_usage;
      airlock::ListenerSpec spec;
      spec.address = v;
      spec.mode = a == "--listen"              ? airlock::ListenMode::explicit_proxy
                  : a == "--transparent-https" ? airlock::ListenMode::transparent_https
                                               : airlock::ListenMode::transparent_http;
      options.listeners.push_back(spec);
    } else if (a == "--upstream-port") {
      if (!number(65535, &n)) return ParseOutcome::bad_usage;
      upstream_port = static_cast<uint16_t>(n);
    } else if (a == "--allow") {
      if (!value(&v)) return ParseOutcome::bad_usage;
      options.allow_net.push_back(v);
    } else if (a == "--secret") {
      if (!value(&v)) return ParseOutcome::bad_usage;
      airlock::SecretSpec spec;
      std::string error;
      if (!parse_secret(v, &spec, &error)) {
        fprintf(stderr, "airlock-proxy: %s\n", error.c_str());
        return ParseOutcome::bad_usage;
      }
      options.secrets.push_back(std::move(spec));
    } else if (a == "--resolve") {
      if (!value(&v)) return ParseOutcome::bad_usage;
      if (!parse_resolve(v, &options.resolve_override)) {
        fprintf(stderr, "airlock-proxy: bad --resolve %s\n", v.c_str());
        return ParseOutcome::bad_usage;
      }
    } else if (a == "--ca-out") {
      if (!value(&cli->ca_out)) return ParseOutcome::bad_usage;
    } else if (a == "--ca-bundle") {
      if (!value(&options.ca_bundle)) return ParseOutcome::bad_usage;
    } else if (a == "--extra-ca") {
      if (!value(&v)) return ParseOutcome::bad_usage;
      options.extra_ca_files.push_back(v);
    } else if (a == "--audit-jsonl") {
      if (!value(&options.audit_jsonl_path)) return ParseOutcome::bad_usage;
    } else if (a == "--workers") {
      if (!number(1024, &n)) return ParseOutcome::bad_usage;
      options.worker_threads = static_cast<unsigned>(n);
    } else if (a == "--substitute-in-body") {
      options.substitute_in_body = true;
    } else if (a == "--header-timeout-ms") {
      if (!number(86400000, &n)) return ParseOutcome::bad_usage;
      options.limits.header_timeout = std::chrono::milliseconds(n);
    } else if (a == "--max-connections") {
      if (!number(10000000, &n)) return ParseOutcome::bad_usage;
      options.limits.max_connections = static_cast<size_t>(n);
    } else {
      fprintf(stderr, "airlock-proxy: unknown option %s\n", a.c_str());
      usage();
      return ParseOutcome::bad_usage;
    }
  }
  if (options.listeners.empty()) {
    airlock::ListenerSpec spec;
    spec.address = "127.0.0.1:3128";
    options.listeners.push_back(spec);
  }
  for (auto& l : options.listeners) l.upstream_port = upstream_port;
  return ParseOutcome::serve;
}

}  // namespace

int main(int argc, char** argv) {
  CommandLine cli;
  switch (parse_command_line(std::vector<std::string>(argv + 1, argv + argc), &cli)) {
    case ParseOutcome::serve:
      break;
    case ParseOutcome::help:
      return 0;
    case ParseOutcome::bad_usage:
      return 2;
  }
  airlock::ProxyOptions& options = cli.options;
  const std::string& ca_out = cli.ca_out;
  std::vector<airlock::ListenerSpec> specs = options.listeners;
  std::vector<std::string> secret_names;
  for (const auto& s : options.secrets) secret_names.push_back(s.name);

  // Block the stop signals before any thread starts so only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  auto proxy = airlock::Proxy::start(std::move(options));
  if (!proxy.ok()) {
    fprintf(stderr, "airlock-proxy: %s\n", proxy.status().to_string().c_str());
    return 1;
  }
  if (!ca_out.empty()) {
    std::ofstream f(ca_out, std::ios::trunc);
    f << (*proxy)->ca_pem();
    if (!f) {
      fprintf(stderr, "airlock-proxy: cannot write %s\n", ca_out.c_str());
      return 1;
    }
  }
  auto addresses = (*proxy)->listen_addresses();
  for (size_t i = 0; i < addresses.size(); ++i) {
    const char* mode = specs[i].mode == airlock::ListenMode::explicit_proxy ? "explicit"
                       : specs[i].mode == airlock::ListenMode::transparent_https
                           ? "transparent-https"
                           : "transparent-http";
    printf("listen %s %s\n", mode, addresses[i].c_str());
  }
  for (const auto& name : secret_names)
    printf("placeholder %s %s\n", name.c_str(), (*proxy)->placeholder(name).c_str());
  printf("ready\n");
  fflush(stdout);

  int sig = 0;
  sigwait(&stop_signals, &sig);
  (*proxy)->stop();
  auto stats = (*proxy)->stats();
  fprintf(stderr, "airlock-proxy: stopped (connections %llu, requests %llu, denied %llu)\n",
          static_cast<unsigned long long>(stats.connections),
          static_cast<unsigned long long>(stats.requests),
          static_cast<unsigned long long>(stats.denied));
  return 0;
}
