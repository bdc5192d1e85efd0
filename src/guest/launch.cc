#include "guest/launch.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

namespace airlock::guest {

namespace {

constexpr size_t kChildStack = 64 * 1024;
constexpr size_t kSpareStacks = 8;

// Stacks of finished launches, reused: a fresh one each time meant heap growth and trimming
// (page faults, and TLB flushes that reach every vCPU the agent's memory was ever live on).
std::vector<std::unique_ptr<char[]>>& spare_stacks() {
  static std::vector<std::unique_ptr<char[]>> stacks;
  return stacks;
}

// A system call that never touches errno (the child shares the agent's TLS): the kernel's
// return value, -errno on failure. x86_64 only, like the rest of the guest side.
long raw_syscall(long number, long a = 0, long b = 0, long c = 0, long d = 0) {
  long ret;
  register long r10 asm("r10") = d;
  asm volatile("syscall"
               : "=a"(ret)
               : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10)
               : "rcx", "r11", "memory");
  return ret;
}

long raw(long number, const void* a, long b = 0, long c = 0, long d = 0) {
  return raw_syscall(number, reinterpret_cast<long>(a), b, c, d);
}

// "airlock: <a><b>: <c>\n" on the child's fd 2.
void child_message(const char* a, const char* b, const char* c) {
  char buf[512];
  size_t n = 0;
  for (const char* part : {"airlock: ", a, b, ": ", c, "\n"})
    for (const char* p = part; *p && n < sizeof buf; ++p) buf[n++] = *p;
  raw_syscall(SYS_write, 2, reinterpret_cast<long>(buf), static_cast<long>(n));
}

[[noreturn]] void child_exit(int code) {
  for (;;) raw_syscall(SYS_exit_group, code);
}

// fd `from` as `to`, inheritable across execve.
void move_fd(int from, int to) {
  if (from == to)
    raw_syscall(SYS_fcntl, to, F_SETFD, 0);  // dup2 would leave its FD_CLOEXEC
  else
    raw_syscall(SYS_dup2, from, to);
}

}  // namespace

Launch::Launch(LaunchPlan plan) : plan_(std::move(plan)) {
  argv_sh_.reserve(plan_.argv.size() + 2);
  argv_sh_.push_back(const_cast<char*>("/bin/sh"));
  for (auto& a : plan_.argv) argv_sh_.push_back(a.data());
  argv_sh_.push_back(nullptr);
  envp_.reserve(plan_.env.size() + 1);
  for (auto& e : plan_.env) envp_.push_back(e.data());
  envp_.push_back(nullptr);
}

Launch::~Launch() {
  if (stack_ && spare_stacks().size() < kSpareStacks) spare_stacks().push_back(std::move(stack_));
}

pid_t Launch::start() {
  if (!spare_stacks().empty()) {
    stack_ = std::move(spare_stacks().back());
    spare_stacks().pop_back();
  } else {
    stack_.reset(new char[kChildStack]);
  }
  // The stack grows down from its (16-byte aligned) end.
  auto top = reinterpret_cast<uintptr_t>(stack_.get() + kChildStack) & ~uintptr_t{15};
  return clone(&Launch::child_main, reinterpret_cast<void*>(top), CLONE_VM | SIGCHLD, this);
}

int Launch::child_main(void* self) {
  Launch& l = *static_cast<Launch*>(self);
  const LaunchPlan& p = l.plan_;
  // Every CPU and the normal policy back before anything else, so even a failure message is
  // written by a process like any other.
  if (p.cpus)
    raw_syscall(SYS_sched_setaffinity, 0, static_cast<long>(p.cpus_size),
                reinterpret_cast<long>(p.cpus));
  if (p.reset_policy) {
    struct sched_param normal {};
    raw_syscall(SYS_sched_setscheduler, 0, SCHED_OTHER, reinterpret_cast<long>(&normal));
  }
  // Own process group (so timeouts and kill reach its children); signals back to defaults:
  // execve resets handled ones itself, ignored ones and the mask survive it.
  raw_syscall(SYS_setpgid, 0, 0);
  struct {
    void* handler;
    unsigned long flags;
    void* restorer;
    uint64_t mask;
  } default_action{reinterpret_cast<void*>(SIG_DFL), 0, nullptr, 0};
  for (size_t i = 0; i < p.ignored_count; ++i)
    raw_syscall(SYS_rt_sigaction, p.ignored_signals[i], reinterpret_cast<long>(&default_action), 0,
                sizeof default_action.mask);
  uint64_t no_signals = 0;
  raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, reinterpret_cast<long>(&no_signals), 0,
              sizeof no_signals);
  move_fd(p.stdin_fd, 0);
  move_fd(p.stdout_fd, 1);
  move_fd(p.stderr_fd, 2);
  const char* name = p.argv[0].c_str();
  if (long rc = raw(SYS_chdir, p.cwd.c_str()); rc < 0) {
    child_message("cannot change directory to ", p.cwd.c_str(),
                  strerrordesc_np(static_cast<int>(-rc)));
    child_exit(126);
  }
  if (p.path.empty()) {
    child_message(name, "",
                  p.path_error == ENOENT ? "command not found" : strerrordesc_np(p.path_error));
    child_exit(p.path_error == ENOENT ? 127 : 126);
  }
  long err = -raw(SYS_execve, p.path.c_str(), reinterpret_cast<long>(l.argv_sh_.data() + 1),
                  reinterpret_cast<long>(l.envp_.data()));
  if (err == ENOEXEC) {
    // A script without #!: /bin/sh runs it, as execvp does.
    l.argv_sh_[1] = const_cast<char*>(p.path.c_str());
    err = -raw(SYS_execve, "/bin/sh", reinterpret_cast<long>(l.argv_sh_.data()),
               reinterpret_cast<long>(l.envp_.data()));
  }
  child_message(name, "",
                err == ENOENT ? "command not found" : strerrordesc_np(static_cast<int>(err)));
  child_exit(err == ENOENT ? 127 : 126);
}

}  // namespace airlock::guest
