// The airlock agent protocol: how the host library and the guest agent talk over one vsock
// stream. This one header is shared by both sides (the guest binary is static and links nothing
// of the host library), so it uses only the C++ standard library.
//
// Transport: the guest agent connects to the host (CID 2) on port kAgentPort once the guest is
// up, and sends Hello. Everything then flows as frames on that one connection; many operations
// run at once, each under the request id the host chose for it (ids are never reused within a
// connection; 0 is reserved for connection-level messages such as Hello).
//
// Frame: a 12-byte little-endian header, then `length` payload bytes.
//   u32 length   payload bytes, at most kMaxPayload
//   u16 op       an Op below; an unknown op is a protocol error (peers share kVersion)
//   u16 flags    must be 0 in version 1
//   u32 id       request id
// Payload fields are little-endian integers; strings and byte blobs are a u32 length followed
// by that many bytes. A payload must be consumed exactly (no trailing bytes).
//
// Operations (H = host to guest, G = guest to host):
//   Hello        G  id 0: version, agent description. Sent once, first.
//   Ping/Pong    H/G  opaque bytes echoed back.
//   Exec         H  argv, env (KEY=VALUE, added to the defaults), cwd, timeout, flags.
//                   Answers: Started{pid} or Error; then Stdout/Stderr chunks (any order,
//                   each stream in order), then Exit{code, signal, timed_out}. Exit is last.
//                   With exec_flags::kDeferStarted, Started comes just before the first
//                   output chunk or Exit (often in the same packet as Exit).
//   StdinData    H  bytes for the process' stdin. The host may have at most kStdinWindow bytes
//                   not yet acknowledged by StdinAck (G, bytes written to the pipe).
//   StdinClose   H  closes the process' stdin.
//   Signal       H  sends a signal to the process group of the command.
//   FileWrite    H  path, mode, flags; followed by FileData chunks (H) and FileEnd (H). The
//                   guest answers once with Ok or Error (after FileEnd, or early on error;
//                   after an early Error it ignores the remaining chunks of that id).
//   FileRead     H  path. Answer: FileInfo{size, mode}, FileData chunks (G), FileEnd (G); or
//                   Error at any point (then nothing more for that id).
//   Mkdir/Stat/Remove  H  answered by Ok / StatResult / Ok, or Error.
//   EnvSet       H  sets and unsets variables of the default environment; Ok.
//   EnvGet       H  answered by EnvResult (the whole default environment).
//   Error        G  errno-style code and a message; ends the operation.
//
// Flow control: vsock's own credit bounds bytes in flight on the connection. Both sides must
// keep reading frames promptly; data for an id that is finished or unknown is dropped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::agent::proto {

inline constexpr uint32_t kVersion = 1;
inline constexpr uint32_t kAgentPort = 1024;  // host-side vsock port the agent connects to
inline constexpr uint32_t kHostCid = 2;

inline constexpr size_t kHeaderSize = 12;
inline constexpr uint32_t kMaxPayload = 1u << 20;    // 1 MiB
inline constexpr uint32_t kDataChunk = 64u * 1024;   // data frames senders produce
inline constexpr uint32_t kStdinWindow = 1u << 20;   // unacknowledged stdin bytes
inline constexpr uint32_t kMaxArgs = 4096;           // argv entries
inline constexpr uint32_t kMaxEnv = 4096;            // env entries
inline constexpr uint32_t kMaxString = 128u * 1024;  // one argv/env string
inline constexpr uint32_t kMaxPath = 4096;           // PATH_MAX
inline constexpr uint32_t kMaxMessage = 4096;        // error messages, descriptions

enum class Op : uint16_t {
  kHello = 1,
  kPing = 2,
  kPong = 3,
  kExec = 10,
  kStarted = 11,
  kStdinData = 12,
  kStdinClose = 13,
  kStdinAck = 14,
  kStdout = 15,
  kStderr = 16,
  kExit = 17,
  kSignal = 18,
  kFileWrite = 20,
  kFileRead = 21,
  kFileInfo = 22,
  kFileData = 23,
  kFileEnd = 24,
  kMkdir = 25,
  kStat = 26,
  kStatResult = 27,
  kRemove = 28,
  kEnvSet = 30,
  kEnvGet = 31,
  kEnvResult = 32,
  kOk = 40,
  kError = 41,
};

inline bool known_op(uint16_t op) {
  switch (static_cast<Op>(op)) {
    case Op::kHello:
    case Op::kPing:
    case Op::kPong:
    case Op::kExec:
    case Op::kStarted:
    case Op::kStdinData:
    case Op::kStdinClose:
    case Op::kStdinAck:
    case Op::kStdout:
    case Op::kStderr:
    case Op::kExit:
    case Op::kSignal:
    case Op::kFileWrite:
    case Op::kFileRead:
    case Op::kFileInfo:
    case Op::kFileData:
    case Op::kFileEnd:
    case Op::kMkdir:
    case Op::kStat:
    case Op::kStatResult:
    case Op::kRemove:
    case Op::kEnvSet:
    case Op::kEnvGet:
    case Op::kEnvResult:
    case Op::kOk:
    case Op::kError:
      return true;
  }
  return false;
}

inline const char* op_name(Op op) {
  switch (op) {
    case Op::kHello:
      return "hello";
    case Op::kPing:
      return "ping";
    case Op::kPong:
      return "pong";
    case Op::kExec:
      return "exec";
    case Op::kStarted:
      return "started";
    case Op::kStdinData:
      return "stdin-data";
    case Op::kStdinClose:
      return "stdin-close";
    case Op::kStdinAck:
      return "stdin-ack";
    case Op::kStdout:
      return "stdout";
    case Op::kStderr:
      return "stderr";
    case Op::kExit:
      return "exit";
    case Op::kSignal:
      return "signal";
    case Op::kFileWrite:
      return "file-write";
    case Op::kFileRead:
      return "file-read";
    case Op::kFileInfo:
      return "file-info";
    case Op::kFileData:
      return "file-data";
    case Op::kFileEnd:
      return "file-end";
    case Op::kMkdir:
      return "mkdir";
    case Op::kStat:
      return "stat";
    case Op::kStatResult:
      return "stat-result";
    case Op::kRemove:
      return "remove";
    case Op::kEnvSet:
      return "env-set";
    case Op::kEnvGet:
      return "env-get";
    case Op::kEnvResult:
      return "env-result";
    case Op::kOk:
      return "ok";
    case Op::kError:
      return "error";
  }
  return "unknown";
}

struct FrameHeader {
  uint32_t length = 0;
  Op op = Op::kOk;
  uint16_t flags = 0;
  uint32_t id = 0;
};

// ---- primitive encoding ----

inline void put_u16(std::string& out, uint16_t v) {
  out.push_back(static_cast<char>(v & 0xff));
  out.push_back(static_cast<char>(v >> 8));
}
inline void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
inline uint16_t get_u16(const uint8_t* p) {
  return static_cast<uint16_t>(p[0] | (p[1] << 8));
}
inline uint32_t get_u32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline uint64_t get_u64(const uint8_t* p) {
  return static_cast<uint64_t>(get_u32(p)) | (static_cast<uint64_t>(get_u32(p + 4)) << 32);
}

// Writes a payload; encode_frame() prefixes it with the header.
class Writer {
 public:
  Writer& u8(uint8_t v) {
    out_.push_back(static_cast<char>(v));
    return *this;
  }
  Writer& u32(uint32_t v) {
    put_u32(out_, v);
    return *this;
  }
  Writer& i32(int32_t v) {
    put_u32(out_, static_cast<uint32_t>(v));
    return *this;
  }
  Writer& u64(uint64_t v) {
    put_u64(out_, v);
    return *this;
  }
  Writer& i64(int64_t v) {
    put_u64(out_, static_cast<uint64_t>(v));
    return *this;
  }
  Writer& str(std::string_view s) {
    put_u32(out_, static_cast<uint32_t>(s.size()));
    out_.append(s);
    return *this;
  }
  Writer& strings(const std::vector<std::string>& v) {
    put_u32(out_, static_cast<uint32_t>(v.size()));
    for (const auto& s : v) str(s);
    return *this;
  }
  std::string& bytes() { return out_; }

 private:
  std::string out_;
};

// Reads a payload. Any failure sticks: check ok()/error() once at the end via finish().
class Reader {
 public:
  explicit Reader(std::string_view payload)
      : p_(reinterpret_cast<const uint8_t*>(payload.data())), n_(payload.size()) {}

  uint8_t u8() { return take(1) ? p_[pos_ - 1] : 0; }
  uint32_t u32() { return take(4) ? get_u32(p_ + pos_ - 4) : 0; }
  int32_t i32() { return static_cast<int32_t>(u32()); }
  uint64_t u64() { return take(8) ? get_u64(p_ + pos_ - 8) : 0; }
  int64_t i64() { return static_cast<int64_t>(u64()); }
  bool boolean() {
    uint8_t v = u8();
    if (v > 1) fail("boolean field is not 0 or 1");
    return v == 1;
  }
  std::string str(uint32_t max_len, const char* what) {
    uint32_t len = u32();
    if (!error_.empty()) return {};
    if (len > max_len) {
      fail(std::string(what) + " longer than " + std::to_string(max_len) + " bytes");
      return {};
    }
    if (!take(len)) return {};
    return std::string(reinterpret_cast<const char*>(p_ + pos_ - len), len);
  }
  // A string that may not contain NUL (paths, argv, env): the guest passes them to C APIs.
  std::string cstr(uint32_t max_len, const char* what) {
    std::string s = str(max_len, what);
    if (s.find('\0') != std::string::npos) fail(std::string(what) + " contains a NUL byte");
    return s;
  }
  std::vector<std::string> cstrings(uint32_t max_count, uint32_t max_len, const char* what) {
    uint32_t count = u32();
    std::vector<std::string> v;
    if (!error_.empty()) return v;
    // Each entry takes at least 4 bytes: a count above remaining/4 is a lie; reject it before
    // reserving anything.
    if (count > max_count || count > (n_ - pos_) / 4) {
      fail(std::string("too many ") + what + " entries");
      return v;
    }
    v.reserve(count);
    for (uint32_t i = 0; i < count && error_.empty(); ++i) v.push_back(cstr(max_len, what));
    return v;
  }
  std::string_view rest() {
    std::string_view r(reinterpret_cast<const char*>(p_ + pos_), n_ - pos_);
    pos_ = n_;
    return r;
  }
  void fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
  }
  // "" when the payload was well formed and fully consumed, else why not.
  std::string finish() {
    if (error_.empty() && pos_ != n_) error_ = "trailing bytes in payload";
    return error_;
  }

 private:
  bool take(size_t len) {
    if (!error_.empty()) return false;
    if (len > n_ - pos_) {
      error_ = "payload truncated";
      return false;
    }
    pos_ += len;
    return true;
  }
  const uint8_t* p_;
  size_t n_;
  size_t pos_ = 0;
  std::string error_;
};

inline std::string encode_header(Op op, uint32_t id, uint32_t length) {
  std::string out;
  // `length` is not trusted to be sane here (tests forge absurd ones): reserve only real sizes.
  out.reserve(kHeaderSize + (length <= kMaxPayload ? length : 0));
  put_u32(out, length);
  put_u16(out, static_cast<uint16_t>(op));
  put_u16(out, 0);
  put_u32(out, id);
  return out;
}

// Precondition: payload.size() <= kMaxPayload (senders chunk data by kDataChunk).
inline std::string encode_frame(Op op, uint32_t id, std::string_view payload = {}) {
  std::string out = encode_header(op, id, static_cast<uint32_t>(payload.size()));
  out.append(payload);
  return out;
}

// Parses and validates a header; "" on success, else why it is malformed.
inline std::string decode_header(const uint8_t* p, FrameHeader& h) {
  h.length = get_u32(p);
  uint16_t op = get_u16(p + 4);
  h.flags = get_u16(p + 6);
  h.id = get_u32(p + 8);
  if (h.length > kMaxPayload)
    return "frame length " + std::to_string(h.length) + " exceeds the " +
           std::to_string(kMaxPayload) + "-byte limit";
  if (!known_op(op)) return "unknown operation " + std::to_string(op);
  if (h.flags != 0) return "reserved header flags set";
  h.op = static_cast<Op>(op);
  return {};
}

struct Frame {
  FrameHeader header;
  std::string payload;
};

// Incremental frame splitter for a byte stream. Never buffers more than one frame (header plus
// kMaxPayload); a malformed header makes it fail permanently.
class FrameDecoder {
 public:
  // Consumes bytes; complete frames are appended to `out`. Returns "" or the error.
  std::string feed(std::string_view data, std::vector<Frame>& out) {
    if (!error_.empty()) return error_;
    while (!data.empty()) {
      if (!have_header_) {
        size_t want = kHeaderSize - header_fill_;
        size_t n = want < data.size() ? want : data.size();
        std::memcpy(header_buf_ + header_fill_, data.data(), n);
        header_fill_ += n;
        data.remove_prefix(n);
        if (header_fill_ < kHeaderSize) break;
        error_ = decode_header(header_buf_, current_.header);
        if (!error_.empty()) return error_;
        have_header_ = true;
        current_.payload.clear();
        current_.payload.reserve(current_.header.length);
      }
      size_t want = current_.header.length - current_.payload.size();
      size_t n = want < data.size() ? want : data.size();
      current_.payload.append(data.data(), n);
      data.remove_prefix(n);
      if (current_.payload.size() == current_.header.length) {
        out.push_back(std::move(current_));
        current_ = Frame{};
        have_header_ = false;
        header_fill_ = 0;
      }
    }
    return {};
  }
  const std::string& error() const { return error_; }

 private:
  uint8_t header_buf_[kHeaderSize] = {};
  size_t header_fill_ = 0;
  bool have_header_ = false;
  Frame current_;
  std::string error_;
};

// ---- messages ----
// Each has encode() -> payload and decode(payload, msg) -> "" or the error.

struct Hello {
  uint32_t version = kVersion;
  std::string agent;  // free text: "airlock-guest-agent 0.1 (linux 6.1.0)"

  std::string encode() const {
    Writer w;
    w.u32(version).str(agent);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, Hello& m) {
    Reader r(p);
    m.version = r.u32();
    m.agent = r.str(kMaxMessage, "agent description");
    return r.finish();
  }
};

namespace exec_flags {
inline constexpr uint32_t kStdin = 1u << 0;     // keep stdin open for StdinData
inline constexpr uint32_t kClearEnv = 1u << 1;  // start from an empty env, not the defaults
// The host collects the result and needs no early Started: the guest may hold Started back
// and send it with the command's first other frame (output or Exit), saving a packet per
// command. Never with kStdin (the host waits for Started before it writes).
inline constexpr uint32_t kDeferStarted = 1u << 2;
inline constexpr uint32_t kKnown = kStdin | kClearEnv | kDeferStarted;
}  // namespace exec_flags

struct ExecRequest {
  std::vector<std::string> argv;  // argv[0] is looked up in PATH when it has no '/'
  std::vector<std::string> env;   // KEY=VALUE
  std::string cwd;                // empty: "/"
  uint32_t timeout_ms = 0;        // 0: none
  uint32_t flags = 0;

  std::string encode() const {
    Writer w;
    w.strings(argv).strings(env).str(cwd).u32(timeout_ms).u32(flags);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, ExecRequest& m) {
    Reader r(p);
    m.argv = r.cstrings(kMaxArgs, kMaxString, "argv");
    m.env = r.cstrings(kMaxEnv, kMaxString, "env");
    m.cwd = r.cstr(kMaxPath, "cwd");
    m.timeout_ms = r.u32();
    m.flags = r.u32();
    if (r.finish().empty()) {
      if (m.argv.empty() || m.argv[0].empty()) r.fail("empty argv");
      if (m.flags & ~exec_flags::kKnown) r.fail("unknown exec flags");
      if ((m.flags & exec_flags::kStdin) && (m.flags & exec_flags::kDeferStarted))
        r.fail("kDeferStarted with kStdin");
      for (const auto& e : m.env)
        if (e.find('=') == std::string::npos || e[0] == '=') r.fail("env entry is not KEY=VALUE");
    }
    return r.finish();
  }
};

struct U32Message {  // Started{pid}, StdinAck{bytes}
  uint32_t value = 0;
  std::string encode() const {
    Writer w;
    w.u32(value);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, U32Message& m) {
    Reader r(p);
    m.value = r.u32();
    return r.finish();
  }
};

struct ExitStatus {
  int32_t exit_code = -1;  // -1 when killed by a signal
  int32_t signal = 0;      // 0 when it exited
  bool timed_out = false;

  std::string encode() const {
    Writer w;
    w.i32(exit_code).i32(signal).u8(timed_out ? 1 : 0);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, ExitStatus& m) {
    Reader r(p);
    m.exit_code = r.i32();
    m.signal = r.i32();
    m.timed_out = r.boolean();
    if (r.finish().empty() && (m.signal < 0 || m.signal > 64)) r.fail("signal out of range");
    return r.finish();
  }
};

struct SignalRequest {
  int32_t signal = 0;
  std::string encode() const {
    Writer w;
    w.i32(signal);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, SignalRequest& m) {
    Reader r(p);
    m.signal = r.i32();
    if (r.finish().empty() && (m.signal <= 0 || m.signal > 64)) r.fail("signal out of range");
    return r.finish();
  }
};

namespace file_flags {
inline constexpr uint32_t kAppend = 1u << 0;
inline constexpr uint32_t kMakeParents = 1u << 1;
inline constexpr uint32_t kKnown = kAppend | kMakeParents;
}  // namespace file_flags

struct PathRequest {  // FileWrite{path, mode, flags}, FileRead{path}, Mkdir, Stat, Remove
  std::string path;
  uint32_t mode = 0;   // permission bits (FileWrite, Mkdir)
  uint32_t flags = 0;  // FileWrite: file_flags; Mkdir: 1 = parents; Remove: 1 = recursive

  std::string encode() const {
    Writer w;
    w.str(path).u32(mode).u32(flags);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, PathRequest& m) {
    Reader r(p);
    m.path = r.cstr(kMaxPath, "path");
    m.mode = r.u32();
    m.flags = r.u32();
    if (r.finish().empty()) {
      if (m.path.empty()) r.fail("empty path");
      if (m.mode > 07777) r.fail("mode has bits beyond 07777");
    }
    return r.finish();
  }
};

enum class FileType : uint8_t { kOther = 0, kRegular = 1, kDirectory = 2, kSymlink = 3 };

struct StatResult {  // also FileInfo (size, mode)
  FileType type = FileType::kOther;
  uint32_t mode = 0;  // permission bits
  uint64_t size = 0;
  int64_t mtime_ns = 0;

  std::string encode() const {
    Writer w;
    w.u8(static_cast<uint8_t>(type)).u32(mode).u64(size).i64(mtime_ns);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, StatResult& m) {
    Reader r(p);
    uint8_t t = r.u8();
    m.mode = r.u32();
    m.size = r.u64();
    m.mtime_ns = r.i64();
    if (r.finish().empty()) {
      if (t > 3) r.fail("unknown file type");
      if (m.mode > 07777) r.fail("mode has bits beyond 07777");
    }
    m.type = static_cast<FileType>(t);
    return r.finish();
  }
};

struct EnvRequest {  // EnvSet{set, unset}; EnvResult uses `set` for the whole environment
  std::vector<std::string> set;    // KEY=VALUE
  std::vector<std::string> unset;  // KEY

  std::string encode() const {
    Writer w;
    w.strings(set).strings(unset);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, EnvRequest& m) {
    Reader r(p);
    m.set = r.cstrings(kMaxEnv, kMaxString, "env");
    m.unset = r.cstrings(kMaxEnv, kMaxString, "env key");
    if (r.finish().empty()) {
      for (const auto& e : m.set)
        if (e.find('=') == std::string::npos || e[0] == '=') r.fail("env entry is not KEY=VALUE");
      for (const auto& k : m.unset)
        if (k.empty() || k.find('=') != std::string::npos) r.fail("bad env key");
    }
    return r.finish();
  }
};

struct ErrorMessage {
  int32_t code = 0;  // errno in the guest, or 0
  std::string message;

  std::string encode() const {
    Writer w;
    w.i32(code).str(message);
    return std::move(w.bytes());
  }
  static std::string decode(std::string_view p, ErrorMessage& m) {
    Reader r(p);
    m.code = r.i32();
    m.message = r.str(kMaxMessage, "error message");
    return r.finish();
  }
};

// Payloads that must be empty (StdinClose, FileEnd, Ok, EnvGet).
inline std::string decode_empty(std::string_view p) {
  return p.empty() ? std::string() : std::string("payload must be empty");
}

// Checks that a payload is well formed for its op: "" or why not. Data ops carry raw bytes.
inline std::string validate_payload(Op op, std::string_view p) {
  switch (op) {
    case Op::kHello: {
      Hello m;
      return Hello::decode(p, m);
    }
    case Op::kPing:
    case Op::kPong:
    case Op::kStdinData:
    case Op::kStdout:
    case Op::kStderr:
    case Op::kFileData:
      return {};
    case Op::kExec: {
      ExecRequest m;
      return ExecRequest::decode(p, m);
    }
    case Op::kStarted:
    case Op::kStdinAck: {
      U32Message m;
      return U32Message::decode(p, m);
    }
    case Op::kExit: {
      ExitStatus m;
      return ExitStatus::decode(p, m);
    }
    case Op::kSignal: {
      SignalRequest m;
      return SignalRequest::decode(p, m);
    }
    case Op::kFileWrite:
    case Op::kFileRead:
    case Op::kMkdir:
    case Op::kStat:
    case Op::kRemove: {
      PathRequest m;
      return PathRequest::decode(p, m);
    }
    case Op::kFileInfo:
    case Op::kStatResult: {
      StatResult m;
      return StatResult::decode(p, m);
    }
    case Op::kEnvSet:
    case Op::kEnvResult: {
      EnvRequest m;
      return EnvRequest::decode(p, m);
    }
    case Op::kStdinClose:
    case Op::kFileEnd:
    case Op::kOk:
    case Op::kEnvGet:
      return decode_empty(p);
    case Op::kError: {
      ErrorMessage m;
      return ErrorMessage::decode(p, m);
    }
  }
  return "unknown operation";
}

// Ops each side may send; receiving another is a protocol error.
inline bool guest_may_send(Op op) {
  switch (op) {
    case Op::kHello:
    case Op::kPong:
    case Op::kStarted:
    case Op::kStdinAck:
    case Op::kStdout:
    case Op::kStderr:
    case Op::kExit:
    case Op::kFileInfo:
    case Op::kFileData:
    case Op::kFileEnd:
    case Op::kStatResult:
    case Op::kEnvResult:
    case Op::kOk:
    case Op::kError:
      return true;
    default:
      return false;
  }
}
inline bool host_may_send(Op op) {
  switch (op) {
    case Op::kPing:
    case Op::kExec:
    case Op::kStdinData:
    case Op::kStdinClose:
    case Op::kSignal:
    case Op::kFileWrite:
    case Op::kFileRead:
    case Op::kFileData:
    case Op::kFileEnd:
    case Op::kMkdir:
    case Op::kStat:
    case Op::kRemove:
    case Op::kEnvSet:
    case Op::kEnvGet:
      return true;
    default:
      return false;
  }
}

}  // namespace airlock::agent::proto
