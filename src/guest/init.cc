#include "guest/init.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "guest/agent.h"
#include "guest/root.h"

namespace airlock::guest {

void console_log(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  dprintf(2, "airlock-init: %s\n", buf);
}

namespace {

void mount_fs(const char* source, const char* target, const char* type, unsigned long flags,
              const char* data = nullptr) {
  mkdir(target, 0755);
  if (mount(source, target, type, flags, data) != 0 && errno != EBUSY)
    console_log("mount %s on %s: %s", type, target, strerror(errno));
}

void mount_all() {
  mount_fs("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_fs("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC);
  mount_fs("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  mount_fs("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666");
  mount_fs("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_fs("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
  mount_fs("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755");
  // Conveniences some programs expect.
  symlink("/proc/self/fd", "/dev/fd");
  symlink("/proc/self/fd/0", "/dev/stdin");
  symlink("/proc/self/fd/1", "/dev/stdout");
  symlink("/proc/self/fd/2", "/dev/stderr");
}

// Loads the modules listed (relative to /lib/modules/<release>/) in /etc/modules.order.
void load_modules() {
  struct utsname uts;
  uname(&uts);
  std::string dir = std::string("/lib/modules/") + uts.release + "/";
  std::ifstream order("/etc/modules.order");
  std::string rel;
  while (std::getline(order, rel)) {
    if (rel.empty() || rel[0] == '#') continue;
    std::string path = dir + rel;
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      console_log("module %s: %s", path.c_str(), strerror(errno));
      continue;
    }
    if (syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST)
      console_log("loading %s: %s", rel.c_str(), strerror(errno));
    close(fd);
  }
}

void bring_up_loopback() {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  struct ifreq ifr {};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) console_log("lo up: %s", strerror(errno));
  }
  close(s);
}

[[noreturn]] void restart_machine(const char* why) {
  console_log("%s; restarting the machine", why);
  sync();
  reboot(RB_AUTOBOOT);
  // reboot() only returns on failure; PID 1 exiting panics the kernel, which (panic=-1)
  // restarts the machine as well.
  _exit(1);
}

}  // namespace

void run_init(const char* self_path) {
  // Signals for PID 1 are ignored unless handled; block the ones we wait for synchronously.
  sigset_t all;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, nullptr);

  mount_all();
  sethostname("airlock", 7);
  setsid();
  load_modules();
  // Root image and volumes, when the host attached any (guest/root.h).
  if (!setup_storage()) restart_machine("storage setup failed");
  bring_up_loopback();

  pid_t agent = fork();
  if (agent < 0) restart_machine("fork failed");
  if (agent == 0) {
    sigprocmask(SIG_UNBLOCK, &all, nullptr);
    setsid();
    _exit(run_agent());
  }

  // Reap everything; the agent's death ends the sandbox.
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) {
      if (errno == EINTR) continue;
      restart_machine("waitpid failed");
    }
    if (pid == agent) {
      char why[96];
      if (WIFSIGNALED(status))
        snprintf(why, sizeof why, "agent killed by signal %d", WTERMSIG(status));
      else
        snprintf(why, sizeof why, "agent exited with status %d", WEXITSTATUS(status));
      restart_machine(why);
    }
  }
  (void)self_path;
}

}  // namespace airlock::guest
