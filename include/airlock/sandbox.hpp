// airlock: run untrusted commands in a Linux microVM.
//
//   auto sb = airlock::Sandbox::create({});          // boots, waits for the guest agent
//   if (!sb.ok()) ... sb.status().to_string();
//   auto r = (*sb)->sh("ls -lh /");                  // r->exit_code, r->stdout, r->stderr
//
// A Sandbox owns one microVM and the connection to the agent inside it. Many commands may run
// at once. Every call that waits takes (or has) a timeout; if the sandbox dies (the guest
// crashed, the agent was killed, or it broke the protocol) every pending and later call fails at
// once with a clear error (Errc::closed or Errc::protocol), never a hang.
//
// Threads: every method may be called from any thread; close() may race with running calls
// (they fail). Output callbacks run on an internal thread: keep them short, and do not call
// Process::wait() of the same process from them.
#pragma once

#include <chrono>
#include <csignal>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "airlock/proxy.hpp"
#include "airlock/status.hpp"
#include "airlock/storage.hpp"

namespace airlock {

using Millis = std::chrono::milliseconds;

// A volume of the store (airlock::Storage) mounted in the guest.
struct VolumeMount {
  std::string name;        // the volume
  std::string path;        // absolute guest path; created if missing
  bool read_only = false;  // read-only attachments may be shared by any number of sandboxes
};

struct SandboxOptions {
  // Guest kernel and initramfs; empty: the cached defaults (scripts/fetch-kernel.sh and
  // scripts/build-sandbox-image.sh fill ${AIRLOCK_CACHE_DIR:-~/.cache/airlock}).
  std::string kernel_path;
  std::string initramfs_path;
  uint64_t memory_bytes = 512ull << 20;
  unsigned vcpus = 2;
  // Default environment of every command (over PATH, HOME=/root, TERM=dumb, LANG=C.UTF-8).
  std::map<std::string, std::string> env;
  // From create() until the agent is ready.
  Millis boot_timeout{30000};
  // Guest console output (kernel messages, init's errors), as it comes; may be empty.
  std::function<void(std::string_view)> on_console;

  // Networking (src/sandbox/network.h). Empty allow_net: the guest has no network device at all.
  // Otherwise it gets a virtio-net link into a namespace of its own where only the egress proxy
  // (allow_net patterns, as ProxyOptions::allow_net) and a DNS responder answer.
  std::vector<std::string> allow_net;
  // Each secret's placeholder is set as the guest environment variable `name`; the proxy puts
  // the real value in requests to the secret's hosts only. The real value never enters the guest.
  std::vector<SecretSpec> secrets;
  AuditCallback on_audit;  // proxy audit events (proxy worker threads)
  RequestHook hook;        // per-request hook (proxy worker threads)
  // How long the proxy waits for `hook`'s decision; past it the request is refused (403) and a
  // late answer is dropped (ProxyOptions::hook_deadline).
  Millis hook_deadline{2000};
  // Upstream name overrides ("host" or "host:port" -> IP literal) and extra upstream trust
  // anchors, as in ProxyOptions; mostly for tests with local upstreams.
  std::map<std::string, std::string> resolve_override;
  std::vector<std::string> extra_ca_files;

  // --- network: caller's tap ---
  // -1: airlock makes a network namespace and a tap itself (needs root: CAP_SYS_ADMIN and
  // CAP_NET_ADMIN). Otherwise a tap fd the caller opened (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR),
  // e.g. from a privileged helper: create() needs no privilege then, dup()s the fd (the caller
  // keeps and closes its own), and binds the proxy and DNS to 10.213.0.1 in the namespace of the
  // thread calling create(), where the helper must have put the tap's host side (10.213.0.1/30,
  // up); binding ports 443, 80 and 53 there needs CAP_NET_BIND_SERVICE or the namespace's
  // net.ipv4.ip_unprivileged_port_start at 0. That namespace's forwarding, firewall, IPv6 and
  // other listeners are then the caller's responsibility: airlock's egress guarantees hold only
  // as far as that setup is sealed (README "Privileges"). Needs allow_net.
  int tap_fd = -1;

  // --- storage (src/sandbox/storage.h, src/image/README.md) ---
  // Root filesystem. Empty root_image and root_snapshot: the initramfs is the root, as always.
  // root_image "default": the cached Debian image (scripts/build-rootfs.sh), ${cache}/images/
  // rootfs.ext4; any other value: the path of an ext4 image. root_snapshot: a root snapshot in
  // the store (Sandbox::snapshot); it names its own base, so root_image is then ignored.
  // The image is read-only; writes go to an overlay upper: memory by default, or a fresh sparse
  // disk (snapshottable_root, needed for Sandbox::snapshot) of root_upper_bytes.
  std::string root_image;
  std::string root_snapshot;
  bool snapshottable_root = false;
  uint64_t root_upper_bytes = 4ull << 30;
  // Volumes to mount, in order; each read-write one is attached to this sandbox only.
  std::vector<VolumeMount> volumes;
  // The store of volumes and snapshots (airlock::Storage); empty: the default directory.
  std::string storage_dir;

  // --- lifecycle ---
  // Both count from the moment create() returns. When the timeout expires the sandbox is killed
  // and everything it holds (threads, fds, guest memory) is freed; status() then says
  // Errc::timeout. Zero: no timeout. Sandbox::set_timeout()/extend() move it while it runs.
  Millis timeout{0};
  // Hard cap: the sandbox never lives longer, whatever set_timeout()/extend() ask. Zero: none.
  Millis max_lifetime{0};
  // memory_bytes must be within [kMinSandboxMemory, kMaxSandboxMemory] (a multiple of 1 MiB)
  // and vcpus within [1, kMaxSandboxVcpus]; else create() fails with Errc::invalid_argument.
};

// --- lifecycle ---
inline constexpr uint64_t kMinSandboxMemory = 256ull << 20;
inline constexpr uint64_t kMaxSandboxMemory = 4ull << 30;
inline constexpr unsigned kMaxSandboxVcpus = 64;

// Metering figures of one sandbox (Sandbox::stats()). After the sandbox ended they stay frozen
// at their final values.
struct SandboxStats {
  Millis uptime{0};                       // from the start of create() until now or the end
  std::chrono::nanoseconds vcpu_time{0};  // CPU time used by the vCPU threads, summed
  uint64_t memory_bytes = 0;              // guest RAM configured
  uint64_t memory_resident_bytes = 0;     // guest RAM the host actually backs (touched pages)
  uint64_t net_bytes_up = 0;              // through the egress proxy, to upstreams
  uint64_t net_bytes_down = 0;            // through the egress proxy, back to the guest
  uint64_t net_requests = 0;              // requests the proxy handled (allowed or denied)
  uint64_t commands = 0;                  // commands started (sh, exec, spawn)
  std::optional<Millis> time_left;        // until the timeout or max_lifetime; none without either
  bool running = false;
};

struct ExecOptions {
  std::map<std::string, std::string> env;  // over the sandbox's defaults
  std::string cwd;                         // empty: "/"
  // Enforced inside the guest: the command's whole process group is killed (SIGKILL) and the
  // result has timed_out set. Zero: no limit.
  Millis timeout{0};
  // How long the host waits for the result (sh/exec); past it, Errc::timeout and the command is
  // killed. Zero: timeout + 10 s when timeout is set, else 1 hour.
  Millis wait_timeout{0};
  // Piped to the command's stdin, which is then closed (exec/sh only).
  std::string stdin_data;
};

struct ExecResult {
  int exit_code = -1;  // -1 when killed by a signal
  int signal = 0;      // the signal that killed it, else 0
  bool timed_out = false;
  // glibc defines stdout/stderr as macros expanding to themselves, so these names work.
  std::string stdout;
  std::string stderr;

  bool success() const { return exit_code == 0; }
  // stdout without one trailing newline: `sb->sh("pwd")->text() == "/"`.
  std::string text() const;
};

using OutputCallback = std::function<void(std::string_view)>;

struct SpawnOptions {
  std::map<std::string, std::string> env;
  std::string cwd;
  Millis timeout{0};  // as ExecOptions::timeout
  // Output goes to the callbacks as it arrives; without one, it is collected for wait().
  OutputCallback on_stdout;
  OutputCallback on_stderr;
};

// A running command started by Sandbox::spawn. Destroying it kills the command if it still runs.
class Process {
 public:
  virtual ~Process() = default;
  virtual int pid() const = 0;  // in the guest
  // Blocks while more than 1 MiB sent is not yet consumed by the command.
  virtual Status write_stdin(std::string_view data, Millis timeout = Millis(30000)) = 0;
  virtual Status close_stdin() = 0;
  // Signals the command's process group.
  virtual Status kill(int signal = SIGKILL) = 0;
  // Errc::timeout when still running after `timeout` (it keeps running). The result holds the
  // collected output of the streams that have no callback.
  virtual Result<ExecResult> wait(Millis timeout) = 0;
};

struct FileStat {
  enum class Type { other, regular, directory, symlink };
  Type type = Type::other;
  uint32_t mode = 0;  // permission bits
  uint64_t size = 0;
  int64_t mtime_ns = 0;
};

// The guest's filesystem. Paths are guest paths; large files stream in chunks.
class SandboxFs {
 public:
  virtual ~SandboxFs() = default;
  // Creates or truncates; parent directories are created.
  virtual Status write(const std::string& path, std::string_view data, uint32_t mode = 0644) = 0;
  virtual Result<std::string> read(const std::string& path) = 0;
  // Host file -> guest file (mode: the host file's, unless given).
  virtual Status upload(const std::string& host_path, const std::string& guest_path,
                        std::optional<uint32_t> mode = std::nullopt) = 0;
  // Guest file -> host file (created with the guest file's mode).
  virtual Status download(const std::string& guest_path, const std::string& host_path) = 0;
  virtual Status mkdir(const std::string& path, uint32_t mode = 0755, bool parents = true) = 0;
  virtual Result<FileStat> stat(const std::string& path) = 0;
  virtual Status remove(const std::string& path, bool recursive = false) = 0;
};

// The default environment of later commands.
class SandboxEnv {
 public:
  virtual ~SandboxEnv() = default;
  virtual Result<std::map<std::string, std::string>> get() = 0;
  virtual Result<std::optional<std::string>> get(const std::string& key) = 0;
  virtual Status set(const std::string& key, const std::string& value) = 0;
  virtual Status set(const std::map<std::string, std::string>& vars) = 0;
  virtual Status unset(const std::string& key) = 0;
};

class Sandbox {
 public:
  // Boots the microVM and waits (up to options.boot_timeout) until the guest agent is ready.
  static Result<std::unique_ptr<Sandbox>> create(SandboxOptions options = {});
  virtual ~Sandbox() = default;  // close()s

  // `/bin/sh -c command`.
  virtual Result<ExecResult> sh(const std::string& command, const ExecOptions& options = {}) = 0;
  // argv[0] is looked up in PATH; a missing program gives exit code 127 and a message on stderr.
  virtual Result<ExecResult> exec(const std::vector<std::string>& argv,
                                  const ExecOptions& options = {}) = 0;
  virtual Result<std::unique_ptr<Process>> spawn(const std::vector<std::string>& argv,
                                                 SpawnOptions options = {}) = 0;

  virtual SandboxFs& fs() = 0;
  virtual SandboxEnv& env() = 0;

  // Round trip to the agent (for health checks and latency measurements).
  virtual Result<std::string> ping(std::string_view payload = {},
                                   Millis timeout = Millis(5000)) = 0;
  // Ok while the sandbox runs; else why it ended.
  virtual Status status() const = 0;
  // Guest console output so far (bounded).
  virtual std::string console_output() const = 0;

  // --- storage ---
  // A read-only snapshot `name` of this sandbox's root (its base, layers and upper, as they are
  // now), bootable with SandboxOptions::root_snapshot. Needs snapshottable_root. The guest
  // filesystem is synced and frozen during the copy (writers in the guest wait), then thawed.
  virtual Result<SnapshotInfo> snapshot(const std::string& name) = 0;

  // Stops the microVM; running calls fail with Errc::closed. Idempotent.
  virtual void close() = 0;

  // --- lifecycle ---
  // The sandbox is killed `timeout` from now (zero: no timeout; max_lifetime still applies).
  // Errc::resource_exhausted when that passes max_lifetime; Errc::closed once ended.
  virtual Status set_timeout(Millis timeout) = 0;
  // Pushes the current timeout back by `more`. Errc::invalid_argument without a timeout;
  // Errc::resource_exhausted when that passes max_lifetime (the timeout is then unchanged).
  virtual Status extend(Millis more) = 0;
  // Ends the sandbox immediately (the guest gets no chance to react) and frees everything;
  // running calls fail with Errc::closed "the sandbox was killed". close() does the same today,
  // but may become graceful; kill() is the documented immediate form. Idempotent.
  virtual void kill() = 0;
  virtual SandboxStats stats() const = 0;

  // --- exposed ports ---
  // Forwards a new host TCP listener (127.0.0.1, ephemeral port) to TCP port `guest_port` on
  // the guest's loopback, over vsock: each host connection becomes one guest connection. A
  // server listening on 0.0.0.0 or 127.0.0.1 in the guest is reached. Returns "127.0.0.1:PORT"
  // (the same address when asked again for the same port). A refused guest connection closes
  // the host one. Every connection closes when the sandbox ends.
  virtual Result<std::string> expose_port(uint16_t guest_port) = 0;
  // expose_port() as a URL: "http://127.0.0.1:PORT".
  virtual Result<std::string> expose_http(uint16_t guest_port) = 0;
};

}  // namespace airlock
