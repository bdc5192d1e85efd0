// Starting a command's process so that nothing the process does before its program runs can
// stall the agent: not a chdir into a hung mount, not a slow execve (vfork, which this replaced,
// suspends the agent until the child has exec'd).
//
// The child is a clone(CLONE_VM) on a stack of its own, without CLONE_VFORK: no page tables are
// copied (a fork of the agent, and its copy-on-write faults, dominated a short command in an
// emulated guest), and the agent goes on at once. The child shares the agent's memory (and its
// TLS, errno included) until it execs, so it runs only raw system calls on data the Launch owns;
// the agent keeps the Launch alive until it has reaped the child.
//
// Called by the agent's single thread.
#pragma once

#include <sched.h>
#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

namespace airlock::guest {

struct LaunchPlan {
  std::string path;  // the program, resolved; empty: not found (path_error says why)
  int path_error = 0;
  std::vector<std::string> argv;  // argv[0] as the command gave it
  std::vector<std::string> env;
  std::string cwd = "/";
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;  // become 0, 1, 2
  // Signals the agent ignores: the child sets them back to SIG_DFL (execve keeps SIG_IGN).
  const int* ignored_signals = nullptr;
  size_t ignored_count = 0;
  // The CPUs the command may use, set before execve (the agent itself runs on one CPU; see
  // placement.h); nullptr: the child keeps the agent's. Must outlive the Launch.
  const cpu_set_t* cpus = nullptr;
  size_t cpus_size = 0;
  // The agent runs SCHED_BATCH (placement.h): the command gets SCHED_OTHER back.
  bool reset_policy = false;
};

class Launch {
 public:
  explicit Launch(LaunchPlan plan);
  ~Launch();  // only once the child has exec'd or exited (reaped)
  Launch(const Launch&) = delete;
  Launch& operator=(const Launch&) = delete;

  // Starts the child (own process group, the plan's fds as 0/1/2, cwd, then execve with the
  // PATH semantics of execvp's ENOEXEC fallback). Returns its pid, or -1 with errno set. The
  // child reports its own failures: "airlock: ..." on its stderr, exit code 127 (not found) or
  // 126 (anything else).
  pid_t start();

 private:
  static int child_main(void* self);

  LaunchPlan plan_;
  std::vector<char*> argv_sh_;  // {"/bin/sh", argv..., nullptr}: argv_sh_ + 1 is the argv
  std::vector<char*> envp_;
  std::unique_ptr<char[]> stack_;
};

}  // namespace airlock::guest
