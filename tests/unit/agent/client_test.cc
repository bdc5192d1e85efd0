// The host agent client against the real guest agent binary (src/guest), run on the host over a
// socketpair instead of vsock: the whole protocol without KVM. Files go to a private temp dir.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "agent/client.h"

using namespace airlock;
using namespace airlock::agent;
using namespace std::chrono_literals;

namespace {

std::string agent_binary() {
  char self[PATH_MAX] = {};
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  REQUIRE(n > 0);
  std::string dir(self, static_cast<size_t>(n));
  dir = dir.substr(0, dir.rfind('/'));  // build/tests
  dir = dir.substr(0, dir.rfind('/'));  // build
  std::string path = dir + "/bin/airlock-guest-agent";
  REQUIRE_MESSAGE(access(path.c_str(), X_OK) == 0, "build the airlock-guest-agent target first");
  return path;
}

// A guest agent process serving one end of a socketpair; the client holds the other.
struct LocalAgent {
  pid_t pid = -1;
  std::shared_ptr<Client> client;
  std::string tmp;

  LocalAgent() {
    char dir[] = "/tmp/airlock-agent-test.XXXXXX";
    REQUIRE(mkdtemp(dir) != nullptr);
    tmp = dir;
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    std::string bin = agent_binary();
    pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      dup2(sv[1], 3);  // dup2 clears CLOEXEC
      execl(bin.c_str(), bin.c_str(), "serve-fd", "3", nullptr);
      _exit(127);
    }
    close(sv[1]);
    auto c = Client::connect(make_fd_transport(sv[0]), 5000ms);
    REQUIRE(c.ok());
    client = c.value();
  }
  ~LocalAgent() {
    client->close();
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    std::string cmd = "rm -rf " + tmp;
    (void)system(cmd.c_str());
  }

  struct Out {
    ExitResult exit;
    std::string out, err;
  };
  Out run(std::vector<std::string> argv, ExecSpec spec = {}) {
    spec.argv = std::move(argv);
    auto e = client->start(spec, nullptr, nullptr, 5000ms);
    REQUIRE(e.ok());
    auto r = (*e)->wait(20000ms);
    REQUIRE(r.ok());
    return Out{r.value(), (*e)->take_stdout(), (*e)->take_stderr()};
  }
  Out sh(const std::string& cmd) { return run({"/bin/sh", "-c", cmd}); }
};

}  // namespace

TEST_CASE("client: hello names the agent, ping echoes") {
  LocalAgent a;
  CHECK(a.client->agent_description().find("airlock-guest-agent") != std::string::npos);
  auto pong = a.client->ping("hello there", 2000ms);
  REQUIRE(pong.ok());
  CHECK(pong.value() == "hello there");
}

TEST_CASE("client: exit codes, separate stdout and stderr, missing commands, cwd and env") {
  LocalAgent a;
  auto ok = a.sh("echo out; echo err >&2");
  CHECK(ok.exit.exit_code == 0);
  CHECK(ok.out == "out\n");
  CHECK(ok.err == "err\n");
  CHECK(a.sh("exit 1").exit.exit_code == 1);
  auto missing = a.run({"no-such-command-xyz"});
  CHECK(missing.exit.exit_code == 127);
  CHECK(missing.err.find("command not found") != std::string::npos);
  ExecSpec spec;
  spec.cwd = a.tmp;
  spec.env = {"GREETING=hi there"};
  auto env = a.run({"/bin/sh", "-c", "pwd; echo $GREETING"}, spec);
  CHECK(env.out == a.tmp + "\nhi there\n");
}

TEST_CASE("client: signals reach the process group, timeouts kill it") {
  LocalAgent a;
  ExecSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  auto e = a.client->start(spec, nullptr, nullptr, 5000ms);
  REQUIRE(e.ok());
  CHECK((*e)->pid() > 0);
  CHECK((*e)->wait(100ms).status().code() == Errc::timeout);
  REQUIRE((*e)->signal(SIGTERM).ok());
  auto r = (*e)->wait(5000ms);
  REQUIRE(r.ok());
  CHECK(r->signal == SIGTERM);
  CHECK(r->exit_code == -1);

  ExecSpec t;
  t.timeout_ms = 300;
  auto start = std::chrono::steady_clock::now();
  auto timed = a.run({"/bin/sh", "-c", "sleep 30 & sleep 30"}, t);
  CHECK(timed.exit.timed_out);
  CHECK(timed.exit.signal == SIGKILL);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("client: stdin streams through the window and closes") {
  LocalAgent a;
  ExecSpec spec;
  spec.argv = {"/bin/sh", "-c", "cat | wc -c"};
  spec.open_stdin = true;
  auto e = a.client->start(spec, nullptr, nullptr, 5000ms);
  REQUIRE(e.ok());
  std::string data(5 * 1024 * 1024 + 17, 'i');
  REQUIRE((*e)->write_stdin(data, 10000ms).ok());
  REQUIRE((*e)->close_stdin().ok());
  auto r = (*e)->wait(10000ms);
  REQUIRE(r.ok());
  CHECK(r->exit_code == 0);
  CHECK(std::stoul((*e)->take_stdout()) == data.size());
}

TEST_CASE("client: output callbacks see every byte in order") {
  LocalAgent a;
  std::string seen;
  ExecSpec spec;
  spec.argv = {"/bin/sh", "-c", "seq 1 20000"};
  auto e = a.client->start(
      spec, [&](std::string_view d) { seen += d; }, nullptr, 5000ms);
  REQUIRE(e.ok());
  REQUIRE((*e)->wait(10000ms).ok());
  std::string expect;
  for (int i = 1; i <= 20000; ++i) expect += std::to_string(i) + "\n";
  CHECK(seen == expect);
  CHECK((*e)->take_stdout().empty());
}

TEST_CASE("client: files round-trip in chunks with their mode, mkdir, stat, remove") {
  LocalAgent a;
  std::string content(3 * 1024 * 1024 + 5, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>(i * 131 % 251);
  std::string path = a.tmp + "/sub/dir/file.bin";
  size_t off = 0;
  Status st = a.client->write_file(
      path, 0640, proto::file_flags::kMakeParents,
      [&]() -> Result<std::string> {
        size_t n = std::min<size_t>(200000, content.size() - off);
        std::string chunk = content.substr(off, n);
        off += n;
        return chunk;
      },
      10000ms);
  REQUIRE(st.ok());
  std::string back;
  auto info = a.client->read_file(
      path,
      [&](std::string_view d) {
        back += d;
        return ok_status();
      },
      10000ms);
  REQUIRE(info.ok());
  CHECK(info->size == content.size());
  CHECK(info->mode == 0640);
  CHECK(back == content);

  auto s = a.client->stat(path, 2000ms);
  REQUIRE(s.ok());
  CHECK(s->type == proto::FileType::kRegular);
  CHECK(a.client->stat(a.tmp + "/nope", 2000ms).status().code() == Errc::not_found);
  auto missing = a.client->read_file(
      a.tmp + "/nope", [](std::string_view) { return ok_status(); }, 2000ms);
  CHECK(missing.status().code() == Errc::not_found);

  REQUIRE(a.client->mkdir(a.tmp + "/x/y/z", 0700, true, 2000ms).ok());
  CHECK(a.client->stat(a.tmp + "/x/y/z", 2000ms)->type == proto::FileType::kDirectory);
  CHECK(a.client->mkdir(a.tmp + "/q/r", 0700, false, 2000ms).code() == Errc::not_found);
  CHECK(a.client->remove(a.tmp + "/sub", false, 2000ms).code() == Errc::invalid_argument);
  REQUIRE(a.client->remove(a.tmp + "/sub", true, 2000ms).ok());
  CHECK(a.client->stat(path, 2000ms).status().code() == Errc::not_found);
}

TEST_CASE("client: default environment can be set, read and unset") {
  LocalAgent a;
  REQUIRE(a.client->env_set({"FOO=bar"}, {}, 2000ms).ok());
  auto env = a.client->env_get(2000ms);
  REQUIRE(env.ok());
  CHECK(std::find(env->begin(), env->end(), "FOO=bar") != env->end());
  CHECK(a.sh("echo $FOO").out == "bar\n");
  REQUIRE(a.client->env_set({}, {"FOO"}, 2000ms).ok());
  CHECK(a.sh("echo ${FOO:-unset}").out == "unset\n");
}

TEST_CASE("client: many commands at once on one connection") {
  LocalAgent a;
  std::vector<std::unique_ptr<Execution>> running;
  for (int i = 0; i < 32; ++i) {
    ExecSpec spec;
    spec.argv = {"/bin/sh", "-c", "sleep 0.2; echo " + std::to_string(i)};
    auto e = a.client->start(spec, nullptr, nullptr, 5000ms);
    REQUIRE(e.ok());
    running.push_back(std::move(e).value());
  }
  for (int i = 0; i < 32; ++i) {
    auto r = running[i]->wait(10000ms);
    REQUIRE(r.ok());
    CHECK(running[i]->take_stdout() == std::to_string(i) + "\n");
  }
}

TEST_CASE("client: the agent dying fails pending calls at once") {
  LocalAgent a;
  std::atomic<bool> dead_called{false};
  a.client->set_on_dead([&](const Status&) { dead_called = true; });
  ExecSpec spec;
  spec.argv = {"/bin/sleep", "30"};
  auto e = a.client->start(spec, nullptr, nullptr, 5000ms);
  REQUIRE(e.ok());
  auto start = std::chrono::steady_clock::now();
  kill(a.pid, SIGKILL);
  auto r = (*e)->wait(10000ms);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::closed);
  CHECK(dead_called.load());
  CHECK(a.client->ping("x", 1000ms).status().code() == Errc::closed);
  kill((*e)->pid(), SIGKILL);  // the orphaned sleep, on this host
}

TEST_CASE("client: a peer sending garbage is a protocol error that fails everything") {
  int sv[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  std::string hello = proto::encode_frame(proto::Op::kHello, 0, proto::Hello{}.encode());
  REQUIRE(write(sv[1], hello.data(), hello.size()) == static_cast<ssize_t>(hello.size()));
  auto c = Client::connect(make_fd_transport(sv[0]), 2000ms);
  REQUIRE(c.ok());
  std::atomic<int> dead{0};
  Status why;
  (*c)->set_on_dead([&](const Status& s) {
    why = s;
    dead++;
  });
  std::thread pinger([&] {
    auto r = (*c)->ping("x", 5000ms);
    CHECK(r.status().code() == Errc::protocol);
  });
  std::this_thread::sleep_for(50ms);
  std::string bad = proto::encode_header(proto::Op::kStdout, 1, 0xfffffff0u);
  REQUIRE(write(sv[1], bad.data(), bad.size()) == static_cast<ssize_t>(bad.size()));
  pinger.join();
  CHECK(dead.load() == 1);
  CHECK(why.message().find("exceeds") != std::string::npos);
  close(sv[1]);
}

TEST_CASE("client: a peer sending host-only operations or a wrong version is refused") {
  {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    proto::Hello h;
    h.version = 99;
    std::string hello = proto::encode_frame(proto::Op::kHello, 0, h.encode());
    REQUIRE(write(sv[1], hello.data(), hello.size()) > 0);
    auto c = Client::connect(make_fd_transport(sv[0]), 2000ms);
    CHECK(c.status().code() == Errc::protocol);
    close(sv[1]);
  }
  {
    int sv[2];
    REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    std::string hello = proto::encode_frame(proto::Op::kHello, 0, proto::Hello{}.encode());
    proto::ExecRequest req;
    req.argv = {"x"};
    hello += proto::encode_frame(proto::Op::kExec, 5, req.encode());
    REQUIRE(write(sv[1], hello.data(), hello.size()) > 0);
    auto c = Client::connect(make_fd_transport(sv[0]), 2000ms);
    REQUIRE(c.ok());
    auto deadline = std::chrono::steady_clock::now() + 2s;
    while ((*c)->alive() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    CHECK((*c)->dead_status().code() == Errc::protocol);
    close(sv[1]);
  }
}

TEST_CASE("client: a guest process flooding the agent's connection is dropped, the agent goes on") {
  LocalAgent a;
  std::string bin = agent_binary();
  ExecSpec spec;
  spec.timeout_ms = 60000;
  auto flood = a.run({bin, "hostile", "flood", std::to_string(a.pid)}, spec);
  CHECK(flood.exit.exit_code == 0);
  CHECK(flood.out == "hostile flood: sent\n");
  CHECK(a.sh("echo still here").out == "still here\n");
}

TEST_CASE("client: a guest process writing an absurd frame length ends the connection") {
  LocalAgent a;
  std::string bin = agent_binary();
  ExecSpec spec;
  spec.argv = {bin, "hostile", "huge", std::to_string(a.pid)};
  auto e = a.client->start(spec, nullptr, nullptr, 5000ms);
  REQUIRE(e.ok());
  auto r = (*e)->wait(20000ms);
  REQUIRE(!r.ok());
  CHECK(r.status().code() == Errc::protocol);
  CHECK(r.status().message().find("exceeds") != std::string::npos);
  kill(a.pid, SIGCONT);
}
