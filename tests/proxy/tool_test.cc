// The standalone airlock-proxy tool: flags, printed addresses and placeholders, the secret read
// from an environment variable (never from argv), clean stop on SIGTERM.
#include "harness.h"

using namespace airlock;
using namespace airlock::test;
using namespace std::chrono_literals;

TEST_CASE("airlock-proxy serves curl and stops cleanly on SIGTERM") {
  std::string tool = std::string(AIRLOCK_BINARY_DIR) + "/bin/airlock-proxy";
  REQUIRE(access(tool.c_str(), X_OK) == 0);
  TempDir dir;
  TestPki pki(dir);
  Upstream up(&pki, "127.0.0.1", 0, dir.file("upstream.log"));
  std::string ca = dir.file("proxy-ca.pem"), audit = dir.file("audit.jsonl");

  int out_pipe[2];
  REQUIRE(pipe2(out_pipe, O_CLOEXEC) == 0);
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    dup2(out_pipe[1], 1);
    setenv("TOOL_TEST_SECRET", "tool-real-value-123", 1);
    execl(tool.c_str(), tool.c_str(), "--listen", "127.0.0.1:0", "--allow", "api.example.test",
          "--secret", "KEY=TOOL_TEST_SECRET@api.example.test", "--resolve",
          "api.example.test:127.0.0.1", "--extra-ca", pki.ca_cert.c_str(), "--ca-out", ca.c_str(),
          "--audit-jsonl", audit.c_str(), static_cast<char*>(nullptr));
    _exit(127);
  }
  close(out_pipe[1]);
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (text.find("ready\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{out_pipe[0], POLLIN, 0};
    if (poll(&pfd, 1, 200) <= 0) continue;
    char buf[1024];
    ssize_t n = read(out_pipe[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  close(out_pipe[0]);
  REQUIRE(text.find("ready\n") != std::string::npos);
  size_t at = text.find("listen explicit ");
  REQUIRE(at != std::string::npos);
  std::string addr = text.substr(at + 16, text.find('\n', at) - at - 16);
  size_t ph_at = text.find("placeholder KEY ");
  REQUIRE(ph_at != std::string::npos);
  std::string ph = text.substr(ph_at + 16, 91);
  CHECK(ph.rfind("AIRLOCK_SECRET_PLACEHOLDER_", 0) == 0);
  CHECK(text.find("tool-real-value-123") == std::string::npos);

  auto r = run({"curl", "-sS", "--max-time", "10", "-x", "http://" + addr, "--cacert", ca, "-H",
                "Authorization: Bearer " + ph, "-w", "\n%{http_code}",
                "https://api.example.test:" + std::to_string(up.port()) + "/echo"},
               20s);
  CHECK(status_of(r) == 200);
  CHECK(r.out.find("tool-real-value-123") == std::string::npos);
  CHECK(read_text(dir.file("upstream.log")).find("Bearer tool-real-value-123") !=
        std::string::npos);

  kill(pid, SIGTERM);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
  std::string log = read_text(audit);
  CHECK(log.find("api.example.test") != std::string::npos);
  CHECK(log.find("tool-real-value-123") == std::string::npos);
}

TEST_CASE("airlock-proxy: a bad command line ends with status 2 and says why, --help with 0") {
  std::string tool = std::string(AIRLOCK_BINARY_DIR) + "/bin/airlock-proxy";
  REQUIRE(access(tool.c_str(), X_OK) == 0);
  struct Case {
    std::vector<std::string> args;
    int status;
    std::string message;
  };
  const Case cases[] = {
      {{"--listen"}, 2, "--listen needs a value"},
      {{"--allow", "x.test", "--secret"}, 2, "--secret needs a value"},
      {{"--workers", "two"}, 2, "--workers wants a number"},
      {{"--upstream-port", "70000"}, 2, "--upstream-port wants a number up to 65535"},
      {{"--header-timeout-ms", "-5"}, 2, "--header-timeout-ms wants a number"},
      {{"--secret", "KEY=AIRLOCK_TOOL_TEST_UNSET_VAR@x.test"}, 2, "is empty"},
      {{"--bogus"}, 2, "unknown option --bogus"},
      {{"--help"}, 0, "usage: airlock-proxy"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {tool};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    auto r = run(argv, 10s);
    INFO(c.args.front());
    CHECK(r.exit_code == c.status);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(r.out.find("ready") == std::string::npos);  // never started serving
  }
}
