#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "base/fd.h"
#include "proxy/audit.h"

using namespace airlock;
using namespace airlock::proxy;

namespace {

AuditEvent sample() {
  AuditEvent e;
  e.time = std::chrono::system_clock::time_point(std::chrono::microseconds(1700000000123456LL));
  e.connection_id = 42;
  e.client = "10.0.2.15:40000";
  e.method = "POST";
  e.scheme = "https";
  e.host = "api.openai.com";
  e.port = 443;
  e.path = "/v1/chat?x=\"1\"";
  e.status = 403;
  e.bytes_up = 10;
  e.bytes_down = 20;
  e.duration = std::chrono::microseconds(1500);
  e.decision = AuditEvent::Decision::denied;
  e.reason = "placeholder for OPENAI_API_KEY sent to an unbound host";
  e.secrets_substituted = {"A", "B"};
  e.exfiltration_attempt = true;
  return e;
}

std::string temp_path(const char* name) {
  return std::string("/tmp/airlock-audit-test-") + std::to_string(getpid()) + "-" + name;
}

}  // namespace

TEST_CASE("audit_to_json writes every field on one line") {
  std::string j = audit_to_json(sample());
  CHECK(j ==
        "{\"time\":\"2023-11-14T22:13:20.123456Z\",\"connection_id\":42,"
        "\"client\":\"10.0.2.15:40000\",\"method\":\"POST\",\"scheme\":\"https\","
        "\"host\":\"api.openai.com\",\"port\":443,\"path\":\"/v1/chat?x=\\\"1\\\"\","
        "\"status\":403,\"bytes_up\":10,\"bytes_down\":20,\"duration_us\":1500,"
        "\"decision\":\"denied\",\"reason\":\"placeholder for OPENAI_API_KEY sent to an unbound "
        "host\",\"secrets_substituted\":[\"A\",\"B\"],\"exfiltration_attempt\":true}");
  AuditEvent empty;
  empty.time = std::chrono::system_clock::time_point();
  std::string e = audit_to_json(empty);
  CHECK(e.find("\"time\":\"1970-01-01T00:00:00.000000Z\"") != std::string::npos);
  CHECK(e.find("\"secrets_substituted\":[]") != std::string::npos);
  CHECK(e.find("\"decision\":\"allowed\"") != std::string::npos);
  CHECK(e.find('\n') == std::string::npos);
}

TEST_CASE("json_quote escapes controls and replaces invalid UTF-8") {
  CHECK(json_quote("plain") == "\"plain\"");
  CHECK(json_quote("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json_quote("\r\n\t") == "\"\\r\\n\\t\"");
  CHECK(json_quote(std::string("\0\x01\x1f\x7f", 4)) == "\"\\u0000\\u0001\\u001f\\u007f\"");
  CHECK(json_quote("\x1b[31mred") == "\"\\u001b[31mred\"");  // terminal escapes neutralised
  CHECK(json_quote("b\xC3\xBC"
                   "cher") ==
        "\"b\xC3\xBC"
        "cher\"");                                                  // valid UTF-8 kept
  CHECK(json_quote("\xF0\x9F\x98\x80") == "\"\xF0\x9F\x98\x80\"");  // 4-byte kept
  CHECK(json_quote("a\xFF"
                   "b") == "\"a\\ufffdb\"");                                    // invalid byte
  CHECK(json_quote("\xC3") == "\"\\ufffd\"");                                   // truncated
  CHECK(json_quote("\xC0\xAF") == "\"\\ufffd\\ufffd\"");                        // overlong
  CHECK(json_quote("\xED\xA0\x80") == "\"\\ufffd\\ufffd\\ufffd\"");             // surrogate
  CHECK(json_quote("\xF4\x90\x80\x80") == "\"\\ufffd\\ufffd\\ufffd\\ufffd\"");  // > U+10FFFF
  CHECK(json_quote("x\xE2\x80\xA8y") == "\"x\\u2028y\"");
  // Whatever the input, the output has no raw control bytes and no invalid UTF-8.
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  std::string q = json_quote(all + all);
  for (unsigned char c : q) CHECK(c >= 0x20);
  CHECK(q.find('\xFF') == std::string::npos);
}

TEST_CASE("AuditLog: callback, JSONL file with mode 0600, counters") {
  std::string path = temp_path("log.jsonl");
  unlink(path.c_str());
  std::vector<std::string> seen;
  auto log = AuditLog::create([&](const AuditEvent& e) { seen.push_back(e.host); }, path);
  REQUIRE_MESSAGE(log.ok(), log.status().to_string());
  AuditEvent a = sample();
  AuditEvent b = sample();
  b.host = "evil.example";
  b.reason = "line\nbreak";
  (*log)->record(a);
  (*log)->record(b);
  (*log)->record(a);
  CHECK(seen == std::vector<std::string>{"api.openai.com", "evil.example", "api.openai.com"});
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  REQUIRE(lines.size() == 3);
  CHECK(lines[0] == audit_to_json(a));
  CHECK(lines[1] == audit_to_json(b));
  auto counts = (*log)->requests_per_host();
  CHECK(counts["api.openai.com"] == 2);
  CHECK(counts["evil.example"] == 1);
  auto hc = (*log)->host_counters();
  CHECK(hc["api.openai.com"].denied == 2);
  CHECK(hc["api.openai.com"].bytes_up == 20);
  CHECK((*log)->events() == 3);
  CHECK((*log)->failures() == 0);
  // Appends to an existing file; never truncates.
  auto again = AuditLog::create(nullptr, path);
  REQUIRE(again.ok());
  (*again)->record(a);
  std::ifstream in2(path);
  size_t n = 0;
  for (std::string line; std::getline(in2, line);) ++n;
  CHECK(n == 4);
  unlink(path.c_str());
}

TEST_CASE("AuditLog: bad path is an error, a throwing callback is contained") {
  auto bad = AuditLog::create(nullptr, "/nonexistent-dir/x/audit.jsonl");
  REQUIRE(!bad.ok());
  CHECK(bad.status().code() == Errc::not_found);
  auto log = AuditLog::create([](const AuditEvent&) { throw std::runtime_error("boom"); }, "");
  REQUIRE(log.ok());
  (*log)->record(sample());  // must not throw
  CHECK((*log)->failures() == 1);
  CHECK((*log)->events() == 1);
  CHECK((*log)->requests_per_host().at("api.openai.com") == 1);
}

TEST_CASE("AuditLog: concurrent writers, serialised callbacks, whole lines") {
  std::string path = temp_path("concurrent.jsonl");
  unlink(path.c_str());
  std::atomic<int> inside{0};
  std::atomic<bool> overlapped{false};
  uint64_t calls = 0;
  auto log = AuditLog::create(
      [&](const AuditEvent&) {
        if (inside.fetch_add(1) != 0) overlapped = true;
        ++calls;  // unsynchronised on purpose: callbacks are serialised
        inside.fetch_sub(1);
      },
      path);
  REQUIRE(log.ok());
  constexpr int kThreads = 4, kEach = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      AuditEvent e = sample();
      e.host = "host" + std::to_string(t) + ".example";
      e.path = std::string(3000, 'p');  // long lines: would interleave if not written whole
      for (int i = 0; i < kEach; ++i) (*log)->record(e);
    });
  }
  for (auto& th : threads) th.join();
  CHECK(!overlapped);
  CHECK(calls == kThreads * kEach);
  std::ifstream in(path);
  int lines = 0;
  for (std::string line; std::getline(in, line);) {
    ++lines;
    CHECK(line.front() == '{');
    CHECK(line.back() == '}');
  }
  CHECK(lines == kThreads * kEach);
  for (int t = 0; t < kThreads; ++t)
    CHECK((*log)->requests_per_host()["host" + std::to_string(t) + ".example"] == kEach);
  unlink(path.c_str());
}

TEST_CASE("AuditLog: per-host counters are bounded") {
  auto log = AuditLog::create(nullptr, "");
  REQUIRE(log.ok());
  AuditEvent e = sample();
  for (size_t i = 0; i < AuditLog::kMaxHosts + 100; ++i) {
    e.host = "h" + std::to_string(i) + ".example";
    (*log)->record(e);
  }
  auto counts = (*log)->requests_per_host();
  CHECK(counts.size() == AuditLog::kMaxHosts + 1);
  CHECK(counts[AuditLog::kOtherHosts] == 100);
}

TEST_CASE("AuditLog: real values in event fields are redacted before delivery") {
  const std::string value = "sk-audit-redaction-0123456789";
  auto secrets = SecretSet::create({{"KEY", value, {"api.example"}}});
  REQUIRE(secrets.ok());
  std::string path = temp_path("redact.jsonl");
  unlink(path.c_str());
  std::vector<AuditEvent> seen;
  auto log = AuditLog::create([&](const AuditEvent& e) { seen.push_back(e); }, path, *secrets);
  REQUIRE(log.ok());
  AuditEvent e = sample();
  e.path = "/v1?key=" + value;
  e.reason = "upstream said: bad key " + value;
  (*log)->record(e);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0].path == "/v1?key=" + secrets->placeholder("KEY"));
  CHECK(seen[0].reason.find(value) == std::string::npos);
  std::ifstream in(path);
  std::string line;
  REQUIRE(std::getline(in, line));
  CHECK(line.find(value) == std::string::npos);
  CHECK(line.find(secrets->placeholder("KEY")) != std::string::npos);
  unlink(path.c_str());
}
