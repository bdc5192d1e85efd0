// Sandbox lifecycle end to end: timeouts (extend, max_lifetime, what expiry frees), kill(),
// metering stats, a 4 GiB guest, and expose_http to a busybox httpd in the guest read with the
// host's curl. Boots are slow on nested runners (10-20 s each), so each case shares one sandbox
// between related checks.
#include <dirent.h>
#include <doctest/doctest.h>
#include <openssl/sha.h>

#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <thread>

#include "../proxy/harness.h"
#include "airlock/airlock.hpp"

using namespace airlock;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<Sandbox> boot(SandboxOptions options = {}) {
  options.boot_timeout = Millis(240000);  // nested TCG runners are slow
  if (std::getenv("AIRLOCK_TEST_CONSOLE"))
    options.on_console = [](std::string_view s) { (void)!fwrite(s.data(), 1, s.size(), stderr); };
  auto sb = Sandbox::create(std::move(options));
  REQUIRE_MESSAGE(sb.ok(), sb.status().to_string());
  return std::move(sb).value();
}

ExecResult must(Result<ExecResult> r) {
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

size_t count_dir(const char* path) {
  size_t n = 0;
  DIR* d = opendir(path);
  REQUIRE(d != nullptr);
  while (dirent* e = readdir(d))
    if (e->d_name[0] != '.') ++n;
  closedir(d);
  return n - (std::string(path) == "/proc/self/fd" ? 1 : 0);  // the DIR's own fd
}

struct Usage {
  size_t fds, threads;
};
Usage usage() {
  return {count_dir("/proc/self/fd"), count_dir("/proc/self/task")};
}

// Waits (bounded) until fds and threads are back to `base`; returns the last reading.
Usage settle_to(Usage base, Millis within) {
  auto until = std::chrono::steady_clock::now() + within;
  Usage u = usage();
  while ((u.fds != base.fds || u.threads != base.threads) &&
         std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(20ms);
    u = usage();
  }
  return u;
}

std::string run_host(const std::string& cmd) {
  std::string out;
  FILE* p = popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  pclose(p);
  return out;
}

std::string sha256_hex(std::string_view data) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), digest);
  std::string out;
  for (uint8_t b : digest) out += "0123456789abcdef"[b >> 4], out += "0123456789abcdef"[b & 15];
  return out;
}

}  // namespace

TEST_CASE("lifecycle: timeout kills and frees everything - extend and max_lifetime") {
  Usage before = usage();
  auto created = std::chrono::steady_clock::now();
  auto sb = boot({.timeout = 60000ms, .max_lifetime = 90000ms});
  auto boot_ms = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - created);
  MESSAGE("boot took ", boot_ms.count(), " ms");

  SandboxStats s = sb->stats();
  CHECK(s.running);
  REQUIRE(s.time_left.has_value());
  CHECK(*s.time_left <= 60000ms);
  CHECK(*s.time_left > 50000ms);

  // Extending moves the deadline; past max_lifetime it is refused and nothing changes.
  REQUIRE(sb->extend(20000ms).ok());
  CHECK(*sb->stats().time_left > 70000ms);
  Status refused = sb->extend(20000ms);  // 60 + 20 + 20 > 90
  CHECK(refused.code() == Errc::resource_exhausted);
  CHECK(refused.message().find("max_lifetime") != std::string::npos);
  CHECK(*sb->stats().time_left <= 80000ms);
  CHECK(sb->set_timeout(120000ms).code() == Errc::resource_exhausted);
  CHECK(sb->extend(-5ms).code() == Errc::invalid_argument);

  // A short timeout now: a command still running then fails at once with the reason.
  REQUIRE(sb->set_timeout(3000ms).ok());
  auto t0 = std::chrono::steady_clock::now();
  auto r = sb->sh("sleep 600");
  auto waited = std::chrono::steady_clock::now() - t0;
  REQUIRE_FALSE(r.ok());
  CHECK(r.status().code() == Errc::timeout);
  CHECK(r.status().message().find("timed out after") != std::string::npos);
  CHECK(waited >= 2500ms);
  CHECK(waited < 10000ms);
  Status st = sb->status();
  CHECK(st.code() == Errc::timeout);
  CHECK(st.message().find("sandbox timed out after") != std::string::npos);
  MESSAGE("status after expiry: ", st.to_string());

  // Everything is freed without anyone closing the sandbox: every thread and fd it had.
  Usage after = settle_to(before, 10000ms);
  CHECK(after.fds == before.fds);
  CHECK(after.threads == before.threads);
  MESSAGE("fds ", before.fds, " -> ", after.fds, ", threads ", before.threads, " -> ",
          after.threads);

  // Later calls fail at once; the stats are frozen.
  t0 = std::chrono::steady_clock::now();
  auto late = sb->sh("true");
  CHECK(late.status().code() == Errc::timeout);
  CHECK(sb->expose_http(80).status().code() == Errc::timeout);
  CHECK(sb->extend(1000ms).code() == Errc::timeout);
  CHECK(std::chrono::steady_clock::now() - t0 < 1000ms);
  SandboxStats end1 = sb->stats();
  std::this_thread::sleep_for(100ms);
  SandboxStats end2 = sb->stats();
  CHECK_FALSE(end1.running);
  CHECK(end1.uptime == end2.uptime);
  CHECK(end1.commands == 1);
  CHECK(end1.vcpu_time.count() > 0);
  CHECK(!sb->console_output().empty());
  sb->close();  // still fine
  CHECK(sb->status().code() == Errc::timeout);
}

TEST_CASE("lifecycle: a 4 GiB guest - stats and expose_http with curl and kill") {
  Usage before = usage();
  auto sb = boot({.memory_bytes = 4ull << 30, .vcpus = 2});
  auto mem = must(sb->sh("grep MemTotal /proc/meminfo"));
  long kib = std::atol(mem.stdout.c_str() + mem.stdout.find_first_of("0123456789"));
  MESSAGE("guest ", mem.text());
  CHECK(kib > 3500L * 1024);  // 4 GiB minus the kernel's reservations

  // Stats: CPU time grows with a busy loop in the guest; commands are counted exactly.
  SandboxStats s1 = sb->stats();
  CHECK(s1.running);
  CHECK_FALSE(s1.time_left.has_value());
  CHECK(s1.memory_bytes == (4ull << 30));
  CHECK(s1.memory_resident_bytes > 0);
  CHECK(s1.memory_resident_bytes < s1.memory_bytes);
  CHECK(s1.commands == 1);
  must(sb->sh("end=$(( $(date +%s) + 3 )); while [ $(date +%s) -lt $end ]; do :; done"));
  SandboxStats s2 = sb->stats();
  auto busy = std::chrono::duration_cast<Millis>(s2.vcpu_time - s1.vcpu_time);
  MESSAGE("vCPU time for a 3 s busy loop: ", busy.count(), " ms; resident ",
          s2.memory_resident_bytes >> 20, " MiB; uptime ", s2.uptime.count(), " ms");
  CHECK(busy >= 1500ms);
  CHECK(s2.uptime - s1.uptime >= 2000ms);  // whole seconds of `date`: 2 to 3 s
  CHECK(s2.commands == 2);

  // An HTTP server in the guest, reached from the host through expose_http.
  std::string small = "written by the guest " + std::to_string(std::random_device{}()) + "\n";
  REQUIRE(sb->fs().write("/www/hello.txt", small).ok());
  must(sb->sh("head -c 3000000 /dev/urandom > /www/big.bin"));
  std::string big_sha = must(sb->sh("sha256sum /www/big.bin | cut -d' ' -f1")).text();
  auto httpd = sb->spawn({"busybox", "httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/www"});
  REQUIRE_MESSAGE(httpd.ok(), httpd.status().to_string());
  // Until it listens (the guest needs a moment to start it).
  CHECK(must(sb->sh("for i in $(seq 100); do wget -q -O /dev/null "
                    "http://127.0.0.1:8080/hello.txt && exit 0; sleep 0.1; done; exit 1"))
            .exit_code == 0);
  auto url = sb->expose_http(8080);
  REQUIRE_MESSAGE(url.ok(), url.status().to_string());
  MESSAGE("exposed at ", *url);
  CHECK(url->rfind("http://127.0.0.1:", 0) == 0);
  auto again = sb->expose_port(8080);
  REQUIRE(again.ok());
  CHECK("http://" + *again == *url);

  CHECK(run_host("curl -sS --max-time 60 " + *url + "/hello.txt") == small);
  auto t_big = std::chrono::steady_clock::now();
  std::string big = run_host("curl -sS --max-time 120 " + *url + "/big.bin");
  auto big_ms = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t_big);
  MESSAGE("3 MB through expose_http (curl, busybox httpd) in ", big_ms.count(), " ms");
  CHECK(big.size() == 3000000);
  CHECK(sha256_hex(big) == big_sha);
  CHECK(run_host("curl -s -o /dev/null -w '%{http_code}' --max-time 60 " + *url + "/missing") ==
        "404");
  // A port nobody listens on: the connection just closes.
  auto dead = sb->expose_http(8081);
  REQUIRE(dead.ok());
  CHECK(run_host("curl -s -o /dev/null -w '%{http_code}' --max-time 60 " + *dead + "/") == "000");
  CHECK(sb->expose_port(0).status().code() == Errc::invalid_argument);

  // kill(): immediate; a pending call fails at once; everything is freed on return.
  std::thread pending([&] {
    auto r = sb->sh("sleep 600");
    CHECK(r.status().code() == Errc::closed);
    CHECK(r.status().message().find("killed") != std::string::npos);
  });
  std::this_thread::sleep_for(1000ms);
  auto t0 = std::chrono::steady_clock::now();
  sb->kill();
  auto kill_ms = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - t0);
  pending.join();
  MESSAGE("kill() took ", kill_ms.count(), " ms");
  CHECK(kill_ms < 5000ms);
  CHECK(sb->status().code() == Errc::closed);
  CHECK(sb->status().message() == "the sandbox was killed");
  CHECK(run_host("curl -s -o /dev/null -w '%{http_code}' --max-time 10 " + *url + "/hello.txt") ==
        "000");
  Usage after = settle_to(before, 5000ms);
  CHECK(after.fds == before.fds);
  CHECK(after.threads == before.threads);
  CHECK_FALSE(sb->stats().running);
  sb->kill();  // idempotent
  sb.reset();
}

TEST_CASE("lifecycle: stats count the bytes and requests through the egress proxy") {
  airlock::test::TempDir dir;
  airlock::test::Upstream upstream(nullptr, "127.0.0.1", 0, dir.file("upstream.log"));
  const std::string host = "api.example.test:" + std::to_string(upstream.port());
  SandboxOptions o;
  o.allow_net = {host};
  o.resolve_override["api.example.test"] = "127.0.0.1";
  auto sb = boot(std::move(o));
  SandboxStats s0 = sb->stats();
  CHECK(s0.net_requests == 0);
  CHECK(s0.net_bytes_up == 0);
  const std::string body(20000, 'x');
  auto r = must(sb->sh("echo -n " + body +
                       " > /tmp/body; wget -q -O - --post-file /tmp/body "
                       "http://" +
                       host + "/echo/lifecycle"));
  INFO(r.stderr);
  CHECK(r.exit_code == 0);
  CHECK(r.stdout.find("/echo/lifecycle") != std::string::npos);
  SandboxStats s1 = sb->stats();
  MESSAGE("proxy: ", s1.net_requests, " requests, ", s1.net_bytes_up, " bytes up, ",
          s1.net_bytes_down, " bytes down; response ", r.stdout.size(), " bytes");
  CHECK(s1.net_requests == 1);
  CHECK(s1.net_bytes_up >= body.size());
  CHECK(s1.net_bytes_down >= r.stdout.size());
  // Frozen after the end, and still there.
  sb->kill();
  SandboxStats s2 = sb->stats();
  CHECK(s2.net_bytes_up == s1.net_bytes_up);
  CHECK(s2.net_requests == 1);
}
