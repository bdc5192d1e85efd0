#include "image/tool.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <string_view>

#include "base/fd.h"

extern char** environ;

namespace airlock::image {

namespace {

constexpr size_t kMaxOutput = 4096;

bool is_executable(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

Result<std::string> find_tool(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (is_executable(name)) return name;
    return Status(Errc::unavailable, name + " is not an executable file");
  }
  std::string dirs;
  if (const char* path = std::getenv("PATH")) dirs = path;
  dirs += ":/usr/sbin:/sbin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= dirs.size()) {
    size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const std::string dir = dirs.substr(start, end - start);
    if (!dir.empty() && is_executable(dir + "/" + name)) return dir + "/" + name;
    start = end + 1;
  }
  return Status(Errc::unavailable, name + " not found (install e2fsprogs: scripts/setup.sh)");
}

Status run_tool(const std::vector<std::string>& argv, int max_ok_exit) {
  if (argv.empty()) return Status(Errc::invalid_argument, "run_tool: empty argv");
  AIRLOCK_ASSIGN_OR_RETURN(const std::string program, find_tool(argv[0]));
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) return errno_status("pipe2");
  UniqueFd read_end(pipe_fds[0]);
  UniqueFd write_end(pipe_fds[1]);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int err = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  write_end.reset();
  if (err != 0) return errno_status(err, "starting " + program);

  // Keeps the end of the output: that is where tools say what went wrong.
  std::string output;
  char buf[1024];
  for (;;) {
    const ssize_t n = ::read(read_end.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buf, static_cast<size_t>(n));
    if (output.size() > kMaxOutput) output.erase(0, output.size() - kMaxOutput);
  }
  int wstatus = 0;
  while (::waitpid(pid, &wstatus, 0) < 0) {
    if (errno != EINTR) return errno_status("waitpid");
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) <= max_ok_exit) return ok_status();
  while (!output.empty() && (output.back() == '\n' || output.back() == ' ')) output.pop_back();
  const std::string how = WIFEXITED(wstatus)
                              ? "exited with " + std::to_string(WEXITSTATUS(wstatus))
                              : "was killed by signal " + std::to_string(WTERMSIG(wstatus));
  return Status(Errc::io, argv[0] + " " + how + (output.empty() ? "" : ": " + output));
}

}  // namespace airlock::image
