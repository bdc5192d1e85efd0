// Exec benchmark (the agent issue's Benchmark section):
//   create_to_first_result_ms  Sandbox::create() until the first sh("true") result
//   exec p50/p99               round trip of sh-less exec of `true`, over --runs runs
//   echo p50/p99               the floor: a raw vsock echo round trip (a guest echo server
//                              reached through the sandbox's vsock device), same sandbox
//   ping p50                   an agent protocol round trip without a process
// exec, ping and echo are measured interleaved, so a change in the machine's load (shared,
// nested runners) moves all three alike and the ratio stays meaningful.
//   stdout_mbps                64 MiB of stdout (cat of a tmpfs file) into sh()'s result
// Ends with: RESULT exec_p50_over_echo=<x> stdout_mbps=<y> create_to_first_result_ms=<z>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
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

}  // namespace

int main(int argc, char** argv) {
  int runs = 200;
  for (int i = 1; i + 1 < argc; ++i)
    if (!std::strcmp(argv[i], "--runs")) runs = std::max(10, std::atoi(argv[++i]));

  auto t0 = Clock::now();
  SandboxOptions options;
  options.boot_timeout = Millis(600000);
  options.memory_bytes = 768ull << 20;
  auto created = Sandbox::create(options);
  if (!created.ok()) die("create", created.status());
  auto sb = std::move(created).value();
  auto first = sb->sh("true");
  if (!first.ok()) die("first sh", first.status());
  double create_ms = ms_since(t0);

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

  auto time_exec = [&] {
    auto t = Clock::now();
    auto r = sb->exec({"true"});
    if (!r.ok() || r->exit_code != 0)
      die("exec true", r.ok() ? Status(Errc::internal, "exit code") : r.status());
    return ms_since(t);
  };
  auto time_ping = [&] {
    auto t = Clock::now();
    auto r = sb->ping("x");
    if (!r.ok()) die("ping", r.status());
    return ms_since(t);
  };
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
  std::vector<double> exec_ms, ping_ms, echo_ms;
  for (int i = 0; i < runs; ++i) {
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

  double exec_p50 = percentile(exec_ms, 0.5), echo_p50 = percentile(echo_ms, 0.5);
  std::printf("create_to_first_result  %.1f ms\n", create_ms);
  std::printf("exec true               p50 %.3f ms  p99 %.3f ms  (%d runs)\n", exec_p50,
              percentile(exec_ms, 0.99), runs);
  std::printf("agent ping              p50 %.3f ms  p99 %.3f ms\n", percentile(ping_ms, 0.5),
              percentile(ping_ms, 0.99));
  std::printf("raw vsock echo (floor)  p50 %.3f ms  p99 %.3f ms\n", echo_p50,
              percentile(echo_ms, 0.99));
  std::printf("stdout 64 MiB           %.2f s  %.1f MB/s\n", secs, mbps);
  std::printf("RESULT exec_p50_over_echo=%.2f stdout_mbps=%.1f create_to_first_result_ms=%.0f\n",
              exec_p50 / echo_p50, mbps, create_ms);
  sb->close();
  return 0;
}
