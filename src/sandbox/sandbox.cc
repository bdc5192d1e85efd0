// Sandbox: one microVM (vmm::Machine) with a vsock device, and the agent client on the
// connection the guest agent opens at boot. A monitor thread watches the machine: when the guest
// ends, every pending call fails with "sandbox died"; when the agent connection breaks (or the
// guest breaks the protocol), the machine is killed, so a misbehaving guest ends only itself.
#include "airlock/sandbox.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>

#include <fmt/format.h>

#include "agent/client.h"
#include "agent/vsock_transport.h"
#include "base/fd.h"
#include "base/log.h"
#include "devices/vsock.h"
#include "sandbox/defaults.h"
#include "sandbox/expose.h"
#include "sandbox/internal.h"
#include "sandbox/lifecycle.h"
#include "sandbox/network.h"
#include "sandbox/storage.h"
#include "vmm/defaults.h"
#include "vmm/machine.h"

namespace airlock {

std::string ExecResult::text() const {
  if (!stdout.empty() && stdout.back() == '\n') return stdout.substr(0, stdout.size() - 1);
  return stdout;
}

namespace {

using agent::Client;
namespace proto = agent::proto;

constexpr Millis kControlTimeout{30000};
constexpr size_t kMaxReadBytes = 1ull << 30;

// Generous per-transfer budget: 2 minutes plus a second per MiB.
Millis io_timeout(uint64_t bytes) {
  return Millis(120000 + (bytes >> 20) * 1000);
}

bool valid_env_key(const std::string& k) {
  return !k.empty() && k.find('=') == std::string::npos && k.find('\0') == std::string::npos;
}

Result<std::vector<std::string>> env_entries(const std::map<std::string, std::string>& env) {
  std::vector<std::string> out;
  for (const auto& [k, v] : env) {
    if (!valid_env_key(k))
      return Status(Errc::invalid_argument, "bad environment variable name '" + k + "'");
    out.push_back(k + "=" + v);
  }
  return out;
}

std::string tail(const std::string& s, size_t n) {
  return s.size() <= n ? s : s.substr(s.size() - n);
}

// The agent's spec for a command: argv, the extra environment, the working directory and the
// guest-side timeout (0: none), checked.
Result<agent::ExecSpec> exec_spec(const std::vector<std::string>& argv,
                                  const std::map<std::string, std::string>& env,
                                  const std::string& cwd, Millis timeout) {
  agent::ExecSpec spec;
  spec.argv = argv;
  AIRLOCK_ASSIGN_OR_RETURN(spec.env, env_entries(env));
  spec.cwd = cwd;
  if (timeout.count() < 0 || timeout.count() > UINT32_MAX)
    return Status(Errc::invalid_argument, "timeout out of range");
  spec.timeout_ms = static_cast<uint32_t>(timeout.count());
  return spec;
}

// Waits for `e` to end and collects its exit status and buffered output.
Result<ExecResult> collect(agent::Execution& e, Millis timeout) {
  AIRLOCK_ASSIGN_OR_RETURN(agent::ExitResult r, e.wait(timeout));
  ExecResult out;
  out.exit_code = r.exit_code;
  out.signal = r.signal;
  out.timed_out = r.timed_out;
  out.stdout = e.take_stdout();
  out.stderr = e.take_stderr();
  return out;
}

class SandboxImpl;

class ProcessImpl final : public Process {
 public:
  explicit ProcessImpl(std::unique_ptr<agent::Execution> e) : exec_(std::move(e)) {}
  int pid() const override { return static_cast<int>(exec_->pid()); }
  Status write_stdin(std::string_view data, Millis timeout) override {
    return exec_->write_stdin(data, timeout);
  }
  Status close_stdin() override { return exec_->close_stdin(); }
  Status kill(int signal) override { return exec_->signal(signal); }
  Result<ExecResult> wait(Millis timeout) override { return collect(*exec_, timeout); }

 private:
  std::unique_ptr<agent::Execution> exec_;
};

class FsImpl final : public SandboxFs {
 public:
  explicit FsImpl(SandboxImpl& sb) : sb_(sb) {}
  Status write(const std::string& path, std::string_view data, uint32_t mode) override;
  Result<std::string> read(const std::string& path) override;
  Status upload(const std::string& host_path, const std::string& guest_path,
                std::optional<uint32_t> mode) override;
  Status download(const std::string& guest_path, const std::string& host_path) override;
  Status mkdir(const std::string& path, uint32_t mode, bool parents) override;
  Result<FileStat> stat(const std::string& path) override;
  Status remove(const std::string& path, bool recursive) override;

 private:
  SandboxImpl& sb_;
};

class EnvImpl final : public SandboxEnv {
 public:
  explicit EnvImpl(SandboxImpl& sb) : sb_(sb) {}
  Result<std::map<std::string, std::string>> get() override;
  Result<std::optional<std::string>> get(const std::string& key) override;
  Status set(const std::string& key, const std::string& value) override;
  Status set(const std::map<std::string, std::string>& vars) override;
  Status unset(const std::string& key) override;

 private:
  SandboxImpl& sb_;
};

class SandboxImpl final : public Sandbox {
 public:
  SandboxImpl() : fs_(*this), env_(*this) {}
  ~SandboxImpl() override { close(); }

  Status boot(SandboxOptions options);

  Result<ExecResult> sh(const std::string& command, const ExecOptions& options) override {
    return exec({"/bin/sh", "-c", command}, options);
  }
  Result<ExecResult> exec(const std::vector<std::string>& argv,
                          const ExecOptions& options) override;
  Result<std::unique_ptr<Process>> spawn(const std::vector<std::string>& argv,
                                         SpawnOptions options) override;
  SandboxFs& fs() override { return fs_; }
  SandboxEnv& env() override { return env_; }
  Result<std::string> ping(std::string_view payload, Millis timeout) override {
    return client_->ping(payload, timeout);
  }
  Status status() const override {
    {
      std::lock_guard lock(mutex_);
      if (!ended_.ok()) return ended_;
    }
    // The monitor thread ends the sandbox a moment after the connection died: report that now.
    return client_ ? client_->dead_status() : ok_status();
  }
  std::string console_output() const override {
    std::lock_guard lock(resources_mutex_);
    return machine_ ? machine_->console_output() : final_console_;
  }
  void close() override { shut_down(Status(Errc::closed, "the sandbox was closed"), true); }

  // --- lifecycle (logic in lifecycle.h) ---
  Status set_timeout(Millis timeout) override {
    AIRLOCK_RETURN_IF_ERROR(status());
    return lifetime_.set_timeout(timeout, std::chrono::steady_clock::now());
  }
  Status extend(Millis more) override {
    AIRLOCK_RETURN_IF_ERROR(status());
    return lifetime_.extend(more);
  }
  void kill() override { shut_down(Status(Errc::closed, "the sandbox was killed"), false); }
  SandboxStats stats() const override;
  // --- exposed ports (expose.h) ---
  Result<std::string> expose_port(uint16_t guest_port) override;
  Result<std::string> expose_http(uint16_t guest_port) override {
    AIRLOCK_ASSIGN_OR_RETURN(std::string address, expose_port(guest_port));
    return "http://" + address;
  }
  Result<SnapshotInfo> snapshot(const std::string& name) override {
    if (!storage_)
      return Status(Errc::invalid_argument,
                    "this sandbox has no root image: create it with root_image or root_snapshot "
                    "and snapshottable_root");
    return storage_->snapshot(*this, name);
  }

  Client& client() { return *client_; }
  std::shared_ptr<devices::VsockDevice> vsock() const { return vsock_; }

 private:
  void monitor_loop();
  void end(Status why);
  // close()/kill(): ends the sandbox with `why` (unless it already ended), joins the monitor and
  // frees everything. `graceful`: the guest may flush its disks first.
  void shut_down(Status why, bool graceful);
  // Kills the machine and frees what the sandbox holds (threads, fds, guest memory), keeping
  // final stats and console. From the monitor thread (timeout) or after it was joined. Once.
  void release_resources();
  SandboxStats stats_locked() const;  // resources_mutex_ held

  std::unique_ptr<sandbox::GuestNetwork> network_;    // null without allow_net
  std::unique_ptr<sandbox::SandboxStorage> storage_;  // null without disks
  std::unique_ptr<vmm::Machine> machine_;
  std::shared_ptr<devices::VsockDevice> vsock_;
  std::unique_ptr<devices::VsockListener> listener_;
  std::shared_ptr<Client> client_;
  std::thread monitor_;
  FsImpl fs_;
  EnvImpl env_;

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  Status ended_;             // non-ok once the sandbox ended
  bool agent_dead_ = false;  // the client reported a dead connection
  bool closing_ = false;
  std::once_flag close_once_;

  // --- lifecycle ---
  sandbox::Lifetime lifetime_;
  std::chrono::steady_clock::time_point created_at_ = std::chrono::steady_clock::now();
  std::atomic<uint64_t> commands_{0};
  uint64_t memory_bytes_ = 0;
  std::once_flag release_once_;
  // Guards machine_, network_ and forwarders_ against release_resources() for the methods
  // callable from any thread (console_output, stats, expose_port), and the final snapshots.
  mutable std::mutex resources_mutex_;
  bool released_ = false;
  std::optional<std::chrono::steady_clock::time_point> ended_at_;
  SandboxStats final_stats_;
  std::string final_console_;
  std::map<uint16_t, std::unique_ptr<sandbox::PortForwarder>> forwarders_;
};

Status SandboxImpl::boot(SandboxOptions options) {
  if (options.memory_bytes < kMinSandboxMemory || options.memory_bytes > kMaxSandboxMemory ||
      options.memory_bytes % (1u << 20) != 0)
    return Status(
        Errc::invalid_argument,
        fmt::format("memory_bytes of {} bytes is not supported: a sandbox has {} MiB to "
                    "{} MiB of memory, in whole MiB",
                    options.memory_bytes, kMinSandboxMemory >> 20, kMaxSandboxMemory >> 20));
  if (options.vcpus < 1 || options.vcpus > kMaxSandboxVcpus)
    return Status(Errc::invalid_argument, fmt::format("vcpus of {} is not supported: 1 to {}",
                                                      options.vcpus, kMaxSandboxVcpus));
  AIRLOCK_RETURN_IF_ERROR(sandbox::Lifetime::validate(options.timeout, options.max_lifetime));
  AIRLOCK_RETURN_IF_ERROR(sandbox::GuestNetwork::check_caller_tap(options));  // before any boot
  memory_bytes_ = options.memory_bytes;
  if (options.kernel_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(options.kernel_path, vmm::default_kernel_path());
  }
  if (options.initramfs_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(options.initramfs_path, sandbox::default_sandbox_initramfs_path());
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto env, env_entries(options.env));
  auto deadline = std::chrono::steady_clock::now() + options.boot_timeout;

  vsock_ = devices::VsockDevice::create();
  AIRLOCK_ASSIGN_OR_RETURN(listener_, vsock_->listen(proto::kAgentPort));

  vmm::MachineConfig config;
  config.kernel_path = options.kernel_path;
  config.initramfs_path = options.initramfs_path;
  config.memory_bytes = options.memory_bytes;
  config.vcpus = options.vcpus;
  config.on_console = std::move(options.on_console);
  config.console_buffer_limit = 256 * 1024;
  // Disks (root image, upper, volumes) are checked and locked before anything boots.
  AIRLOCK_ASSIGN_OR_RETURN(storage_, sandbox::SandboxStorage::prepare(options));
  if (storage_) config.cmdline_extra = storage_->cmdline();
  AIRLOCK_ASSIGN_OR_RETURN(machine_, vmm::Machine::create(std::move(config)));
  AIRLOCK_ASSIGN_OR_RETURN(int slot, machine_->add_virtio_device(vsock_));
  (void)slot;
  if (storage_)
    for (const auto& disk : storage_->devices())
      AIRLOCK_RETURN_IF_ERROR(machine_->add_virtio_device(disk).status());
  // After the machine (so a bad kernel path is reported first), before it starts.
  if (!options.allow_net.empty() || !options.secrets.empty() || options.tap_fd >= 0) {
    AIRLOCK_ASSIGN_OR_RETURN(network_, sandbox::GuestNetwork::create(options));
    AIRLOCK_RETURN_IF_ERROR(machine_->add_virtio_device(network_->device()).status());
  }
  AIRLOCK_RETURN_IF_ERROR(machine_->start());

  // Wait for the agent's connection, watching that the guest is still alive.
  std::unique_ptr<devices::VsockStream> stream;
  for (;;) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return Status(Errc::timeout,
                    "the guest agent did not connect within the boot timeout; console: " +
                        tail(machine_->console_output(), 2000));
    auto s = listener_->accept(std::min(left, Millis(50)));
    if (s.ok()) {
      stream = std::move(s).value();
      break;
    }
    if (s.status().code() != Errc::timeout) return s.status();
    if (!machine_->running()) {
      auto info = machine_->exit_info();
      std::string why = info ? std::string(vmm::exit_reason_name(info->reason)) +
                                   (info->message.empty() ? "" : " (" + info->message + ")")
                             : "stopped";
      return Status(Errc::unavailable, "the guest ended during boot: " + why +
                                           "; console: " + tail(machine_->console_output(), 2000));
    }
  }
  listener_->close();  // one agent connection per sandbox; later attempts get RST
  auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
  AIRLOCK_ASSIGN_OR_RETURN(client_, Client::connect(agent::make_vsock_transport(std::move(stream)),
                                                    std::max(left, Millis(1))));
  client_->set_on_dead([this](const Status&) {
    std::lock_guard lock(mutex_);
    agent_dead_ = true;
    cv_.notify_all();
  });
  monitor_ = std::thread([this] { monitor_loop(); });
  if (!env.empty()) AIRLOCK_RETURN_IF_ERROR(client_->env_set(env, {}, kControlTimeout));
  if (network_) AIRLOCK_RETURN_IF_ERROR(network_->configure_guest(*this, options.env));
  lifetime_.start(options.timeout, options.max_lifetime, std::chrono::steady_clock::now());
  return ok_status();
}

void SandboxImpl::end(Status why) {
  {
    std::lock_guard lock(mutex_);
    if (!ended_.ok()) return;
    ended_ = why;
  }
  if (client_) client_->fail(why);
  if (vsock_) vsock_->shutdown(why.message());
}

void SandboxImpl::monitor_loop() {
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      cv_.wait_for(lock, Millis(50), [&] { return agent_dead_ || closing_; });
      if (closing_) return;
      if (Status expired = lifetime_.expired(std::chrono::steady_clock::now()); !expired.ok()) {
        lock.unlock();
        AIRLOCK_LOG_INFO("sandbox", "{}", expired.message());
        end(expired);
        release_resources();
        return;
      }
      if (agent_dead_) {
        lock.unlock();
        // The agent is gone or misbehaved: nothing can talk to this guest any more.
        Status why = client_->dead_status();
        AIRLOCK_LOG_WARN("sandbox", "ending the sandbox: {}", why.to_string());
        end(why);
        machine_->kill();
        return;
      }
    }
    auto r = machine_->wait(Millis(0));
    if (r.ok()) {
      const vmm::ExitInfo& info = r.value();
      std::string why = std::string("sandbox died: the guest ") +
                        (info.reason == vmm::ExitInfo::Reason::reboot     ? "rebooted"
                         : info.reason == vmm::ExitInfo::Reason::shutdown ? "powered off"
                         : info.reason == vmm::ExitInfo::Reason::stopped  ? "was stopped"
                                                                          : "failed") +
                        (info.message.empty() ? "" : " (" + info.message + ")");
      std::string console = machine_->console_output();
      size_t p = console.rfind("airlock-init: ");
      if (p != std::string::npos) why += "; " + console.substr(p, console.find('\n', p) - p);
      end(Status(Errc::closed, why));
      return;
    }
  }
}

void SandboxImpl::shut_down(Status why, bool graceful) {
  std::call_once(close_once_, [&] {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      cv_.notify_all();
    }
    // Volumes and a disk upper keep what the guest wrote: flush it before the machine stops.
    if (graceful && storage_ && client_ && status().ok()) storage_->sync_guest(*this);
    end(why);
    if (monitor_.joinable()) monitor_.join();
    release_resources();
  });
}

void SandboxImpl::release_resources() {
  std::call_once(release_once_, [this] {
    std::map<uint16_t, std::unique_ptr<sandbox::PortForwarder>> forwarders;
    {
      std::lock_guard lock(resources_mutex_);
      released_ = true;  // no new exposures
      forwarders.swap(forwarders_);
    }
    Status why = status();
    if (vsock_) vsock_->shutdown(why.ok() ? "the sandbox was closed" : why.message());
    forwarders.clear();  // closes every forwarded connection, joins their threads
    if (machine_) machine_->kill();
    if (storage_) storage_->release();  // vCPUs joined: other sandboxes may attach the volumes
    if (client_) client_->close();
    if (network_) network_->stop();
    std::unique_ptr<vmm::Machine> machine;
    std::unique_ptr<sandbox::GuestNetwork> network;
    {
      std::lock_guard lock(resources_mutex_);
      ended_at_ = std::chrono::steady_clock::now();
      final_stats_ = stats_locked();
      final_stats_.running = false;
      final_stats_.time_left.reset();
      if (machine_) final_console_ = machine_->console_output();
      machine = std::move(machine_);
      network = std::move(network_);
    }
    // Outside the lock: destroying the machine unmaps guest memory and closes its fds; the
    // network's namespace, tap and proxy go with it.
    machine.reset();
    network.reset();
  });
}

SandboxStats SandboxImpl::stats_locked() const {
  if (released_ && ended_at_ && !machine_) return final_stats_;
  auto now = std::chrono::steady_clock::now();
  SandboxStats s;
  s.uptime = std::chrono::duration_cast<Millis>(ended_at_.value_or(now) - created_at_);
  s.memory_bytes = memory_bytes_;
  if (machine_) {
    s.vcpu_time = machine_->vcpu_cpu_time();
    s.memory_resident_bytes = machine_->memory().resident_bytes();
  }
  if (network_) {
    ProxyStats p = network_->proxy().stats();
    s.net_bytes_up = p.bytes_up;
    s.net_bytes_down = p.bytes_down;
    s.net_requests = p.requests;
  }
  s.commands = commands_.load();
  s.running = !released_ && status().ok();
  if (s.running) s.time_left = lifetime_.remaining(now);
  return s;
}

SandboxStats SandboxImpl::stats() const {
  std::lock_guard lock(resources_mutex_);
  return stats_locked();
}

Result<std::string> SandboxImpl::expose_port(uint16_t guest_port) {
  if (guest_port == 0) return Status(Errc::invalid_argument, "guest port 0 cannot be exposed");
  AIRLOCK_RETURN_IF_ERROR(status());
  std::lock_guard lock(resources_mutex_);
  if (released_) return Status(Errc::closed, "the sandbox has ended");
  auto it = forwarders_.find(guest_port);
  if (it != forwarders_.end()) return it->second->address();
  AIRLOCK_ASSIGN_OR_RETURN(
      auto f, sandbox::PortForwarder::start(guest_port, sandbox::vsock_dialer(vsock_)));
  std::string address = f->address();
  AIRLOCK_LOG_DEBUG("sandbox", "guest port {} exposed at {}", guest_port, address);
  forwarders_[guest_port] = std::move(f);
  return address;
}

Result<ExecResult> SandboxImpl::exec(const std::vector<std::string>& argv,
                                     const ExecOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(agent::ExecSpec spec,
                           exec_spec(argv, options.env, options.cwd, options.timeout));
  spec.open_stdin = !options.stdin_data.empty();
  spec.defer_started = true;  // collected: Started may ride with the Exit (agent/client.h)
  Millis wait = options.wait_timeout;
  if (wait.count() <= 0)
    wait = options.timeout.count() > 0 ? options.timeout + Millis(10000) : Millis(3600000);

  auto deadline = std::chrono::steady_clock::now() + wait;
  AIRLOCK_ASSIGN_OR_RETURN(auto e,
                           client_->start(spec, nullptr, nullptr, std::min(wait, kControlTimeout)));
  ++commands_;
  if (spec.open_stdin) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    Status st = e->write_stdin(options.stdin_data, std::max(left, Millis(1)));
    // A command that exits without reading all its input is not an error of ours.
    if (!st.ok() && st.code() != Errc::closed) return st;
    if (st.ok()) (void)e->close_stdin();
  }
  auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
  return collect(*e, std::max(left, Millis(1)));
}

Result<std::unique_ptr<Process>> SandboxImpl::spawn(const std::vector<std::string>& argv,
                                                    SpawnOptions options) {
  AIRLOCK_ASSIGN_OR_RETURN(agent::ExecSpec spec,
                           exec_spec(argv, options.env, options.cwd, options.timeout));
  spec.open_stdin = true;
  AIRLOCK_ASSIGN_OR_RETURN(auto e, client_->start(spec, std::move(options.on_stdout),
                                                  std::move(options.on_stderr), kControlTimeout));
  ++commands_;
  return std::unique_ptr<Process>(new ProcessImpl(std::move(e)));
}

// ---- files ----

Status FsImpl::write(const std::string& path, std::string_view data, uint32_t mode) {
  bool sent = false;
  return sb_.client().write_file(
      path, mode, proto::file_flags::kMakeParents,
      [&]() -> Result<std::string> {
        if (sent) return std::string();
        sent = true;
        if (data.empty()) return std::string();
        return std::string(data);
      },
      io_timeout(data.size()));
}

Result<std::string> FsImpl::read(const std::string& path) {
  std::string out;
  auto info = sb_.client().read_file(
      path,
      [&](std::string_view chunk) -> Status {
        if (out.size() + chunk.size() > kMaxReadBytes)
          return Status(Errc::resource_exhausted, "file larger than 1 GiB: use download()");
        out.append(chunk);
        return ok_status();
      },
      io_timeout(kMaxReadBytes));
  if (!info.ok()) return info.status();
  return out;
}

Status FsImpl::upload(const std::string& host_path, const std::string& guest_path,
                      std::optional<uint32_t> mode) {
  UniqueFd fd(::open(host_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno_status("open " + host_path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return errno_status("stat " + host_path);
  if (!S_ISREG(st.st_mode))
    return Status(Errc::invalid_argument, host_path + " is not a regular file");
  uint32_t m = mode.value_or(st.st_mode & 07777);
  std::string buf;
  return sb_.client().write_file(
      guest_path, m, proto::file_flags::kMakeParents,
      [&]() -> Result<std::string> {
        buf.resize(1 << 20);
        for (;;) {
          ssize_t n = ::read(fd.get(), buf.data(), buf.size());
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return errno_status("read " + host_path);
          buf.resize(static_cast<size_t>(n));
          return buf;
        }
      },
      io_timeout(static_cast<uint64_t>(st.st_size)));
}

Status FsImpl::download(const std::string& guest_path, const std::string& host_path) {
  UniqueFd fd(::open(host_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return errno_status("open " + host_path);
  auto info = sb_.client().read_file(
      guest_path,
      [&](std::string_view chunk) -> Status {
        while (!chunk.empty()) {
          ssize_t n = ::write(fd.get(), chunk.data(), chunk.size());
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return errno_status("write " + host_path);
          chunk.remove_prefix(static_cast<size_t>(n));
        }
        return ok_status();
      },
      io_timeout(kMaxReadBytes));
  if (!info.ok()) {
    ::unlink(host_path.c_str());
    return info.status();
  }
  if (::fchmod(fd.get(), info->mode & 0777) != 0) return errno_status("chmod " + host_path);
  return ok_status();
}

Status FsImpl::mkdir(const std::string& path, uint32_t mode, bool parents) {
  return sb_.client().mkdir(path, mode, parents, kControlTimeout);
}

Result<FileStat> FsImpl::stat(const std::string& path) {
  AIRLOCK_ASSIGN_OR_RETURN(auto s, sb_.client().stat(path, kControlTimeout));
  FileStat out;
  switch (s.type) {
    case proto::FileType::kRegular:
      out.type = FileStat::Type::regular;
      break;
    case proto::FileType::kDirectory:
      out.type = FileStat::Type::directory;
      break;
    case proto::FileType::kSymlink:
      out.type = FileStat::Type::symlink;
      break;
    default:
      out.type = FileStat::Type::other;
      break;
  }
  out.mode = s.mode;
  out.size = s.size;
  out.mtime_ns = s.mtime_ns;
  return out;
}

Status FsImpl::remove(const std::string& path, bool recursive) {
  return sb_.client().remove(path, recursive, kControlTimeout);
}

// ---- environment ----

Result<std::map<std::string, std::string>> EnvImpl::get() {
  AIRLOCK_ASSIGN_OR_RETURN(auto entries, sb_.client().env_get(kControlTimeout));
  std::map<std::string, std::string> out;
  for (const auto& e : entries) {
    size_t eq = e.find('=');
    out[e.substr(0, eq)] = eq == std::string::npos ? "" : e.substr(eq + 1);
  }
  return out;
}

Result<std::optional<std::string>> EnvImpl::get(const std::string& key) {
  AIRLOCK_ASSIGN_OR_RETURN(auto all, get());
  auto it = all.find(key);
  if (it == all.end()) return std::optional<std::string>();
  return std::optional<std::string>(it->second);
}

Status EnvImpl::set(const std::string& key, const std::string& value) {
  return set(std::map<std::string, std::string>{{key, value}});
}

Status EnvImpl::set(const std::map<std::string, std::string>& vars) {
  AIRLOCK_ASSIGN_OR_RETURN(auto entries, env_entries(vars));
  return sb_.client().env_set(entries, {}, kControlTimeout);
}

Status EnvImpl::unset(const std::string& key) {
  if (!valid_env_key(key)) return Status(Errc::invalid_argument, "bad environment variable name");
  return sb_.client().env_set({}, {key}, kControlTimeout);
}

}  // namespace

namespace sandbox {

std::shared_ptr<devices::VsockDevice> vsock_device(Sandbox& sb) {
  auto* impl = dynamic_cast<SandboxImpl*>(&sb);
  return impl ? impl->vsock() : nullptr;
}

}  // namespace sandbox

Result<std::unique_ptr<Sandbox>> Sandbox::create(SandboxOptions options) {
  auto sb = std::make_unique<SandboxImpl>();
  Status st = sb->boot(std::move(options));
  if (!st.ok()) {
    sb->close();
    return st.prefix("creating sandbox");
  }
  return std::unique_ptr<Sandbox>(std::move(sb));
}

}  // namespace airlock
