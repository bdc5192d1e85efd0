#include "guest/agent.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/vm_sockets.h>
#include <poll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "agent/protocol.h"
#include "guest/forward.h"
#include "guest/launch.h"
#include "guest/placement.h"

extern char** environ;

namespace airlock::guest {

namespace proto = airlock::agent::proto;
using proto::Op;

namespace {

// Past this much unsent output we stop reading children's pipes and files.
constexpr size_t kOutputHighWater = 1u << 20;
// After a command's main process exits, how long its pipes may stay open (a background child
// holding them) before we stop waiting for end of file.
constexpr int64_t kPipeGraceMs = 200;

int64_t now_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

void close_fd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

std::vector<std::string> initial_environment() {
  return {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
          "TERM=dumb", "LANG=C.UTF-8", "TMPDIR=/tmp"};
}

std::string env_key(const std::string& entry) {
  return entry.substr(0, entry.find('='));
}

void env_put(std::vector<std::string>& env, const std::string& entry) {
  std::string key = env_key(entry);
  for (auto& e : env)
    if (env_key(e) == key) {
      e = entry;
      return;
    }
  env.push_back(entry);
}

int mkdir_parents(const std::string& path, mode_t mode) {
  std::string cur;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    cur = path.substr(0, pos);
    if (cur.empty()) continue;
    if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST) return -1;
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return 0;
}

int remove_tree(int parent_fd, const char* name) {
  struct stat st;
  if (fstatat(parent_fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return -1;
  if (!S_ISDIR(st.st_mode)) return unlinkat(parent_fd, name, 0);
  int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return -1;
  DIR* d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  int rc = 0;
  while (struct dirent* e = readdir(d)) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    if (remove_tree(dirfd(d), e->d_name) != 0) rc = -1;
  }
  closedir(d);
  if (rc != 0) return rc;
  return unlinkat(parent_fd, name, AT_REMOVEDIR);
}

struct Command {
  uint32_t id = 0;
  pid_t pid = -1;
  int stdin_fd = -1, stdout_fd = -1, stderr_fd = -1;
  std::string stdin_buf;
  bool stdin_close_requested = false;
  bool exited = false;
  int wait_status = 0;
  int64_t exited_at = 0;
  int64_t deadline = 0;  // 0: none
  bool timed_out = false;
  bool started_pending = false;  // exec_flags::kDeferStarted: Started not sent yet
  // Memory the child shares until it execs or exits: kept until it is reaped.
  std::unique_ptr<Launch> launch;
};

struct FileRead {
  int fd = -1;
};

class Agent {
 public:
  Agent(int sock, const CpuPlacement& placement) : sock_(sock), placement_(placement) {}
  int run();

 private:
  void send(Op op, uint32_t id, std::string_view payload = {}) {
    out_.append(proto::encode_frame(op, id, payload));
  }
  void send_error(uint32_t id, int err, const std::string& what) {
    proto::ErrorMessage m{err, what + (err ? std::string(": ") + strerror(err) : std::string())};
    send(Op::kError, id, m.encode());
  }
  bool flush_output();  // false when the connection is gone
  bool handle_frame(const proto::Frame& f);
  void start_exec(uint32_t id, const proto::ExecRequest& req);
  void send_started(Command& c);  // a deferred Started, before the command's next frame
  void pump_command(Command& c, const struct pollfd* out_pfd, const struct pollfd* err_pfd,
                    const struct pollfd* in_pfd);
  void reap_children();
  void finish_commands();
  void pump_file_reads();
  void file_write_begin(uint32_t id, const proto::PathRequest& req);
  void stat_path(uint32_t id, const std::string& path, Op reply);

  int sock_;
  const CpuPlacement placement_;
  int sigfd_ = -1;
  std::string out_;
  size_t out_off_ = 0;
  proto::FrameDecoder decoder_;
  std::map<uint32_t, std::unique_ptr<Command>> commands_;
  std::map<uint32_t, int> writes_;      // FileWrite in progress: id -> fd
  std::set<uint32_t> failed_writes_;    // FileWrite that failed early: ignore its chunks
  std::map<uint32_t, FileRead> reads_;  // FileRead in progress
  std::vector<std::string> env_ = initial_environment();
  int devnull_ = -1;                  // stdin of commands without one
  std::vector<int> ignored_signals_;  // SIG_IGN here; commands get them back at default
};

bool Agent::flush_output() {
  while (out_off_ < out_.size()) {
    ssize_t n = ::send(sock_, out_.data() + out_off_, out_.size() - out_off_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      return false;
    }
    out_off_ += static_cast<size_t>(n);
  }
  if (out_off_ == out_.size()) {
    out_.clear();
    out_off_ = 0;
  } else if (out_off_ > (1u << 20)) {
    out_.erase(0, out_off_);
    out_off_ = 0;
  }
  return true;
}

size_t pending(const std::string& out, size_t off) {
  return out.size() - off;
}

// execvp's PATH search, done by the agent before the child starts (launch.h: the child makes
// raw system calls only):
// the first regular executable file among PATH's directories, relative ones taken from `cwd`.
// Sets *err (ENOENT, or EACCES if only non-executable candidates exist) when none is found.
std::string find_in_path(const std::string& name, const std::vector<std::string>& env,
                         const char* cwd, int* err) {
  if (name.find('/') != std::string::npos) return name;
  *err = ENOENT;
  if (name.empty()) return {};
  std::string path_var = "/bin:/usr/bin";  // execvp's default without PATH
  for (const auto& e : env)
    if (e.compare(0, 5, "PATH=") == 0) path_var = e.substr(5);
  size_t pos = 0;
  for (;;) {
    size_t colon = path_var.find(':', pos);
    std::string dir = path_var.substr(pos, colon == std::string::npos ? colon : colon - pos);
    if (dir.empty()) dir = ".";
    std::string candidate = (dir[0] == '/' ? dir : std::string(cwd) + "/" + dir) + "/" + name;
    struct stat st;
    if (stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(candidate.c_str(), X_OK) == 0) return candidate;
      *err = EACCES;
    }
    if (colon == std::string::npos) break;
    pos = colon + 1;
  }
  return {};
}

void Agent::start_exec(uint32_t id, const proto::ExecRequest& req) {
  if (commands_.count(id)) return send_error(id, EEXIST, "request id already running");
  int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1}, err_pipe[2] = {-1, -1};
  bool want_stdin = req.flags & proto::exec_flags::kStdin;
  auto close_pipes = [&] {
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]})
      if (fd >= 0) close(fd);
  };
  if ((want_stdin ? pipe2(in_pipe, O_CLOEXEC) : 0) != 0 || pipe2(out_pipe, O_CLOEXEC) != 0 ||
      pipe2(err_pipe, O_CLOEXEC) != 0) {
    int err = errno;
    close_pipes();
    return send_error(id, err, "pipe");
  }
  std::vector<std::string> env =
      (req.flags & proto::exec_flags::kClearEnv) ? std::vector<std::string>{} : env_;
  for (const auto& e : req.env) env_put(env, e);
  const char* cwd = req.cwd.empty() ? "/" : req.cwd.c_str();
  int path_error = ENOENT;
  std::string path = find_in_path(req.argv[0], env, cwd, &path_error);

  LaunchPlan plan;
  plan.path = std::move(path);
  plan.path_error = path_error;
  plan.argv = req.argv;
  plan.env = std::move(env);
  plan.cwd = cwd;
  plan.stdin_fd = want_stdin ? in_pipe[0] : devnull_;
  plan.stdout_fd = out_pipe[1];
  plan.stderr_fd = err_pipe[1];
  plan.ignored_signals = ignored_signals_.data();
  plan.ignored_count = ignored_signals_.size();
  if (placement_.pinned) {
    plan.cpus = &placement_.all;
    plan.cpus_size = sizeof placement_.all;
  }
  plan.reset_policy = placement_.batch;
  auto launch = std::make_unique<Launch>(std::move(plan));
  pid_t pid = launch->start();
  if (pid < 0) {
    int err = errno;
    close_pipes();
    return send_error(id, err, "clone");
  }
  setpgid(pid, pid);  // also here, so a kill right after Started reaches the group
  auto c = std::make_unique<Command>();
  c->id = id;
  c->pid = pid;
  c->launch = std::move(launch);
  c->started_pending = req.flags & proto::exec_flags::kDeferStarted;
  if (want_stdin) {
    close(in_pipe[0]);
    c->stdin_fd = in_pipe[1];
    fcntl(c->stdin_fd, F_SETFL, O_NONBLOCK);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  c->stdout_fd = out_pipe[0];
  c->stderr_fd = err_pipe[0];
  fcntl(c->stdout_fd, F_SETFL, O_NONBLOCK);
  fcntl(c->stderr_fd, F_SETFL, O_NONBLOCK);
  if (req.timeout_ms) c->deadline = now_ms() + req.timeout_ms;
  if (!c->started_pending)
    send(Op::kStarted, id, proto::U32Message{static_cast<uint32_t>(pid)}.encode());
  commands_[id] = std::move(c);
}

void Agent::send_started(Command& c) {
  if (!c.started_pending) return;
  c.started_pending = false;
  send(Op::kStarted, c.id, proto::U32Message{static_cast<uint32_t>(c.pid)}.encode());
}

void Agent::file_write_begin(uint32_t id, const proto::PathRequest& req) {
  if (writes_.count(id) || failed_writes_.count(id))
    return send_error(id, EEXIST, "request id already writing");
  if (req.flags & ~proto::file_flags::kKnown) return send_error(id, EINVAL, "unknown file flags");
  if (req.flags & proto::file_flags::kMakeParents) {
    std::string parent = req.path.substr(0, req.path.rfind('/'));
    if (!parent.empty() && mkdir_parents(parent, 0755) != 0) {
      failed_writes_.insert(id);
      return send_error(id, errno, "mkdir " + parent);
    }
  }
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC |
              ((req.flags & proto::file_flags::kAppend) ? O_APPEND : O_TRUNC);
  int fd = open(req.path.c_str(), flags, req.mode);
  if (fd < 0 || fchmod(fd, req.mode) != 0) {
    int err = errno;
    if (fd >= 0) close(fd);
    failed_writes_.insert(id);
    return send_error(id, err, "open " + req.path);
  }
  writes_[id] = fd;
}

void Agent::stat_path(uint32_t id, const std::string& path, Op reply) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return send_error(id, errno, "stat " + path);
  proto::StatResult r;
  r.type = S_ISREG(st.st_mode)   ? proto::FileType::kRegular
           : S_ISDIR(st.st_mode) ? proto::FileType::kDirectory
           : S_ISLNK(st.st_mode) ? proto::FileType::kSymlink
                                 : proto::FileType::kOther;
  r.mode = st.st_mode & 07777;
  r.size = static_cast<uint64_t>(st.st_size);
  r.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  send(reply, id, r.encode());
}

// Returns false on a protocol error (the agent then drops the connection).
bool Agent::handle_frame(const proto::Frame& f) {
  const uint32_t id = f.header.id;
  if (!proto::host_may_send(f.header.op)) {
    dprintf(2, "airlock-agent: host sent %s, which only the guest may send\n",
            proto::op_name(f.header.op));
    return false;
  }
  std::string err = proto::validate_payload(f.header.op, f.payload);
  if (!err.empty()) {
    // A malformed request fails that request only; the stream itself is intact.
    send_error(id, EINVAL, std::string("malformed ") + proto::op_name(f.header.op) + ": " + err);
    if (f.header.op == Op::kFileWrite) failed_writes_.insert(id);
    return true;
  }
  switch (f.header.op) {
    case Op::kPing:
      send(Op::kPong, id, f.payload);
      return true;
    case Op::kExec: {
      proto::ExecRequest req;
      proto::ExecRequest::decode(f.payload, req);
      start_exec(id, req);
      return true;
    }
    case Op::kStdinData: {
      auto it = commands_.find(id);
      if (it == commands_.end()) return true;
      Command& c = *it->second;
      if (c.stdin_fd < 0 || c.stdin_close_requested) {
        // Nobody will read it: acknowledge so the host's window does not stall.
        send_started(c);
        send(Op::kStdinAck, id,
             proto::U32Message{static_cast<uint32_t>(f.payload.size())}.encode());
        return true;
      }
      if (c.stdin_buf.size() + f.payload.size() > 2 * proto::kStdinWindow) {
        dprintf(2, "airlock-agent: host overran the stdin window\n");
        return false;
      }
      c.stdin_buf += f.payload;
      return true;
    }
    case Op::kStdinClose: {
      auto it = commands_.find(id);
      if (it == commands_.end()) return true;
      it->second->stdin_close_requested = true;
      if (it->second->stdin_buf.empty()) close_fd(it->second->stdin_fd);
      return true;
    }
    case Op::kSignal: {
      auto it = commands_.find(id);
      if (it == commands_.end() || it->second->exited) return true;
      proto::SignalRequest s;
      proto::SignalRequest::decode(f.payload, s);
      kill(-it->second->pid, s.signal);
      return true;
    }
    case Op::kFileWrite: {
      proto::PathRequest req;
      proto::PathRequest::decode(f.payload, req);
      file_write_begin(id, req);
      return true;
    }
    case Op::kFileData: {
      auto it = writes_.find(id);
      if (it == writes_.end()) return true;  // failed early, or unknown: dropped
      const char* p = f.payload.data();
      size_t left = f.payload.size();
      while (left > 0) {
        ssize_t n = write(it->second, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
          int e = errno;
          close(it->second);
          writes_.erase(it);
          failed_writes_.insert(id);
          send_error(id, e, "write");
          return true;
        }
        p += n;
        left -= static_cast<size_t>(n);
      }
      return true;
    }
    case Op::kFileEnd: {
      if (failed_writes_.erase(id)) return true;
      auto it = writes_.find(id);
      if (it == writes_.end()) return true;
      int rc = close(it->second);
      writes_.erase(it);
      if (rc != 0) return send_error(id, errno, "close"), true;
      send(Op::kOk, id);
      return true;
    }
    case Op::kFileRead: {
      proto::PathRequest req;
      proto::PathRequest::decode(f.payload, req);
      if (reads_.count(id)) return send_error(id, EEXIST, "request id already reading"), true;
      int fd = open(req.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) return send_error(id, errno, "open " + req.path), true;
      struct stat st;
      if (fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : errno;
        close(fd);
        return send_error(id, e, "read " + req.path), true;
      }
      proto::StatResult info;
      info.type = S_ISREG(st.st_mode) ? proto::FileType::kRegular : proto::FileType::kOther;
      info.mode = st.st_mode & 07777;
      info.size = static_cast<uint64_t>(st.st_size);
      info.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
      send(Op::kFileInfo, id, info.encode());
      reads_[id] = FileRead{fd};
      return true;
    }
    case Op::kMkdir: {
      proto::PathRequest req;
      proto::PathRequest::decode(f.payload, req);
      int rc =
          req.flags & 1 ? mkdir_parents(req.path, req.mode) : mkdir(req.path.c_str(), req.mode);
      if (rc != 0) return send_error(id, errno, "mkdir " + req.path), true;
      send(Op::kOk, id);
      return true;
    }
    case Op::kStat: {
      proto::PathRequest req;
      proto::PathRequest::decode(f.payload, req);
      stat_path(id, req.path, Op::kStatResult);
      return true;
    }
    case Op::kRemove: {
      proto::PathRequest req;
      proto::PathRequest::decode(f.payload, req);
      int rc;
      if (req.flags & 1) {
        rc = remove_tree(AT_FDCWD, req.path.c_str());
      } else {
        rc = unlink(req.path.c_str());
        if (rc != 0 && (errno == EISDIR || errno == EPERM)) rc = rmdir(req.path.c_str());
      }
      if (rc != 0) return send_error(id, errno, "remove " + req.path), true;
      send(Op::kOk, id);
      return true;
    }
    case Op::kEnvSet: {
      proto::EnvRequest req;
      proto::EnvRequest::decode(f.payload, req);
      for (const auto& e : req.set) env_put(env_, e);
      for (const auto& k : req.unset)
        env_.erase(std::remove_if(env_.begin(), env_.end(),
                                  [&](const std::string& e) { return env_key(e) == k; }),
                   env_.end());
      send(Op::kOk, id);
      return true;
    }
    case Op::kEnvGet: {
      proto::EnvRequest r;
      r.set = env_;
      send(Op::kEnvResult, id, r.encode());
      return true;
    }
    default:
      return false;
  }
}

// Moves bytes between a command's pipes and the connection.
void Agent::pump_command(Command& c, const struct pollfd* out_pfd, const struct pollfd* err_pfd,
                         const struct pollfd* in_pfd) {
  char buf[proto::kDataChunk];
  auto drain = [&](int& fd, const struct pollfd* pfd, Op op) {
    if (fd < 0 || !pfd || !(pfd->revents & (POLLIN | POLLHUP | POLLERR))) return;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      send_started(c);
      send(op, c.id, std::string_view(buf, static_cast<size_t>(n)));
    } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
      close_fd(fd);
    }
  };
  drain(c.stdout_fd, out_pfd, Op::kStdout);
  drain(c.stderr_fd, err_pfd, Op::kStderr);
  if (c.stdin_fd >= 0 && in_pfd && in_pfd->revents) {
    if (in_pfd->revents & (POLLERR | POLLHUP)) {
      // The process closed its stdin: acknowledge what it will never read.
      send(Op::kStdinAck, c.id,
           proto::U32Message{static_cast<uint32_t>(c.stdin_buf.size())}.encode());
      c.stdin_buf.clear();
      close_fd(c.stdin_fd);
    } else if (!c.stdin_buf.empty()) {
      ssize_t n = write(c.stdin_fd, c.stdin_buf.data(), c.stdin_buf.size());
      if (n > 0) {
        c.stdin_buf.erase(0, static_cast<size_t>(n));
        send(Op::kStdinAck, c.id, proto::U32Message{static_cast<uint32_t>(n)}.encode());
      } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
        send(Op::kStdinAck, c.id,
             proto::U32Message{static_cast<uint32_t>(c.stdin_buf.size())}.encode());
        c.stdin_buf.clear();
        close_fd(c.stdin_fd);
      }
    }
    if (c.stdin_fd >= 0 && c.stdin_buf.empty() && c.stdin_close_requested) close_fd(c.stdin_fd);
  }
}

void Agent::reap_children() {
  for (;;) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (auto& [id, c] : commands_) {
      if (c->pid == pid) {
        c->exited = true;
        c->wait_status = status;
        c->exited_at = now_ms();
        c->launch.reset();
        close_fd(c->stdin_fd);
      }
    }
  }
}

// Reports commands whose process exited and whose output is complete.
void Agent::finish_commands() {
  int64_t now = now_ms();
  for (auto it = commands_.begin(); it != commands_.end();) {
    Command& c = *it->second;
    if (!c.exited && c.deadline && now >= c.deadline && !c.timed_out) {
      c.timed_out = true;
      kill(-c.pid, SIGKILL);
    }
    bool pipes_done = c.stdout_fd < 0 && c.stderr_fd < 0;
    if (c.exited && !pipes_done && now - c.exited_at >= kPipeGraceMs &&
        pending(out_, out_off_) < kOutputHighWater) {
      // Something else (a background child) keeps the pipes open: stop waiting for it.
      close_fd(c.stdout_fd);
      close_fd(c.stderr_fd);
      pipes_done = true;
    }
    if (!c.exited || !pipes_done) {
      ++it;
      continue;
    }
    proto::ExitStatus st;
    if (WIFSIGNALED(c.wait_status)) {
      st.exit_code = -1;
      st.signal = WTERMSIG(c.wait_status);
    } else {
      st.exit_code = WEXITSTATUS(c.wait_status);
    }
    st.timed_out = c.timed_out;
    send_started(c);
    send(Op::kExit, c.id, st.encode());
    it = commands_.erase(it);
  }
}

void Agent::pump_file_reads() {
  char buf[proto::kDataChunk];
  for (auto it = reads_.begin();
       it != reads_.end() && pending(out_, out_off_) < kOutputHighWater;) {
    ssize_t n = read(it->second.fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n > 0) {
      send(Op::kFileData, it->first, std::string_view(buf, static_cast<size_t>(n)));
      ++it;
      continue;
    }
    if (n == 0)
      send(Op::kFileEnd, it->first);
    else
      send_error(it->first, errno, "read");
    close(it->second.fd);
    it = reads_.erase(it);
  }
}

int Agent::run() {
  signal(SIGPIPE, SIG_IGN);
  sigset_t chld;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, nullptr);
  sigfd_ = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);
  fcntl(sock_, F_SETFL, O_NONBLOCK);
  devnull_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  for (int s = 1; s < NSIG; ++s) {
    struct sigaction sa;
    if (sigaction(s, nullptr, &sa) == 0 && sa.sa_handler == SIG_IGN) ignored_signals_.push_back(s);
  }

  struct utsname uts;
  uname(&uts);
  send(Op::kHello, 0,
       proto::Hello{proto::kVersion,
                    std::string("airlock-guest-agent 0.1 (linux ") + uts.release + ")"}
           .encode());

  std::vector<struct pollfd> fds;
  struct Slot {
    Command* cmd;
    int out = -1, err = -1, in = -1;
  };
  std::vector<Slot> slots;
  for (;;) {
    if (!flush_output()) return 1;
    const bool room = pending(out_, out_off_) < kOutputHighWater;
    fds.clear();
    slots.clear();
    fds.push_back(
        {sock_, static_cast<short>((room ? POLLIN : 0) | (pending(out_, out_off_) ? POLLOUT : 0)),
         0});
    fds.push_back({sigfd_, POLLIN, 0});
    int64_t timeout = -1;
    int64_t now = now_ms();
    for (auto& [id, c] : commands_) {
      Slot s{c.get()};
      if (room && c->stdout_fd >= 0)
        s.out = static_cast<int>(fds.size()), fds.push_back({c->stdout_fd, POLLIN, 0});
      if (room && c->stderr_fd >= 0)
        s.err = static_cast<int>(fds.size()), fds.push_back({c->stderr_fd, POLLIN, 0});
      if (c->stdin_fd >= 0 && !c->stdin_buf.empty())
        s.in = static_cast<int>(fds.size()), fds.push_back({c->stdin_fd, POLLOUT, 0});
      slots.push_back(s);
      int64_t due = -1;
      if (c->deadline && !c->timed_out && !c->exited) due = std::max<int64_t>(0, c->deadline - now);
      if (c->exited) due = std::max<int64_t>(1, c->exited_at + kPipeGraceMs - now);
      if (due >= 0 && (timeout < 0 || due < timeout)) timeout = due;
    }
    if (room && !reads_.empty()) timeout = 0;
    int n = poll(fds.data(), fds.size(), static_cast<int>(timeout));
    if (n < 0 && errno != EINTR) return 1;

    if (fds[1].revents) {
      struct signalfd_siginfo si;
      while (read(sigfd_, &si, sizeof si) > 0) {
      }
      reap_children();
    }
    for (auto& s : slots)
      pump_command(*s.cmd, s.out >= 0 ? &fds[s.out] : nullptr, s.err >= 0 ? &fds[s.err] : nullptr,
                   s.in >= 0 ? &fds[s.in] : nullptr);
    if (fds[0].revents & POLLIN) {
      char buf[64 * 1024];
      ssize_t got = recv(sock_, buf, sizeof buf, 0);
      if (got == 0) return 0;  // the host closed: the sandbox is going away
      if (got < 0 && errno != EAGAIN && errno != EINTR) return 1;
      if (got > 0) {
        std::vector<proto::Frame> frames;
        std::string err = decoder_.feed(std::string_view(buf, static_cast<size_t>(got)), frames);
        for (const auto& f : frames)
          if (!handle_frame(f)) return 1;
        if (!err.empty()) {
          dprintf(2, "airlock-agent: bad frame from the host: %s\n", err.c_str());
          return 1;
        }
      }
    } else if (fds[0].revents & (POLLERR | POLLHUP)) {
      return 1;
    }
    reap_children();
    finish_commands();
    pump_file_reads();
  }
}

}  // namespace

namespace {

int serve(int fd, const CpuPlacement& placement) {
  // Commands must not inherit the connection (the host would miss the agent's death).
  fcntl(fd, F_SETFD, FD_CLOEXEC);
  Agent agent(fd, placement);
  return agent.run();
}

}  // namespace

int serve_connection(int fd) {
  return serve(fd, CpuPlacement{});
}

int run_agent() {
  start_forwarder();  // Sandbox::expose_port's guest side (forward.h), before any fd exists
  // After the forwarder started, which keeps the default placement like any command.
  const CpuPlacement placement = place_agent();
  // The vsock transport appears once its module has probed the device; retry briefly.
  int64_t give_up = now_ms() + 10000;
  for (;;) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
      // A larger receive window for stdin and file uploads.
      unsigned long long size = 1ull << 20;
      setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_MAX_SIZE, &size, sizeof size);
      setsockopt(fd, AF_VSOCK, SO_VM_SOCKETS_BUFFER_SIZE, &size, sizeof size);
      struct sockaddr_vm addr {};
      addr.svm_family = AF_VSOCK;
      addr.svm_cid = proto::kHostCid;
      addr.svm_port = proto::kAgentPort;
      if (connect(fd, reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) == 0)
        return serve(fd, placement);
      int err = errno;
      close(fd);
      if (now_ms() > give_up) {
        dprintf(2, "airlock-agent: cannot connect to the host: %s\n", strerror(err));
        return 1;
      }
    } else if (now_ms() > give_up) {
      dprintf(2, "airlock-agent: no vsock: %s\n", strerror(errno));
      return 1;
    }
    usleep(5000);
  }
}

}  // namespace airlock::guest
