// Test harness for the proxy tests: temp dirs, a test PKI made with the openssl CLI, the local
// upstream server (upstream_server.py) as a child process, client commands run with a deadline,
// and an in-process proxy. Everything listens on 127.0.0.1 only.
#pragma once

#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "airlock/proxy.hpp"

namespace airlock::test {

struct CommandResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs argv with a deadline; stdin from `input`. `env` adds NAME=VALUE entries.
inline CommandResult run(const std::vector<std::string>& argv, std::chrono::milliseconds timeout,
                         const std::vector<std::string>& env = {}, const std::string& input = "") {
  int out_pipe[2], err_pipe[2], in_pipe[2];
  REQUIRE(pipe2(out_pipe, O_CLOEXEC) == 0);
  REQUIRE(pipe2(err_pipe, O_CLOEXEC) == 0);
  REQUIRE(pipe2(in_pipe, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execvp(args[0], args.data());
    _exit(127);
  }
  close(out_pipe[1]);
  close(err_pipe[1]);
  close(in_pipe[0]);
  if (!input.empty()) {
    ssize_t ignored = write(in_pipe[1], input.data(), input.size());
    (void)ignored;
  }
  close(in_pipe[1]);
  CommandResult r;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      break;
    }
    pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
    int n = poll(fds, 2, static_cast<int>(left.count()));
    if (n < 0) continue;
    char buf[65536];
    for (int i = 0; i < 2; ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t k = read(fds[i].fd, buf, sizeof buf);
      if (k <= 0) {
        (i == 0 ? out_open : err_open) = false;
        fds[i].fd = -1;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(k));
      }
    }
  }
  close(out_pipe[0]);
  close(err_pipe[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/airlock-proxy-test-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

// A test CA and one server certificate for the test names (and 127.0.0.1), made at test time.
struct TestPki {
  std::string ca_cert, server_cert, server_key;
  explicit TestPki(const TempDir& dir) {
    ca_cert = dir.file("test-ca.pem");
    std::string ca_key = dir.file("test-ca.key");
    server_cert = dir.file("server.pem");
    server_key = dir.file("server.key");
    std::string csr = dir.file("server.csr"), ext = dir.file("server.ext");
    auto ok = [](const CommandResult& r) {
      INFO(r.err);
      REQUIRE(r.exit_code == 0);
    };
    using namespace std::chrono_literals;
    ok(run({"openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            ca_key,
            "-out",
            ca_cert,
            "-days",
            "2",
            "-subj",
            "/CN=airlock test upstream CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign"},
           20s));
    ok(run({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", server_key, "-out", csr, "-subj", "/CN=api.example.test"},
           20s));
    write_text(ext,
               "subjectAltName=DNS:api.example.test,DNS:other.example.test,DNS:*.wild.example.test,"
               "DNS:blocked.example.test,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
               "extendedKeyUsage=serverAuth\n");
    ok(run({"openssl", "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key,
            "-CAcreateserial", "-out", server_cert, "-days", "2", "-extfile", ext},
           20s));
  }
};

// The Python upstream server as a child process.
class Upstream {
 public:
  Upstream(const TestPki* pki, const std::string& bind = "127.0.0.1", int port = 0,
           const std::string& log = "") {
    int out_pipe[2];
    REQUIRE(pipe2(out_pipe, O_CLOEXEC) == 0);
    std::string script = std::string(AIRLOCK_SOURCE_DIR) + "/tests/proxy/upstream_server.py";
    std::vector<std::string> argv = {"/usr/bin/python3",  script, "--bind", bind, "--port",
                                     std::to_string(port)};
    if (pki) {
      argv.insert(argv.end(), {"--cert", pki->server_cert, "--key", pki->server_key});
    }
    if (!log.empty()) argv.insert(argv.end(), {"--log", log});
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a crashed test
      dup2(out_pipe[1], 1);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(out_pipe[1]);
    std::string line;
    pollfd pfd{out_pipe[0], POLLIN, 0};
    // Python's start-up reads its stdlib from disk; in the nested KVM runner (TCG, host files
    // over 9p) that alone has taken more than 15 s.
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
      if (poll(&pfd, 1, 200) <= 0) continue;
      char c[256];
      ssize_t n = read(out_pipe[0], c, sizeof c);
      if (n <= 0) break;
      line.append(c, static_cast<size_t>(n));
    }
    close(out_pipe[0]);
    if (line.rfind("port ", 0) != 0) {
      // Kill it before failing: REQUIRE throws out of this constructor, so ~Upstream never runs,
      // and the test's TempDir (its certificate files) is removed while a slow child may still
      // be starting -- it then died on a missing certificate file, hiding the real failure.
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      FAIL("upstream did not start within 120 s (stdout: '" << line << "')");
    }
    port_ = std::stoi(line.substr(5));
  }
  ~Upstream() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

// Collects audit events from the proxy's workers.
struct AuditSink {
  std::mutex mu;
  std::vector<AuditEvent> events;
  AuditCallback callback() {
    return [this](const AuditEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
    };
  }
  std::vector<AuditEvent> snapshot() {
    std::lock_guard lock(mu);
    return events;
  }
  // Waits (bounded) until `n` events arrived.
  std::vector<AuditEvent> wait_for(
      size_t n, std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      {
        std::lock_guard lock(mu);
        if (events.size() >= n) return events;
      }
      usleep(10000);
    }
    return snapshot();
  }
};

inline std::string port_of(const std::string& address) {
  return address.substr(address.rfind(':') + 1);
}

// A complete setup: PKI, HTTPS upstream, proxy with the given options (resolver override and
// extra CA filled in), the proxy CA written to a file.
struct ProxyFixture {
  TempDir dir;
  TestPki pki{dir};
  std::unique_ptr<Upstream> upstream;
  std::unique_ptr<Proxy> proxy;
  AuditSink audit;
  std::string proxy_ca;
  std::string proxy_addr;
  std::string upstream_log;  // every request the upstream received, as JSON lines

  explicit ProxyFixture(ProxyOptions options, bool tls_upstream = true) {
    upstream_log = dir.file("upstream.log");
    upstream =
        std::make_unique<Upstream>(tls_upstream ? &pki : nullptr, "127.0.0.1", 0, upstream_log);
    for (const char* name :
         {"api.example.test", "other.example.test", "a.wild.example.test", "blocked.example.test"})
      options.resolve_override.emplace(name, "127.0.0.1");
    options.extra_ca_files.push_back(pki.ca_cert);
    options.on_audit = audit.callback();
    for (auto& l : options.listeners)
      if (l.mode != ListenMode::explicit_proxy && l.upstream_port == 0)
        l.upstream_port = static_cast<uint16_t>(upstream->port());
    auto started = Proxy::start(std::move(options));
    REQUIRE_MESSAGE(started.ok(), started.status().to_string());
    proxy = std::move(started).value();
    proxy_ca = dir.file("proxy-ca.pem");
    write_text(proxy_ca, proxy->ca_pem());
    proxy_addr = proxy->listen_addresses().at(0);
  }
  ~ProxyFixture() {
    if (proxy) proxy->stop();
  }

  std::string url(const std::string& host, const std::string& path, bool tls = true) const {
    return std::string(tls ? "https://" : "http://") + host + ":" +
           std::to_string(upstream->port()) + path;
  }

  // curl through the explicit proxy; returns the result with -w "\n%{http_code}" appended.
  CommandResult curl(const std::vector<std::string>& extra, const std::string& url) {
    std::vector<std::string> argv = {"curl",      "-sS",    "--max-time", "15",
                                     "--noproxy", "",       "-x",         "http://" + proxy_addr,
                                     "--cacert",  proxy_ca, "-w",         "\n%{http_code}"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    argv.push_back(url);
    return run(argv, std::chrono::seconds(30));
  }
};

inline int status_of(const CommandResult& r) {
  size_t nl = r.out.rfind('\n');
  if (nl == std::string::npos) return -1;
  return std::atoi(r.out.c_str() + nl + 1);
}

inline std::string body_of(const CommandResult& r) {
  size_t nl = r.out.rfind('\n');
  return nl == std::string::npos ? r.out : r.out.substr(0, nl);
}

}  // namespace airlock::test

namespace airlock::test {

// A plain TCP client for raw HTTP bytes (smuggling, slow clients).
class RawClient {
 public:
  explicit RawClient(const std::string& address) {
    size_t colon = address.rfind(':');
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(colon + 1))));
    inet_pton(AF_INET, address.substr(0, colon).c_str(), &sin.sin_addr);
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    REQUIRE(connect(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
  }
  ~RawClient() {
    if (fd_ >= 0) close(fd_);
  }
  void send_all(const std::string& data) {
    size_t off = 0;
    while (off < data.size()) {
      ssize_t n = ::send(fd_, data.data() + off, data.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // Reads until the peer closes or `timeout` passes; `closed` tells which.
  std::string read_until_close(std::chrono::milliseconds timeout, bool* closed = nullptr) {
    std::string out;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        if (closed) *closed = false;
        return out;
      }
      pollfd pfd{fd_, POLLIN, 0};
      if (poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
      char buf[65536];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        if (closed) *closed = true;
        return out;
      }
      out.append(buf, static_cast<size_t>(n));
    }
  }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
};

// tests/proxy/rawclient.py through f's proxy with TLS: `request` sent verbatim once the
// handshake (with `sni`, none if empty) is done, after a CONNECT to `connect` if not empty;
// `extra` are more of its options. What came back (or TLS-ERROR / CONNECT-STATUS lines).
inline std::string raw_tls(ProxyFixture& f, const std::string& connect, const std::string& sni,
                           const std::string& request, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   std::string(AIRLOCK_SOURCE_DIR) + "/tests/proxy/rawclient.py",
                                   "--proxy",
                                   f.proxy_addr,
                                   "--tls",
                                   "--cafile",
                                   f.proxy_ca};
  if (!connect.empty()) argv.insert(argv.end(), {"--connect", connect});
  if (!sni.empty()) argv.insert(argv.end(), {"--sni", sni});
  argv.insert(argv.end(), extra.begin(), extra.end());
  auto r = run(argv, std::chrono::seconds(20), {}, request);
  INFO(r.err);
  return r.out;
}

inline int response_status(const std::string& response) {
  if (response.rfind("HTTP/1.", 0) != 0 || response.size() < 12) return -1;
  return std::atoi(response.c_str() + 9);
}

}  // namespace airlock::test
