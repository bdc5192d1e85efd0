#include "guest/spawn_floor.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <unistd.h>

#include <spawn.h>
#include <sys/wait.h>
#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "guest/launch.h"

extern char** environ;

namespace airlock::guest {

namespace {

double now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// /proc/stat's "ctxt" and "intr" totals.
void kernel_counters(unsigned long long& ctxt, unsigned long long& intr) {
  ctxt = intr = 0;
  std::ifstream stat("/proc/stat");
  std::string key;
  while (stat >> key) {
    if (key == "ctxt") stat >> ctxt;
    if (key == "intr") stat >> intr;
    stat.ignore(1 << 20, '\n');
  }
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

}  // namespace

namespace {

struct Sample {
  std::vector<double> ms;
  double ctxt = 0, intr = 0;
};

// `spawn` starts one child (pid, or -1); each is waited for before the next.
template <typename Spawn>
bool measure(int runs, Spawn spawn, Sample& out) {
  unsigned long long ctxt0, intr0, ctxt1, intr1;
  kernel_counters(ctxt0, intr0);
  for (int i = 0; i < runs; ++i) {
    double t = now_ms();
    pid_t pid = spawn();
    if (pid < 0) return false;
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    out.ms.push_back(now_ms() - t);
  }
  kernel_counters(ctxt1, intr1);
  out.ctxt = static_cast<double>(ctxt1 - ctxt0) / runs;
  out.intr = static_cast<double>(intr1 - intr0) / runs;
  return true;
}

bool g_raw = false;

void print(const char* how, int runs, const Sample& s) {
  if (g_raw) {
    std::printf("%s", how);
    for (double ms : s.ms) std::printf(" %.3f", ms);
    std::printf("\n");
    return;
  }
  std::printf(
      "spawn_floor %s runs=%d p50_ms=%.3f p99_ms=%.3f ctxt_per_spawn=%.1f "
      "intr_per_spawn=%.1f\n",
      how, runs, percentile(s.ms, 0.5), percentile(s.ms, 0.99), s.ctxt, s.intr);
}

}  // namespace

int run_spawn_floor(const char* runs_text, const char* program, bool raw) {
  g_raw = raw;
  int runs = std::max(1, std::atoi(runs_text));
  char* argv[] = {const_cast<char*>(program), nullptr};

  // As a program in the sandbox would: posix_spawn from a process free to run on any CPU.
  Sample free_run;
  int spawn_error = 0;
  bool ok = measure(
      runs,
      [&] {
        pid_t pid;
        spawn_error = posix_spawn(&pid, program, nullptr, nullptr, argv, environ);
        return spawn_error == 0 ? pid : -1;
      },
      free_run);
  if (!ok) {
    std::fprintf(stderr, "spawn-floor: %s: %s\n", program, strerror(spawn_error));
    return 1;
  }
  print("free", runs, free_run);

  // As the agent does (placement.h, launch.h): the parent on one CPU and SCHED_BATCH, the child
  // started by Launch with every CPU and SCHED_OTHER back.
  cpu_set_t all, one;
  if (sched_getaffinity(0, sizeof all, &all) != 0) return 1;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  struct sched_param none {};
  bool batch = sched_setscheduler(0, SCHED_BATCH, &none) == 0;
  if (sched_setaffinity(0, sizeof one, &one) != 0) return 1;
  Sample agent_like;
  std::unique_ptr<Launch> launch;
  ok = measure(
      runs,
      [&] {
        LaunchPlan plan;
        plan.path = program;
        plan.argv = {program};
        plan.stdin_fd = 0;
        plan.stdout_fd = 1;
        plan.stderr_fd = 2;
        plan.cpus = &all;
        plan.cpus_size = sizeof all;
        plan.reset_policy = batch;
        launch = std::make_unique<Launch>(std::move(plan));
        return launch->start();
      },
      agent_like);
  if (!ok) {
    std::fprintf(stderr, "spawn-floor: clone: %s\n", strerror(errno));
    return 1;
  }
  print("agent-like", runs, agent_like);

  // The same with the child's stdout and stderr on pipes read to end of file, as the agent
  // collects a command's output.
  Sample piped;
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  ok = measure(
      runs,
      [&] {
        for (int fd : {out[0], err[0]})
          if (fd >= 0) close(fd);
        if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) return -1;
        LaunchPlan plan;
        plan.path = program;
        plan.argv = {program};
        plan.stdin_fd = 0;
        plan.stdout_fd = out[1];
        plan.stderr_fd = err[1];
        plan.cpus = &all;
        plan.cpus_size = sizeof all;
        plan.reset_policy = batch;
        launch = std::make_unique<Launch>(std::move(plan));
        pid_t pid = launch->start();
        close(out[1]);
        close(err[1]);
        struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
        char buf[4096];
        int open_fds = 2;
        while (pid > 0 && open_fds > 0 && poll(fds, 2, -1) > 0)
          for (auto& f : fds)
            if (f.fd >= 0 && f.revents && read(f.fd, buf, sizeof buf) <= 0) {
              f.fd = -1;
              --open_fds;
            }
        return pid;
      },
      piped);
  if (!ok) {
    std::fprintf(stderr, "spawn-floor: pipes: %s\n", strerror(errno));
    return 1;
  }
  print("agent-like+pipes", runs, piped);
  return 0;
}

}  // namespace airlock::guest
