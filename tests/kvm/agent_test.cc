// The guest agent end to end: real microVMs booting the sandbox initramfs (scripts/
// build-sandbox-image.sh), commands and files through virtio-vsock. Each test case boots its own
// sandbox, so cases group related checks to keep the suite short on slow nested runners.
#include <doctest/doctest.h>
#include <openssl/sha.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "airlock/airlock.hpp"

using namespace airlock;
using namespace std::chrono_literals;

namespace {

std::unique_ptr<Sandbox> boot(SandboxOptions options = {}) {
  options.boot_timeout = Millis(240000);    // nested TCG runners are slow
  if (std::getenv("AIRLOCK_TEST_CONSOLE"))  // debugging: the guest console on stderr
    options.on_console = [](std::string_view s) { (void)!fwrite(s.data(), 1, s.size(), stderr); };
  auto sb = Sandbox::create(std::move(options));
  REQUIRE_MESSAGE(sb.ok(), sb.status().to_string());
  return std::move(sb).value();
}

ExecResult must(Result<ExecResult> r) {
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  return std::move(r).value();
}

std::string sha256_hex(std::string_view data) {
  uint8_t digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const uint8_t*>(data.data()), data.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (uint8_t b : digest) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

std::string random_bytes(size_t n, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace

TEST_CASE("commands: listing, exit codes, signals, streams, env, cwd, concurrency, timeout") {
  auto sb = boot({.env = {{"SANDBOX_VAR", "from options"}}});

  auto ls = must(sb->sh("ls -lh /"));
  CHECK(ls.exit_code == 0);
  CHECK(ls.stdout.find("init") != std::string::npos);
  CHECK(ls.stdout.find("proc") != std::string::npos);
  CHECK(ls.stdout.find("tmp") != std::string::npos);

  CHECK(must(sb->sh("true")).exit_code == 0);
  CHECK(must(sb->sh("exit 1")).exit_code == 1);
  auto missing = must(sb->sh("no-such-command-here"));
  CHECK(missing.exit_code == 127);
  CHECK(missing.stderr.find("not found") != std::string::npos);
  auto missing_argv = must(sb->exec({"no-such-binary"}));
  CHECK(missing_argv.exit_code == 127);
  CHECK(missing_argv.stderr.find("command not found") != std::string::npos);

  auto killed = must(sb->sh("kill -9 $$"));
  CHECK(killed.signal == SIGKILL);
  CHECK(killed.exit_code == -1);

  auto streams = must(sb->sh("echo to-out; echo to-err >&2; echo more-out"));
  CHECK(streams.stdout == "to-out\nmore-out\n");
  CHECK(streams.stderr == "to-err\n");
  CHECK(must(sb->sh("pwd", {.cwd = "/tmp"})).text() == "/tmp");
  CHECK(must(sb->sh("echo $SANDBOX_VAR")).text() == "from options");
  CHECK(must(sb->sh("echo $X", {.env = {{"X", "per call"}}})).text() == "per call");
  REQUIRE(sb->env().set("LATER", "set afterwards").ok());
  CHECK(must(sb->sh("echo $LATER")).text() == "set afterwards");
  CHECK(sb->env().get("LATER")->value_or("") == "set afterwards");
  CHECK(must(sb->sh("hostname")).text() == "airlock");
  CHECK(must(sb->exec({"cat"}, {.stdin_data = "piped"})).stdout == "piped");

  // The agent searches PATH itself (before vfork): the command's own PATH, relative entries
  // from its cwd, non-executable files skipped (126 if nothing else), and a script without #!
  // goes to /bin/sh, as execvp does.
  REQUIRE(sb->fs().write("/tmp/bin/hello-path", "echo found $0 $1\n", 0755).ok());
  REQUIRE(sb->fs().write("/tmp/noexec/hello-path", "echo wrong\n", 0644).ok());
  CHECK(must(sb->exec({"hello-path", "x"}, {.env = {{"PATH", "/tmp/noexec:/tmp/bin"}}})).text() ==
        "found /tmp/bin/hello-path x");
  CHECK(must(sb->exec({"hello-path"}, {.env = {{"PATH", "bin"}}, .cwd = "/tmp"})).text() ==
        "found /tmp/bin/hello-path");
  auto noexec = must(sb->exec({"hello-path"}, {.env = {{"PATH", "/tmp/noexec"}}}));
  CHECK(noexec.exit_code == 126);
  CHECK(noexec.stderr.find("Permission denied") != std::string::npos);
  auto nodir = must(sb->exec({"true"}, {.cwd = "/no/such/dir"}));
  CHECK(nodir.exit_code == 126);
  CHECK(nodir.stderr.find("cannot change directory") != std::string::npos);
  // Commands start with no signal ignored or blocked (the agent ignores SIGPIPE and blocks
  // SIGCHLD for itself).
  auto sigs = must(sb->exec({"grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status"}));
  CHECK(sigs.stdout == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");

  // 32 commands at once; each sleeps, so they must overlap to finish quickly.
  std::vector<std::thread> threads;
  std::atomic<int> good{0};
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 32; ++i) {
    threads.emplace_back([&, i] {
      auto r = sb->sh("sleep 1; echo " + std::to_string(i));
      if (r.ok() && r->exit_code == 0 && r->text() == std::to_string(i)) good++;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(good.load() == 32);
  double concurrent_s = seconds_since(t0);
  MESSAGE("32 concurrent `sleep 1` commands took " << concurrent_s << " s");
  CHECK(concurrent_s < 16);

  // A timeout kills the command and its children (the whole process group).
  auto timed = must(sb->sh("sleep 1000 & echo $! > /tmp/child; sleep 1000", {.timeout = 1500ms}));
  CHECK(timed.timed_out);
  CHECK(timed.signal == SIGKILL);
  std::this_thread::sleep_for(200ms);
  auto child_alive =
      must(sb->sh("kill -0 $(cat /tmp/child) 2>/dev/null && echo alive || echo gone"));
  CHECK(child_alive.text() == "gone");

  // spawn: streaming output, stdin, kill.
  std::string streamed;
  std::mutex m;
  auto p = sb->spawn({"/bin/sh", "-c", "while read line; do echo got:$line; done"},
                     {.on_stdout = [&](std::string_view d) {
                       std::lock_guard lock(m);
                       streamed += d;
                     }});
  REQUIRE(p.ok());
  REQUIRE((*p)->write_stdin("a\nb\n").ok());
  REQUIRE((*p)->close_stdin().ok());
  auto pr = (*p)->wait(30000ms);
  REQUIRE(pr.ok());
  CHECK(pr->exit_code == 0);
  {
    std::lock_guard lock(m);
    CHECK(streamed == "got:a\ngot:b\n");
  }
  auto sleeper = sb->spawn({"sleep", "1000"});
  REQUIRE(sleeper.ok());
  CHECK((*sleeper)->wait(100ms).status().code() == Errc::timeout);
  REQUIRE((*sleeper)->kill(SIGTERM).ok());
  auto sr = (*sleeper)->wait(30000ms);
  REQUIRE(sr.ok());
  CHECK(sr->signal == SIGTERM);

  auto pong = sb->ping("ping payload");
  REQUIRE(pong.ok());
  CHECK(pong.value() == "ping payload");
  sb->close();
  sb->close();  // idempotent
  CHECK(sb->sh("true").status().code() == Errc::closed);
}

TEST_CASE("bulk data: 64 MiB stdout, 16 MiB stdin, 32 MiB file round trip with mode") {
  auto sb = boot({.memory_bytes = 768ull << 20});

  // 64 MiB of stdout, compared by sha256 with what the guest computed.
  auto t0 = std::chrono::steady_clock::now();
  auto gen =
      must(sb->sh("dd if=/dev/urandom of=/tmp/big bs=1M count=64 2>/dev/null && "
                  "sha256sum /tmp/big"));
  REQUIRE(gen.exit_code == 0);
  std::string guest_sum = gen.stdout.substr(0, 64);
  t0 = std::chrono::steady_clock::now();
  auto big = must(sb->sh("cat /tmp/big"));
  double secs = seconds_since(t0);
  CHECK(big.exit_code == 0);
  REQUIRE(big.stdout.size() == 64ull << 20);
  CHECK(sha256_hex(big.stdout) == guest_sum);
  MESSAGE("64 MiB stdout in " << secs << " s (" << 64 / secs << " MiB/s)");
  big = {};
  must(sb->sh("rm /tmp/big"));

  // 16 MiB through stdin.
  std::string input = random_bytes(16u << 20, 7);
  auto in = must(sb->exec({"sha256sum"}, {.stdin_data = input}));
  CHECK(in.exit_code == 0);
  CHECK(in.stdout.substr(0, 64) == sha256_hex(input));
  input.clear();

  // 32 MiB binary file with an unusual mode, written and read back.
  std::string content = random_bytes(32u << 20, 11);
  content[0] = '\0';
  content[content.size() / 2] = '\n';
  REQUIRE(sb->fs().write("/tmp/data/blob.bin", content, 0751).ok());
  auto st = sb->fs().stat("/tmp/data/blob.bin");
  REQUIRE(st.ok());
  CHECK(st->type == FileStat::Type::regular);
  CHECK(st->size == content.size());
  CHECK(st->mode == 0751);
  CHECK(must(sb->sh("stat -c %a /tmp/data/blob.bin")).text() == "751");
  CHECK(must(sb->sh("sha256sum /tmp/data/blob.bin")).stdout.substr(0, 64) == sha256_hex(content));
  auto back = sb->fs().read("/tmp/data/blob.bin");
  REQUIRE(back.ok());
  CHECK(back->size() == content.size());
  CHECK(*back == content);

  // Host files: upload keeps the mode, download recreates it.
  char dir[] = "/tmp/airlock-kvm-agent.XXXXXX";
  REQUIRE(mkdtemp(dir));
  std::string host_in = std::string(dir) + "/in", host_out = std::string(dir) + "/out";
  {
    FILE* f = fopen(host_in.c_str(), "wb");
    REQUIRE(f);
    fwrite(content.data(), 1, 1 << 20, f);
    fclose(f);
    chmod(host_in.c_str(), 0604);
  }
  REQUIRE(sb->fs().upload(host_in, "/tmp/up/file").ok());
  CHECK(sb->fs().stat("/tmp/up/file")->mode == 0604);
  REQUIRE(sb->fs().download("/tmp/up/file", host_out).ok());
  struct stat hs;
  REQUIRE(::stat(host_out.c_str(), &hs) == 0);
  CHECK((hs.st_mode & 0777) == 0604);
  CHECK(hs.st_size == (1 << 20));
  std::string cleanup = std::string("rm -rf ") + dir;
  CHECK(system(cleanup.c_str()) == 0);

  REQUIRE(sb->fs().mkdir("/tmp/a/b/c").ok());
  CHECK(sb->fs().stat("/tmp/a/b/c")->type == FileStat::Type::directory);
  CHECK(sb->fs().remove("/tmp/a").code() == Errc::invalid_argument);
  REQUIRE(sb->fs().remove("/tmp/a", true).ok());
  CHECK(sb->fs().stat("/tmp/a").status().code() == Errc::not_found);
  CHECK(sb->fs().read("/nonexistent").status().code() == Errc::not_found);
}

TEST_CASE("the agent killed inside the guest fails pending calls promptly") {
  auto sb = boot();
  auto sleeper = sb->spawn({"sleep", "1000"});
  REQUIRE(sleeper.ok());
  // The shell's parent is the agent.
  auto killer = sb->spawn({"/bin/sh", "-c", "sleep 0.2; kill -9 $PPID"});
  REQUIRE(killer.ok());
  auto t0 = std::chrono::steady_clock::now();
  auto r = (*sleeper)->wait(60000ms);
  double secs = seconds_since(t0);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::closed);
  MESSAGE("pending wait failed after " << secs << " s: " << r.status().to_string());
  CHECK(secs < 20);
  auto after = sb->sh("true");
  REQUIRE(!after.ok());
  CHECK((after.status().code() == Errc::closed));
  CHECK(!sb->status().ok());
}

TEST_CASE("a hostile guest flooding vsock leaves the host fine and the sandbox usable") {
  auto sb = boot();
  // Thousands of connection attempts to ports nobody listens on: all refused.
  auto cf =
      must(sb->sh("/bin/airlock-guest-agent hostile connect-flood 300", {.timeout = 120000ms}));
  CHECK(cf.exit_code == 0);
  CHECK(cf.text() == "refused 300");
  // 64 MiB of well-formed output for a request the host never made, on the agent's own
  // connection: dropped, bounded, and the agent carries on afterwards.
  auto flood = must(sb->sh("/bin/airlock-guest-agent hostile flood $PPID", {.timeout = 120000ms}));
  CHECK(flood.exit_code == 0);
  CHECK(must(sb->sh("echo still here", {.timeout = 30000ms})).text() == "still here");
  // An absurd frame length ends this sandbox, with a clear error.
  auto huge = sb->sh("/bin/airlock-guest-agent hostile huge $PPID", {.timeout = 60000ms});
  REQUIRE(!huge.ok());
  CHECK(huge.status().code() == Errc::protocol);
  MESSAGE(huge.status().to_string());
  CHECK(sb->sh("true").status().code() == Errc::protocol);
  CHECK(sb->status().code() == Errc::protocol);
}

TEST_CASE(
    "hostile guest: garbage, unknown operations and host-only operations end only that sandbox") {
  for (const char* mode : {"garbage", "unknown-op", "wrong-direction"}) {
    CAPTURE(mode);
    auto sb = boot();
    auto t0 = std::chrono::steady_clock::now();
    auto r = sb->sh(std::string("/bin/airlock-guest-agent hostile ") + mode + " $PPID",
                    {.timeout = 60000ms});
    REQUIRE(!r.ok());
    CHECK(r.status().code() == Errc::protocol);
    CHECK(seconds_since(t0) < 60);
    CHECK(sb->ping().status().code() == Errc::protocol);
  }
}

TEST_CASE("a command stuck before its program runs does not hold up the agent") {
  auto sb = boot();
  // execve of a file in no format the kernel knows asks for a binfmt module: the kernel runs
  // kernel.modprobe and waits for it, inside execve, before the new program exists. With a
  // modprobe that sleeps, the command's process stays in execve (as it would on a hung mount).
  REQUIRE(sb->fs().write("/tmp/slow-modprobe", "#!/bin/sh\nexec sleep 600\n", 0755).ok());
  REQUIRE(sb->fs()
              .write("/tmp/unknown-format",
                     std::string("\x01\x02\x03\x04", 4) + std::string(252, '\0'), 0755)
              .ok());
  REQUIRE(must(sb->sh("echo /tmp/slow-modprobe > /proc/sys/kernel/modprobe")).exit_code == 0);

  auto stuck = sb->spawn({"/tmp/unknown-format"});
  REQUIRE_MESSAGE(stuck.ok(), stuck.status().to_string());
  // It really is stuck: the kernel's modprobe runs, and the command does not finish.
  bool modprobe_seen = false;
  for (int i = 0; i < 100 && !modprobe_seen; ++i) {
    modprobe_seen = must(sb->sh("ps")).stdout.find("sleep 600") != std::string::npos;
    if (!modprobe_seen) std::this_thread::sleep_for(100ms);
  }
  CHECK(modprobe_seen);
  CHECK((*stuck)->wait(Millis(2000)).status().code() == Errc::timeout);

  // Meanwhile everything else goes on: commands, files, ping.
  auto t0 = std::chrono::steady_clock::now();
  CHECK(must(sb->exec({"echo", "alive"})).stdout == "alive\n");
  CHECK(must(sb->sh("echo $((6 * 7))")).text() == "42");
  CHECK(sb->fs().write("/tmp/x", "y").ok());
  CHECK(sb->ping("p").ok());
  CHECK(seconds_since(t0) < 60);
  CHECK((*stuck)->wait(Millis(0)).status().code() == Errc::timeout);

  // Killing it ends the wait inside execve.
  REQUIRE((*stuck)->kill(SIGKILL).ok());
  auto r = (*stuck)->wait(Millis(60000));
  REQUIRE_MESSAGE(r.ok(), r.status().to_string());
  CHECK(r->signal == SIGKILL);
}

TEST_CASE("commands get every vCPU and the normal policy, the agent keeps to one vCPU") {
  auto sb = boot({.vcpus = 2});
  // The agent (the command's parent) runs SCHED_BATCH (policy 3) on one vCPU: the one the vsock
  // interrupt is delivered to.
  auto placement = must(sb->sh(
      "for d in /sys/bus/virtio/devices/*; do [ $(cat $d/device) = 0x0013 ] && n=${d##*/}; done;"
      "i=$(grep \" $n\\$\" /proc/interrupts | cut -d: -f1);"
      "echo $(cat /proc/irq/$((i))/effective_affinity_list);"
      "grep Cpus_allowed_list /proc/$PPID/status | cut -f2;"
      "cut -d' ' -f41 /proc/$PPID/stat"));
  std::string irq_cpu, agent_cpus, agent_policy;
  std::istringstream lines(placement.stdout);
  std::getline(lines, irq_cpu);
  std::getline(lines, agent_cpus);
  std::getline(lines, agent_policy);
  CHECK((irq_cpu == "0" || irq_cpu == "1"));
  CHECK(agent_cpus == irq_cpu);
  CHECK(agent_policy == "3");
  // Its commands do not inherit that: every CPU, SCHED_OTHER (policy 0), from exec and sh alike.
  auto exec = must(sb->exec({"grep", "Cpus_allowed_list", "/proc/self/status"}));
  CHECK(exec.stdout == "Cpus_allowed_list:\t0-1\n");
  auto policy = must(sb->exec({"cut", "-d ", "-f41", "/proc/self/stat"}));
  CHECK(policy.text() == "0");
  // What a command sets itself stays set (nothing of the agent's touches it afterwards).
  auto own =
      must(sb->sh("taskset -p 2 $$ >/dev/null; sleep 0.5; grep Cpus_allowed_list /proc/$$/status"));
  CHECK(own.stdout == "Cpus_allowed_list:\t1\n");
}
