// Exec benchmark (the agent issue's Benchmark section):
//   create_to_first_result_ms  Sandbox::create() until the first sh("true") result
//   exec p50/p99               round trip of sh-less exec of `true`, over --runs runs
//   echo p50/p99               the floor: a raw vsock echo round trip (a guest echo server
//                              reached through the sandbox's vsock device), same sandbox
//   ping p50                   an agent protocol round trip without a process
// exec, ping and echo are measured interleaved, so a change in the machine's load (shared,
// nested runners) moves all three alike and the ratio stays meaningful.
//   stdout_mbps                64 MiB of stdout (cat of a tmpfs file) into sh()'s result
//   guest spawn floor          p50/p99 of spawning and waiting for /bin/true inside the guest,
//                              no host involved (airlock-guest-agent spawn-floor), sampled in
//                              chunks between the round trips: the part of exec p50 that is the
//                              guest's own process creation. "free": posix_spawn from a process
//                              on any vCPU; "agent-like": started as the agent starts commands
//                              (src/guest/launch.h, placement.h); "+pipes": with stdout and
//                              stderr on pipes read to end of file, as the agent collects them
//   guest kernel work          context switches, interrupts and softirqs (per CPU) per exec and
//                              per ping, from /proc/stat, /proc/interrupts and /proc/softirqs
//                              read as files (no process) before and after --runs of each
// Options for experiments: --guest-cmd CMD (repeatable): only run sh(CMD) after create and print
// its output (no RESULT line). --setup-cmd CMD (repeatable): run sh(CMD) after create, print its
// output, then measure as usual. --compare-initramfs PATH: a second sandbox booted from PATH;
// exec and ping on both are timed interleaved (an A/B of two guest agents under the same load)
// and B's figures printed after A's. --vcpus N: the sandboxes' vCPUs (default: SandboxOptions').
// Ends with: RESULT exec_p50_over_echo=<x> stdout_mbps=<y> create_to_first_result_ms=<z>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "airlock/airlock.hpp"
#include "sandbox/internal.h"

using namespace airlock;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

[[noreturn]] void die(const std::string& what, const Status& st) {
  std::fprintf(stderr, "bench_exec: %s: %s\n", what.c_str(), st.to_string().c_str());
  std::exit(1);
}

// One /proc/interrupts line: its per-CPU counts and description; plus /proc/stat's ctxt.
struct KernelCounters {
  uint64_t ctxt = 0;
  std::map<std::string, std::pair<std::vector<uint64_t>, std::string>> irqs;
};

KernelCounters read_counters(Sandbox& sb) {
  KernelCounters k;
  auto stat = sb.fs().read("/proc/stat");
  auto interrupts = sb.fs().read("/proc/interrupts");
  auto softirqs = sb.fs().read("/proc/softirqs");
  if (!softirqs.ok()) die("reading /proc/softirqs", softirqs.status());
  if (!stat.ok()) die("reading /proc/stat", stat.status());
  if (!interrupts.ok()) die("reading /proc/interrupts", interrupts.status());
  std::istringstream s(*stat);
  std::string key;
  while (s >> key) {
    if (key == "ctxt") s >> k.ctxt;
    s.ignore(1 << 20, '\n');
  }
  auto parse_table = [&](const std::string& text, const std::string& prefix) {
    std::istringstream in(text);
    std::string line, word;
    std::getline(in, line);
    size_t cpus = 0;
    for (std::istringstream h(line); h >> word;) ++cpus;
    while (std::getline(in, line)) {
      std::istringstream l(line);
      std::string label;
      l >> label;
      std::vector<uint64_t> counts;
      for (size_t i = 0; i < cpus; ++i) {
        uint64_t v;
        if (!(l >> v)) break;
        counts.push_back(v);
      }
      std::string desc;
      std::getline(l, desc);
      desc.erase(0, desc.find_first_not_of(' '));
      k.irqs[prefix + label] = {counts, desc};
    }
  };
  parse_table(*interrupts, "");
  parse_table(*softirqs, "softirq ");
  return k;
}

// "ctxt 12.3  RES 1.0 (0.5+0.5) ..." per operation, only what moved.
void print_counters(const char* what, const KernelCounters& a, const KernelCounters& b, int n) {
  std::printf("guest kernel per %-6s ctxt %.1f", what, static_cast<double>(b.ctxt - a.ctxt) / n);
  for (const auto& [label, entry] : b.irqs) {
    auto it = a.irqs.find(label);
    if (it == a.irqs.end()) continue;
    const auto& before = it->second.first;
    const auto& after = entry.first;
    uint64_t total = 0;
    std::string per_cpu;
    for (size_t i = 0; i < after.size() && i < before.size(); ++i) {
      total += after[i] - before[i];
      char part[32];
      std::snprintf(part, sizeof part, "%s%.1f", i ? "+" : "", (after[i] - before[i]) * 1.0 / n);
      per_cpu += part;
    }
    if (total * 10 < static_cast<uint64_t>(n)) continue;  // under 0.1 per operation
    std::string name = entry.second.substr(0, entry.second.find("  "));
    std::printf("  %s %.1f (%s%s%s)", label.c_str(), static_cast<double>(total) / n,
                per_cpu.c_str(), name.empty() ? "" : "; ", name.c_str());
  }
  std::printf("\n");
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 200;
  std::vector<std::string> guest_cmds, setup_cmds;
  std::string compare_initramfs;
  unsigned vcpus = SandboxOptions{}.vcpus;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--runs"))
      runs = std::max(10, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--guest-cmd"))
      guest_cmds.push_back(argv[++i]);
    else if (!std::strcmp(argv[i], "--setup-cmd"))
      setup_cmds.push_back(argv[++i]);
    else if (!std::strcmp(argv[i], "--compare-initramfs"))
      compare_initramfs = argv[++i];
    else if (!std::strcmp(argv[i], "--vcpus"))
      vcpus = static_cast<unsigned>(std::max(1, std::atoi(argv[++i])));
  }

  auto t0 = Clock::now();
  SandboxOptions options;
  options.boot_timeout = Millis(600000);
  options.memory_bytes = 768ull << 20;
  options.vcpus = vcpus;
  auto created = Sandbox::create(options);
  if (!created.ok()) die("create", created.status());
  auto sb = std::move(created).value();
  auto first = sb->sh("true");
  if (!first.ok()) die("first sh", first.status());
  double create_ms = ms_since(t0);
  for (const auto& cmd : setup_cmds) {
    auto r = sb->sh(cmd);
    if (!r.ok()) die(cmd, r.status());
    std::printf("$ %s\n%s%s[exit %d]\n", cmd.c_str(), r->stdout.c_str(), r->stderr.c_str(),
                r->exit_code);
  }
  if (!guest_cmds.empty()) {
    for (const auto& cmd : guest_cmds) {
      auto r = sb->sh(cmd);
      if (!r.ok()) die(cmd, r.status());
      std::printf("$ %s\n%s%s[exit %d]\n", cmd.c_str(), r->stdout.c_str(), r->stderr.c_str(),
                  r->exit_code);
    }
    return 0;
  }

  // The floor: a guest echo server on vsock port 5000, one byte there and back.
  auto server = sb->spawn({"/bin/airlock-guest-agent", "echo-server", "5000"});
  if (!server.ok()) die("echo server", server.status());
  auto vsock = sandbox::vsock_device(*sb);
  std::unique_ptr<devices::VsockStream> echo;
  for (int attempt = 0; attempt < 200 && !echo; ++attempt) {
    auto c = vsock->connect(5000, Millis(5000));
    if (c.ok())
      echo = std::move(c).value();
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (!echo) die("connect to the echo server", Status(Errc::unavailable, "no answer"));

  std::unique_ptr<Sandbox> sb_b;
  if (!compare_initramfs.empty()) {
    SandboxOptions b = options;
    b.initramfs_path = compare_initramfs;
    auto created_b = Sandbox::create(b);
    if (!created_b.ok()) die("create B", created_b.status());
    sb_b = std::move(created_b).value();
  }
  auto time_exec_on = [&](Sandbox& s) {
    auto t = Clock::now();
    auto r = s.exec({"true"});
    if (!r.ok() || r->exit_code != 0) {
      std::string console = s.console_output();
      std::fprintf(stderr, "%s\n",
                   console.substr(console.size() > 3000 ? console.size() - 3000 : 0).c_str());
      die("exec true", r.ok() ? Status(Errc::internal, "exit code") : r.status());
    }
    return ms_since(t);
  };
  auto time_ping_on = [&](Sandbox& s) {
    auto t = Clock::now();
    auto r = s.ping("x");
    if (!r.ok()) {
      std::string console = s.console_output();
      std::fprintf(stderr, "%s\n",
                   console.substr(console.size() > 3000 ? console.size() - 3000 : 0).c_str());
      die("ping", r.status());
    }
    return ms_since(t);
  };
  auto time_exec = [&] { return time_exec_on(*sb); };
  auto time_ping = [&] { return time_ping_on(*sb); };
  auto time_echo = [&] {
    auto t = Clock::now();
    Status st = echo->write("e", Millis(10000));
    if (!st.ok()) die("echo write", st);
    char b;
    auto r = echo->read(&b, 1, Millis(10000));
    if (!r.ok() || r.value() != 1)
      die("echo read", r.ok() ? Status(Errc::closed, "eof") : r.status());
    return ms_since(t);
  };
  // Interleaved (exec, ping, echo in turn, the order rotating), so the three see the same load:
  // on a shared, nested machine, measuring them one after another mostly measured the load.
  for (int i = 0; i < 5; ++i) time_exec(), time_ping(), time_echo();
  std::vector<double> exec_ms, ping_ms, echo_ms, exec_b_ms, ping_b_ms;
  // The guest's own process creation, in chunks between the round trips so it sees the same
  // load: mode -> samples.
  std::map<std::string, std::vector<double>> floor_ms;
  constexpr int kFloorChunk = 10;
  auto sample_floor = [&] {
    auto r = sb->exec({"/bin/airlock-guest-agent", "spawn-floor", std::to_string(kFloorChunk),
                       "/bin/true", "raw"});
    if (!r.ok() || r->exit_code != 0)
      die("spawn-floor", r.ok() ? Status(Errc::internal, r->stderr) : r.status());
    std::istringstream lines(r->stdout);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream words(line);
      std::string mode;
      words >> mode;
      for (double v; words >> v;) floor_ms[mode].push_back(v);
    }
  };
  for (int i = 0; i < runs; ++i) {
    if (i % kFloorChunk == 0) sample_floor();
    if (sb_b) {
      exec_b_ms.push_back(time_exec_on(*sb_b));
      ping_b_ms.push_back(time_ping_on(*sb_b));
    }
    for (int k = 0; k < 3; ++k) {
      switch ((i + k) % 3) {
        case 0:
          exec_ms.push_back(time_exec());
          break;
        case 1:
          ping_ms.push_back(time_ping());
          break;
        default:
          echo_ms.push_back(time_echo());
          break;
      }
    }
  }
  echo->close();
  (void)(*server)->kill(SIGKILL);

  // What one exec (and, for comparison, one ping) makes the guest kernel do.
  KernelCounters k0 = read_counters(*sb);
  for (int i = 0; i < runs; ++i) time_exec();
  KernelCounters k1 = read_counters(*sb);
  for (int i = 0; i < runs; ++i) time_ping();
  KernelCounters k2 = read_counters(*sb);

  // The guest's own floor: process creation with no host involvement.
  auto floor =
      sb->exec({"/bin/airlock-guest-agent", "spawn-floor", std::to_string(runs), "/bin/true"});
  if (!floor.ok() || floor->exit_code != 0)
    die("spawn-floor", floor.ok() ? Status(Errc::internal, floor->stderr) : floor.status());

  // Throughput: 64 MiB of stdout.
  auto gen = sb->sh("dd if=/dev/zero of=/tmp/big bs=1M count=64 2>/dev/null");
  if (!gen.ok() || gen->exit_code != 0)
    die("making the file", gen.ok() ? Status(Errc::internal, "dd") : gen.status());
  auto t = Clock::now();
  auto big = sb->sh("cat /tmp/big");
  double secs = ms_since(t) / 1000.0;
  if (!big.ok() || big->stdout.size() != (64u << 20))
    die("64 MiB stdout", big.ok() ? Status(Errc::internal, "short") : big.status());
  double mbps = 64.0 * 1.048576 / secs;  // MB/s (10^6 bytes)

  std::string line;
  double exec_p50 = percentile(exec_ms, 0.5), echo_p50 = percentile(echo_ms, 0.5);
  std::printf("create_to_first_result  %.1f ms\n", create_ms);
  std::printf("exec true               p50 %.3f ms  p99 %.3f ms  (%d runs)\n", exec_p50,
              percentile(exec_ms, 0.99), runs);
  std::printf("agent ping              p50 %.3f ms  p99 %.3f ms\n", percentile(ping_ms, 0.5),
              percentile(ping_ms, 0.99));
  std::printf("raw vsock echo (floor)  p50 %.3f ms  p99 %.3f ms\n", echo_p50,
              percentile(echo_ms, 0.99));
  std::printf("stdout 64 MiB           %.2f s  %.1f MB/s\n", secs, mbps);
  for (const auto& [mode, samples] : floor_ms)
    std::printf(
        "guest spawn floor %-16s p50 %.3f ms  p99 %.3f ms  (%zu spawns of /bin/true, "
        "interleaved)\n",
        mode.c_str(), percentile(samples, 0.5), percentile(samples, 0.99), samples.size());
  for (std::istringstream lines(floor->stdout); std::getline(lines, line);)
    std::printf("guest %s\n", line.c_str());
  print_counters("exec", k0, k1, runs);
  print_counters("ping", k1, k2, runs);
  if (sb_b) {
    std::printf("B exec true             p50 %.3f ms  p99 %.3f ms  (%s)\n",
                percentile(exec_b_ms, 0.5), percentile(exec_b_ms, 0.99), compare_initramfs.c_str());
    std::printf("B agent ping            p50 %.3f ms  p99 %.3f ms\n", percentile(ping_b_ms, 0.5),
                percentile(ping_b_ms, 0.99));
    KernelCounters b0 = read_counters(*sb_b);
    for (int i = 0; i < runs; ++i) time_exec_on(*sb_b);
    KernelCounters b1 = read_counters(*sb_b);
    print_counters("B exec", b0, b1, runs);
    auto floor_b =
        sb_b->exec({"/bin/airlock-guest-agent", "spawn-floor", std::to_string(runs), "/bin/true"});
    if (floor_b.ok() && floor_b->exit_code == 0)  // an older agent may lack the tool
      for (std::istringstream lines(floor_b->stdout); std::getline(lines, line);)
        std::printf("B guest %s\n", line.c_str());
    sb_b->close();
  }
  std::printf("RESULT exec_p50_over_echo=%.2f stdout_mbps=%.1f create_to_first_result_ms=%.0f\n",
              exec_p50 / echo_p50, mbps, create_ms);
  sb->close();
  return 0;
}
