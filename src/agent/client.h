// Host side of the agent protocol (protocol.h): one connection to the guest agent, many
// operations at once over it.
//
// A reader thread decodes the guest's frames and hands each to the operation waiting under its
// request id. Anything malformed from the guest (bad frame, bad payload, an op the guest may not
// send) is a protocol error: the client fails every pending and later call with Errc::protocol
// and reports it through on_dead, so the owner can end that sandbox. End of stream or a
// connection error does the same with Errc::closed. Output for ids nobody waits for is dropped.
//
// Threads: every method may be called from any thread. Output callbacks run on the reader
// thread: they must not block for long and must not call wait() on the same process.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "agent/protocol.h"
#include "airlock/status.hpp"

namespace airlock::agent {

using Millis = std::chrono::milliseconds;

// A byte stream to the agent: a vsock stream in a sandbox, a socketpair in tests.
class Transport {
 public:
  virtual ~Transport() = default;
  // 0 bytes: end of stream. Errc::timeout when nothing came within `timeout`.
  virtual Result<size_t> read(void* buf, size_t len, Millis timeout) = 0;
  virtual Status write(std::string_view data, Millis timeout) = 0;
  virtual void close() = 0;
};

// A Transport over a connected stream socket (tests, tools).
std::unique_ptr<Transport> make_fd_transport(int fd);

struct ExecSpec {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // KEY=VALUE, over the sandbox defaults
  std::string cwd;
  uint32_t timeout_ms = 0;  // enforced in the guest: kills the process group
  bool open_stdin = false;  // else stdin is /dev/null
  bool clear_env = false;
  // The caller only collects the result (no stdin, no pid needed): start() returns without
  // waiting for Started, and the guest sends Started with the output or Exit (one packet less
  // per short command). Ignored with open_stdin. Execution::pid() is 0 then.
  bool defer_started = false;
};

struct ExitResult {
  int exit_code = -1;
  int signal = 0;
  bool timed_out = false;
};

using OutputCallback = std::function<void(std::string_view)>;

class Client;
struct ExecState;

// One running command. Output goes to the callbacks, or is collected when they are empty.
class Execution {
 public:
  ~Execution();
  uint32_t pid() const { return pid_; }
  // Waits for the command's credit window (bounded in-flight stdin), then sends.
  Status write_stdin(std::string_view data, Millis timeout);
  Status close_stdin();
  Status signal(int sig);
  // Errc::timeout when still running after `timeout`; the client's error if the sandbox died.
  Result<ExitResult> wait(Millis timeout);
  // Collected output (only when no callback was given); call after wait().
  std::string take_stdout();
  std::string take_stderr();

 private:
  friend class Client;
  Execution(std::shared_ptr<Client> client, std::shared_ptr<ExecState> state, uint32_t id);

  std::shared_ptr<Client> client_;
  std::shared_ptr<ExecState> state_;
  const uint32_t id_;
  uint32_t pid_ = 0;
};

// An operation waiting for frames under its id. on_frame runs on the reader thread without the
// client's lock; it returns a non-ok Status for a protocol error and sets `finished` when the
// operation is complete.
struct Pending {
  virtual ~Pending() = default;
  virtual Status on_frame(proto::Frame& f, bool& finished) = 0;
  virtual void on_fail(const Status& why) = 0;
};

class Client : public std::enable_shared_from_this<Client> {
 public:
  // Reads Hello (version check) within `hello_timeout` and starts the reader thread.
  static Result<std::shared_ptr<Client>> connect(std::unique_ptr<Transport> transport,
                                                 Millis hello_timeout);
  ~Client();

  // Called once (on the reader thread, or the thread calling fail()) when the connection ends
  // for any reason other than close(). Set before anything can fail.
  void set_on_dead(std::function<void(const Status&)> on_dead);

  const std::string& agent_description() const { return agent_description_; }

  Result<std::unique_ptr<Execution>> start(const ExecSpec& spec, OutputCallback on_stdout,
                                           OutputCallback on_stderr, Millis timeout);
  Result<std::string> ping(std::string_view payload, Millis timeout);

  // Files. Writes stream `data` through a producer: it is called until it returns an empty
  // string (end) or an error.
  using Producer = std::function<Result<std::string>()>;
  Status write_file(const std::string& path, uint32_t mode, uint32_t flags, const Producer& produce,
                    Millis timeout);
  using Consumer = std::function<Status(std::string_view)>;
  // Streams the file's content to `consume`; returns its stat (size, mode).
  Result<proto::StatResult> read_file(const std::string& path, const Consumer& consume,
                                      Millis timeout);
  Status mkdir(const std::string& path, uint32_t mode, bool parents, Millis timeout);
  Result<proto::StatResult> stat(const std::string& path, Millis timeout);
  Status remove(const std::string& path, bool recursive, Millis timeout);
  Status env_set(const std::vector<std::string>& set, const std::vector<std::string>& unset,
                 Millis timeout);
  Result<std::vector<std::string>> env_get(Millis timeout);

  // Ends the connection: pending and later calls fail with `why` (Errc::closed if ok).
  void fail(Status why);
  void close();
  bool alive() const;
  // The error calls fail with once the client is dead.
  Status dead_status() const;

 private:
  friend class Execution;
  struct CallState;

  explicit Client(std::unique_ptr<Transport> transport);
  void reader_loop();
  Status dispatch(proto::Frame& frame);
  uint32_t register_pending(std::shared_ptr<Pending> p);
  void unregister(uint32_t id);
  Status send_frame(proto::Op op, uint32_t id, std::string_view payload, Millis timeout);
  // A simple request answered by one frame (Ok/StatResult/EnvResult/Pong/Error).
  Result<proto::Frame> call(proto::Op op, std::string_view payload, Millis timeout);

  std::unique_ptr<Transport> transport_;
  std::string agent_description_;
  std::thread reader_;
  std::mutex write_mutex_;  // one frame at a time on the wire

  mutable std::mutex mutex_;  // guards everything below
  std::map<uint32_t, std::shared_ptr<Pending>> pending_;
  uint32_t next_id_ = 1;
  uint64_t dropped_frames_ = 0;
  Status dead_;  // non-ok once the connection ended
  bool closing_ = false;
  std::function<void(const Status&)> on_dead_;
};

}  // namespace airlock::agent
