#include "agent/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fd.h"
#include "base/log.h"

namespace airlock::agent {

using proto::Op;

namespace {

constexpr size_t kMaxCollectedOutput = 256u << 20;  // per stream, when collecting

Status guest_error(const proto::ErrorMessage& e) {
  Errc code = Errc::io;
  switch (e.code) {
    case ENOENT:
      code = Errc::not_found;
      break;
    case EACCES:
    case EPERM:
      code = Errc::permission_denied;
      break;
    case EEXIST:
    case EINVAL:
    case ENOTDIR:
    case EISDIR:
    case ENOTEMPTY:
      code = Errc::invalid_argument;
      break;
    default:
      break;
  }
  return Status(code, "guest: " + e.message);
}

Status protocol_error(const std::string& what) {
  return Status(Errc::protocol, "guest agent broke the protocol: " + what);
}

Status unexpected(Op op, const char* in) {
  return protocol_error(std::string("unexpected ") + proto::op_name(op) + " in " + in);
}

class FdTransport final : public Transport {
 public:
  explicit FdTransport(int fd) : fd_(fd) {}
  Result<size_t> read(void* buf, size_t len, Millis timeout) override {
    struct pollfd p = {fd_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (n < 0)
      return errno == EINTR ? Result<size_t>(Errc::timeout, "interrupted") : errno_status("poll");
    if (n == 0) return Status(Errc::timeout, "read timed out");
    ssize_t got = ::recv(fd_.get(), buf, len, 0);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) return Status(Errc::timeout, "read timed out");
      return errno_status("recv");
    }
    return static_cast<size_t>(got);
  }
  Status write(std::string_view data, Millis timeout) override {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!data.empty()) {
      auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return Status(Errc::timeout, "write timed out");
      struct pollfd p = {fd_.get(), POLLOUT, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) continue;
        return errno_status("send");
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return ok_status();
  }
  void close() override { ::shutdown(fd_.get(), SHUT_RDWR); }

 private:
  UniqueFd fd_;
};

}  // namespace

std::unique_ptr<Transport> make_fd_transport(int fd) {
  return std::make_unique<FdTransport>(fd);
}

struct Client::CallState final : Pending {
  std::vector<Op> expected;  // besides Error
  std::mutex m;
  std::condition_variable cv;
  std::optional<proto::Frame> reply;
  Status error;

  Status on_frame(proto::Frame& f, bool& finished) override {
    bool ok = f.header.op == Op::kError;
    for (Op op : expected) ok |= f.header.op == op;
    if (!ok) return unexpected(f.header.op, "a reply");
    std::lock_guard lock(m);
    reply = std::move(f);
    finished = true;
    cv.notify_all();
    return ok_status();
  }
  void on_fail(const Status& why) override {
    std::lock_guard lock(m);
    if (!reply) error = why;
    cv.notify_all();
  }
  Result<proto::Frame> wait(Millis timeout) {
    std::unique_lock lock(m);
    if (!cv.wait_for(lock, timeout, [&] { return reply.has_value() || !error.ok(); }))
      return Status(Errc::timeout, "the guest agent did not answer in time");
    if (reply) {
      if (reply->header.op == Op::kError) {
        proto::ErrorMessage e;
        proto::ErrorMessage::decode(reply->payload, e);
        return guest_error(e);
      }
      return *reply;
    }
    return error;
  }
  bool answered() {
    std::lock_guard lock(m);
    return reply.has_value();
  }
};

struct ExecState final : Pending {
  OutputCallback on_stdout, on_stderr;
  std::mutex m;
  std::condition_variable cv;
  bool started = false;
  uint32_t pid = 0;
  uint64_t stdin_unacked = 0;
  std::string out, err;
  std::optional<ExitResult> exit;
  Status error;

  Status on_frame(proto::Frame& f, bool& finished) override {
    switch (f.header.op) {
      case Op::kStarted: {
        proto::U32Message msg;
        proto::U32Message::decode(f.payload, msg);
        std::lock_guard lock(m);
        if (started) return unexpected(f.header.op, "a running command");
        started = true;
        pid = msg.value;
        cv.notify_all();
        return ok_status();
      }
      case Op::kStdout:
      case Op::kStderr: {
        bool is_out = f.header.op == Op::kStdout;
        const OutputCallback& cb = is_out ? on_stdout : on_stderr;
        if (cb) {
          cb(f.payload);
          return ok_status();
        }
        std::lock_guard lock(m);
        std::string& sink = is_out ? out : err;
        if (sink.size() + f.payload.size() <= kMaxCollectedOutput) sink += f.payload;
        return ok_status();
      }
      case Op::kStdinAck: {
        proto::U32Message msg;
        proto::U32Message::decode(f.payload, msg);
        std::lock_guard lock(m);
        stdin_unacked -= std::min<uint64_t>(stdin_unacked, msg.value);
        cv.notify_all();
        return ok_status();
      }
      case Op::kExit: {
        proto::ExitStatus st;
        proto::ExitStatus::decode(f.payload, st);
        std::lock_guard lock(m);
        exit = ExitResult{st.exit_code, st.signal, st.timed_out};
        finished = true;
        cv.notify_all();
        return ok_status();
      }
      case Op::kError: {
        proto::ErrorMessage e;
        proto::ErrorMessage::decode(f.payload, e);
        std::lock_guard lock(m);
        error = guest_error(e);
        finished = true;
        cv.notify_all();
        return ok_status();
      }
      default:
        return unexpected(f.header.op, "a command");
    }
  }
  void on_fail(const Status& why) override {
    std::lock_guard lock(m);
    if (!exit && error.ok()) error = why;
    cv.notify_all();
  }
};

// ---------------------------------------------------------------------------------------------

Client::Client(std::unique_ptr<Transport> transport) : transport_(std::move(transport)) {}

Client::~Client() {
  close();
}

Result<std::shared_ptr<Client>> Client::connect(std::unique_ptr<Transport> transport,
                                                Millis hello_timeout) {
  std::shared_ptr<Client> c(new Client(std::move(transport)));
  // Read exactly the Hello frame before starting the reader thread.
  proto::FrameDecoder decoder;
  std::vector<proto::Frame> frames;
  auto deadline = std::chrono::steady_clock::now() + hello_timeout;
  char byte_buf[proto::kHeaderSize + proto::kMaxMessage + 8];
  size_t need = proto::kHeaderSize;
  size_t have = 0;
  bool got_header = false;
  while (frames.empty()) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return Status(Errc::timeout, "the guest agent did not say hello in time");
    AIRLOCK_ASSIGN_OR_RETURN(size_t n, c->transport_->read(byte_buf + have, need - have, left));
    if (n == 0) return Status(Errc::closed, "the guest agent closed the connection before hello");
    have += n;
    if (have < need) continue;
    if (!got_header) {
      proto::FrameHeader h;
      std::string err = proto::decode_header(reinterpret_cast<uint8_t*>(byte_buf), h);
      if (!err.empty()) return protocol_error(err);
      if (h.op != Op::kHello || h.id != 0) return protocol_error("first frame is not hello");
      if (h.length > proto::kMaxMessage + 8) return protocol_error("hello too long");
      got_header = true;
      need += h.length;
      if (have < need) continue;
    }
    std::string err = decoder.feed(std::string_view(byte_buf, have), frames);
    if (!err.empty()) return protocol_error(err);
  }
  proto::Hello hello;
  std::string err = proto::Hello::decode(frames[0].payload, hello);
  if (!err.empty()) return protocol_error("hello: " + err);
  if (hello.version != proto::kVersion)
    return Status(Errc::protocol, "guest agent speaks protocol version " +
                                      std::to_string(hello.version) + ", the host " +
                                      std::to_string(proto::kVersion));
  c->agent_description_ = hello.agent;
  c->reader_ = std::thread([raw = c.get()] { raw->reader_loop(); });
  return c;
}

void Client::set_on_dead(std::function<void(const Status&)> on_dead) {
  std::lock_guard lock(mutex_);
  on_dead_ = std::move(on_dead);
}

bool Client::alive() const {
  std::lock_guard lock(mutex_);
  return dead_.ok();
}

Status Client::dead_status() const {
  std::lock_guard lock(mutex_);
  return dead_;
}

void Client::reader_loop() {
  proto::FrameDecoder decoder;
  std::vector<proto::Frame> frames;
  std::string buf(256 * 1024, '\0');
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (!dead_.ok()) return;
    }
    auto n = transport_->read(buf.data(), buf.size(), Millis(500));
    if (!n.ok()) {
      if (n.status().code() == Errc::timeout) continue;
      Status st = n.status();
      fail(Status(Errc::closed, "lost the connection to the guest agent: " + st.message()));
      return;
    }
    if (n.value() == 0) {
      fail(Status(Errc::closed, "the guest agent closed the connection"));
      return;
    }
    frames.clear();
    std::string err = decoder.feed(std::string_view(buf.data(), n.value()), frames);
    for (auto& f : frames) {
      Status st = dispatch(f);
      if (!st.ok()) {
        fail(st);
        return;
      }
    }
    if (!err.empty()) {
      fail(protocol_error(err));
      return;
    }
  }
}

Status Client::dispatch(proto::Frame& f) {
  if (!proto::guest_may_send(f.header.op))
    return protocol_error(std::string("the guest sent ") + proto::op_name(f.header.op) +
                          ", which only the host may send");
  if (f.header.op == Op::kHello) return protocol_error("a second hello");
  std::string err = proto::validate_payload(f.header.op, f.payload);
  if (!err.empty()) return protocol_error(std::string(proto::op_name(f.header.op)) + ": " + err);
  std::shared_ptr<Pending> p;
  {
    std::lock_guard lock(mutex_);
    auto it = pending_.find(f.header.id);
    if (it == pending_.end()) {  // late or unknown: dropped
      if (++dropped_frames_ % 1024 == 1)
        AIRLOCK_LOG_DEBUG("agent", "dropped {} frames for unknown request ids (last: {} for id {})",
                          dropped_frames_, proto::op_name(f.header.op), f.header.id);
      return ok_status();
    }
    p = it->second;
  }
  bool finished = false;
  AIRLOCK_RETURN_IF_ERROR(p->on_frame(f, finished));
  if (finished) unregister(f.header.id);
  return ok_status();
}

uint32_t Client::register_pending(std::shared_ptr<Pending> p) {
  std::lock_guard lock(mutex_);
  if (!dead_.ok()) return 0;
  uint32_t id;
  do {
    id = next_id_++;
  } while (id == 0 || pending_.count(id));
  pending_[id] = std::move(p);
  return id;
}

void Client::unregister(uint32_t id) {
  std::lock_guard lock(mutex_);
  pending_.erase(id);
}

Status Client::send_frame(Op op, uint32_t id, std::string_view payload, Millis timeout) {
  {
    std::lock_guard lock(mutex_);
    if (!dead_.ok()) return dead_;
  }
  std::string frame = proto::encode_frame(op, id, payload);
  std::lock_guard wlock(write_mutex_);
  Status st = transport_->write(frame, timeout);
  if (st.ok()) return st;
  // A partial frame leaves the stream unusable: the connection is over.
  Status why(st.code() == Errc::timeout ? Errc::timeout : Errc::closed,
             "sending to the guest agent failed: " + st.message());
  fail(why);
  return why;
}

void Client::fail(Status why) {
  if (why.ok()) why = Status(Errc::closed, "connection to the guest agent closed");
  std::map<uint32_t, std::shared_ptr<Pending>> pending;
  std::function<void(const Status&)> on_dead;
  {
    std::lock_guard lock(mutex_);
    if (!dead_.ok()) return;
    dead_ = why;
    pending.swap(pending_);
    if (!closing_) on_dead = on_dead_;
  }
  transport_->close();
  // The owner hears first (it must not block), so anyone woken below sees a dead sandbox.
  if (on_dead) on_dead(why);
  for (auto& [id, p] : pending) p->on_fail(why);
}

void Client::close() {
  {
    std::lock_guard lock(mutex_);
    closing_ = true;
  }
  fail(Status(Errc::closed, "the sandbox was closed"));
  if (reader_.joinable()) {
    if (reader_.get_id() == std::this_thread::get_id())
      reader_.detach();
    else
      reader_.join();
  }
}

Result<proto::Frame> Client::call(Op op, std::string_view payload, Millis timeout) {
  auto state = std::make_shared<CallState>();
  switch (op) {
    case Op::kPing:
      state->expected = {Op::kPong};
      break;
    case Op::kStat:
      state->expected = {Op::kStatResult};
      break;
    case Op::kEnvGet:
      state->expected = {Op::kEnvResult};
      break;
    default:
      state->expected = {Op::kOk};
      break;
  }
  uint32_t id = register_pending(state);
  if (id == 0) return dead_status();
  Status st = send_frame(op, id, payload, timeout);
  if (!st.ok()) {
    unregister(id);
    return st;
  }
  auto r = state->wait(timeout);
  if (!r.ok()) unregister(id);
  return r;
}

Result<std::string> Client::ping(std::string_view payload, Millis timeout) {
  AIRLOCK_ASSIGN_OR_RETURN(auto f, call(Op::kPing, payload, timeout));
  return std::move(f.payload);
}

Status Client::mkdir(const std::string& path, uint32_t mode, bool parents, Millis timeout) {
  auto r = call(Op::kMkdir, proto::PathRequest{path, mode, parents ? 1u : 0u}.encode(), timeout);
  return r.ok() ? ok_status() : r.status();
}

Result<proto::StatResult> Client::stat(const std::string& path, Millis timeout) {
  AIRLOCK_ASSIGN_OR_RETURN(auto f,
                           call(Op::kStat, proto::PathRequest{path, 0, 0}.encode(), timeout));
  proto::StatResult s;
  proto::StatResult::decode(f.payload, s);
  return s;
}

Status Client::remove(const std::string& path, bool recursive, Millis timeout) {
  auto r = call(Op::kRemove, proto::PathRequest{path, 0, recursive ? 1u : 0u}.encode(), timeout);
  return r.ok() ? ok_status() : r.status();
}

Status Client::env_set(const std::vector<std::string>& set, const std::vector<std::string>& unset,
                       Millis timeout) {
  auto r = call(Op::kEnvSet, proto::EnvRequest{set, unset}.encode(), timeout);
  return r.ok() ? ok_status() : r.status();
}

Result<std::vector<std::string>> Client::env_get(Millis timeout) {
  AIRLOCK_ASSIGN_OR_RETURN(auto f, call(Op::kEnvGet, {}, timeout));
  proto::EnvRequest r;
  proto::EnvRequest::decode(f.payload, r);
  return std::move(r.set);
}

Status Client::write_file(const std::string& path, uint32_t mode, uint32_t flags,
                          const Producer& produce, Millis timeout) {
  auto state = std::make_shared<CallState>();
  state->expected = {Op::kOk};
  uint32_t id = register_pending(state);
  if (id == 0) return dead_status();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left = [&] {
    return std::max(
        Millis(1), std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now()));
  };
  Status st =
      send_frame(Op::kFileWrite, id, proto::PathRequest{path, mode, flags}.encode(), left());
  while (st.ok() && !state->answered()) {  // an early answer is an error: stop sending
    auto chunk = produce();
    if (!chunk.ok()) {
      st = chunk.status();
      break;
    }
    if (chunk->empty()) {
      st = send_frame(Op::kFileEnd, id, {}, left());
      break;
    }
    std::string_view data = *chunk;
    while (st.ok() && !data.empty()) {
      size_t n = std::min<size_t>(data.size(), proto::kDataChunk);
      st = send_frame(Op::kFileData, id, data.substr(0, n), left());
      data.remove_prefix(n);
    }
  }
  if (!st.ok() && !state->answered()) {
    // The guest still has the file open: end the write so it closes it (it answers Ok; we
    // ignore that and report our own error).
    if (alive()) (void)send_frame(Op::kFileEnd, id, {}, left());
    unregister(id);
    return st;
  }
  auto r = state->wait(left());
  unregister(id);
  return r.ok() ? ok_status() : r.status();
}

Result<proto::StatResult> Client::read_file(const std::string& path, const Consumer& consume,
                                            Millis timeout) {
  struct State final : Pending {
    const Consumer* consume;
    std::mutex m;
    std::condition_variable cv;
    std::optional<proto::StatResult> info;
    bool done = false;
    Status error;
    Status on_frame(proto::Frame& f, bool& finished) override {
      std::unique_lock lock(m);
      switch (f.header.op) {
        case Op::kFileInfo:
          if (info) return unexpected(f.header.op, "a file read");
          info.emplace();
          proto::StatResult::decode(f.payload, *info);
          return ok_status();
        case Op::kFileData: {
          if (!info) return unexpected(f.header.op, "a file read before its info");
          if (!error.ok()) return ok_status();  // the consumer failed: drop the rest
          lock.unlock();
          Status st = (*consume)(f.payload);
          lock.lock();
          if (!st.ok()) error = st;
          return ok_status();
        }
        case Op::kFileEnd:
          if (!info) return unexpected(f.header.op, "a file read before its info");
          done = true;
          finished = true;
          cv.notify_all();
          return ok_status();
        case Op::kError: {
          proto::ErrorMessage e;
          proto::ErrorMessage::decode(f.payload, e);
          if (error.ok()) error = guest_error(e);
          done = true;
          finished = true;
          cv.notify_all();
          return ok_status();
        }
        default:
          return unexpected(f.header.op, "a file read");
      }
    }
    void on_fail(const Status& why) override {
      std::lock_guard lock(m);
      if (!done && error.ok()) error = why;
      done = true;
      cv.notify_all();
    }
  };
  auto state = std::make_shared<State>();
  state->consume = &consume;
  uint32_t id = register_pending(state);
  if (id == 0) return dead_status();
  Status st = send_frame(Op::kFileRead, id, proto::PathRequest{path, 0, 0}.encode(), timeout);
  if (!st.ok()) {
    unregister(id);
    return st;
  }
  std::unique_lock lock(state->m);
  if (!state->cv.wait_for(lock, timeout, [&] { return state->done; })) {
    lock.unlock();
    // `consume` lives on our stack: make sure the reader thread never calls it again.
    unregister(id);
    std::lock_guard relock(state->m);
    state->error = Status(Errc::timeout, "reading " + path + " timed out");
    return state->error;
  }
  if (!state->error.ok()) return state->error;
  return *state->info;
}

// ---------------------------------------------------------------------------------------------
// Executions

Result<std::unique_ptr<Execution>> Client::start(const ExecSpec& spec, OutputCallback on_stdout,
                                                 OutputCallback on_stderr, Millis timeout) {
  proto::ExecRequest req;
  req.argv = spec.argv;
  req.env = spec.env;
  req.cwd = spec.cwd;
  req.timeout_ms = spec.timeout_ms;
  const bool defer_started = spec.defer_started && !spec.open_stdin;
  req.flags = (spec.open_stdin ? proto::exec_flags::kStdin : 0) |
              (spec.clear_env ? proto::exec_flags::kClearEnv : 0) |
              (defer_started ? proto::exec_flags::kDeferStarted : 0);
  // Check locally what the guest would refuse, with a clearer message.
  std::string payload = req.encode();
  if (payload.size() > proto::kMaxPayload)
    return Status(Errc::invalid_argument, "command, arguments and environment exceed 1 MiB");
  std::string err = proto::ExecRequest::decode(payload, req);
  if (!err.empty()) return Status(Errc::invalid_argument, "exec: " + err);

  auto state = std::make_shared<ExecState>();
  state->on_stdout = std::move(on_stdout);
  state->on_stderr = std::move(on_stderr);
  uint32_t id = register_pending(state);
  if (id == 0) return dead_status();
  AIRLOCK_RETURN_IF_ERROR(send_frame(Op::kExec, id, payload, timeout));
  // Deferred: Started, an Error or Exit all reach the caller through Execution::wait().
  if (defer_started)
    return std::unique_ptr<Execution>(new Execution(shared_from_this(), state, id));
  std::unique_lock lock(state->m);
  if (!state->cv.wait_for(lock, timeout,
                          [&] { return state->started || !state->error.ok() || state->exit; }))
    return Status(Errc::timeout, "the guest agent did not start the command in time");
  if (!state->started) {
    lock.unlock();
    unregister(id);
    return state->error.ok() ? protocol_error("exit before start") : state->error;
  }
  std::unique_ptr<Execution> e(new Execution(shared_from_this(), state, id));
  e->pid_ = state->pid;
  return e;
}

Execution::Execution(std::shared_ptr<Client> client, std::shared_ptr<ExecState> state, uint32_t id)
    : client_(std::move(client)), state_(std::move(state)), id_(id) {}

Execution::~Execution() {
  bool running;
  {
    std::lock_guard lock(state_->m);
    running = !state_->exit && state_->error.ok();
  }
  // Nobody can wait for it any more: end it instead of leaving it behind.
  if (running && client_->alive())
    (void)client_->send_frame(Op::kSignal, id_, proto::SignalRequest{9}.encode(), Millis(1000));
  client_->unregister(id_);
}

Status Execution::write_stdin(std::string_view data, Millis timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!data.empty()) {
    size_t n = std::min<size_t>(data.size(), proto::kDataChunk);
    {
      std::unique_lock lock(state_->m);
      bool ok = state_->cv.wait_until(lock, deadline, [&] {
        return state_->stdin_unacked + n <= proto::kStdinWindow || state_->exit ||
               !state_->error.ok();
      });
      if (!state_->error.ok()) return state_->error;
      if (state_->exit) return Status(Errc::closed, "the command has exited");
      if (!ok) return Status(Errc::timeout, "the command is not reading its stdin");
      state_->stdin_unacked += n;
    }
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    AIRLOCK_RETURN_IF_ERROR(
        client_->send_frame(Op::kStdinData, id_, data.substr(0, n), std::max(left, Millis(1))));
    data.remove_prefix(n);
  }
  return ok_status();
}

Status Execution::close_stdin() {
  return client_->send_frame(Op::kStdinClose, id_, {}, Millis(10000));
}

Status Execution::signal(int sig) {
  if (sig <= 0 || sig > 64) return Status(Errc::invalid_argument, "signal out of range");
  {
    std::lock_guard lock(state_->m);
    if (state_->exit) return ok_status();
  }
  return client_->send_frame(Op::kSignal, id_, proto::SignalRequest{sig}.encode(), Millis(10000));
}

Result<ExitResult> Execution::wait(Millis timeout) {
  std::unique_lock lock(state_->m);
  if (!state_->cv.wait_for(lock, timeout, [&] { return state_->exit || !state_->error.ok(); }))
    return Status(Errc::timeout, "the command is still running");
  if (state_->exit) return *state_->exit;
  return state_->error;
}

std::string Execution::take_stdout() {
  std::lock_guard lock(state_->m);
  return std::move(state_->out);
}

std::string Execution::take_stderr() {
  std::lock_guard lock(state_->m);
  return std::move(state_->err);
}

}  // namespace airlock::agent
