// Agent protocol codec: round trips, and rejection of malformed frames and payloads.
#include "agent/protocol.h"

#include <doctest/doctest.h>

#include <random>

using namespace airlock::agent::proto;

namespace {

std::vector<Frame> feed_all(FrameDecoder& d, std::string_view bytes, std::string* err = nullptr) {
  std::vector<Frame> out;
  std::string e = d.feed(bytes, out);
  if (err) *err = e;
  return out;
}

}  // namespace

TEST_CASE("frames round-trip through the decoder, byte by byte") {
  std::string stream = encode_frame(Op::kHello, 0, Hello{kVersion, "agent x"}.encode()) +
                       encode_frame(Op::kStdout, 7, std::string(100000, 'z')) +
                       encode_frame(Op::kOk, 9);
  FrameDecoder d;
  std::vector<Frame> frames;
  for (char c : stream) REQUIRE(d.feed(std::string_view(&c, 1), frames).empty());
  REQUIRE(frames.size() == 3);
  CHECK(frames[0].header.op == Op::kHello);
  Hello h;
  CHECK(Hello::decode(frames[0].payload, h).empty());
  CHECK(h.agent == "agent x");
  CHECK(frames[1].header.id == 7);
  CHECK(frames[1].payload == std::string(100000, 'z'));
  CHECK(frames[2].header.op == Op::kOk);
  CHECK(frames[2].payload.empty());
}

TEST_CASE("decoder rejects an absurd length before buffering anything") {
  std::string hdr = encode_header(Op::kStdout, 1, 0xffffffffu);
  FrameDecoder d;
  std::string err;
  feed_all(d, hdr, &err);
  CHECK(err.find("exceeds") != std::string::npos);
  // The failure sticks: later good frames are refused too.
  feed_all(d, encode_frame(Op::kOk, 1), &err);
  CHECK(!err.empty());
}

TEST_CASE("decoder accepts exactly the maximum payload and rejects one more") {
  FrameDecoder ok;
  std::string err;
  auto frames = feed_all(ok, encode_frame(Op::kStdout, 1, std::string(kMaxPayload, 'a')), &err);
  CHECK(err.empty());
  CHECK(frames.size() == 1);
  FrameDecoder bad;
  feed_all(bad, encode_header(Op::kStdout, 1, kMaxPayload + 1), &err);
  CHECK(!err.empty());
}

TEST_CASE("decoder rejects unknown ops and reserved flags") {
  std::string frame = encode_frame(Op::kOk, 1);
  frame[4] = static_cast<char>(0xee);  // op low byte
  FrameDecoder d;
  std::string err;
  feed_all(d, frame, &err);
  CHECK(err.find("unknown operation") != std::string::npos);

  std::string flagged = encode_frame(Op::kOk, 1);
  flagged[6] = 1;
  FrameDecoder d2;
  feed_all(d2, flagged, &err);
  CHECK(err.find("flags") != std::string::npos);
}

TEST_CASE("exec request round-trips and validates its fields") {
  ExecRequest req;
  req.argv = {"/bin/sh", "-c", "echo hi"};
  req.env = {"A=1", "B="};
  req.cwd = "/tmp";
  req.timeout_ms = 1234;
  req.flags = exec_flags::kStdin;
  ExecRequest back;
  REQUIRE(ExecRequest::decode(req.encode(), back).empty());
  CHECK(back.argv == req.argv);
  CHECK(back.env == req.env);
  CHECK(back.cwd == "/tmp");
  CHECK(back.timeout_ms == 1234);
  CHECK(back.flags == exec_flags::kStdin);

  ExecRequest empty;
  CHECK(ExecRequest::decode(empty.encode(), back) == "empty argv");

  ExecRequest nul = req;
  nul.argv[2] = std::string("a\0b", 3);
  CHECK(ExecRequest::decode(nul.encode(), back).find("NUL") != std::string::npos);

  ExecRequest badenv = req;
  badenv.env = {"NOEQUALS"};
  CHECK(ExecRequest::decode(badenv.encode(), back).find("KEY=VALUE") != std::string::npos);

  ExecRequest flags = req;
  flags.flags = 0x80;
  CHECK(ExecRequest::decode(flags.encode(), back) == "unknown exec flags");

  // A deferred Started is for collected commands only: with stdin the host waits for Started.
  ExecRequest deferred = req;
  deferred.flags = exec_flags::kDeferStarted | exec_flags::kClearEnv;
  REQUIRE(ExecRequest::decode(deferred.encode(), back).empty());
  CHECK(back.flags == (exec_flags::kDeferStarted | exec_flags::kClearEnv));
  deferred.flags = exec_flags::kDeferStarted | exec_flags::kStdin;
  CHECK(ExecRequest::decode(deferred.encode(), back) == "kDeferStarted with kStdin");
}

TEST_CASE("payload decoders reject truncation, lies about counts and trailing bytes") {
  ExecRequest req;
  req.argv = {"true"};
  std::string p = req.encode();
  ExecRequest back;
  for (size_t cut = 0; cut < p.size(); ++cut)
    CHECK(!ExecRequest::decode(std::string_view(p).substr(0, cut), back).empty());
  CHECK(ExecRequest::decode(p + "x", back) == "trailing bytes in payload");

  // argv count says 4 billion entries in a 4-byte payload: refused without allocating.
  std::string liar;
  put_u32(liar, 0xffffffffu);
  CHECK(ExecRequest::decode(liar, back).find("too many") != std::string::npos);

  // A string length beyond its limit.
  Writer w;
  w.u32(1).u32(kMaxString + 1);
  CHECK(ExecRequest::decode(w.bytes(), back).find("longer than") != std::string::npos);
}

TEST_CASE("exit, stat, path and env messages validate ranges") {
  ExitStatus e{-1, 9, true}, eb;
  REQUIRE(ExitStatus::decode(e.encode(), eb).empty());
  CHECK(eb.signal == 9);
  CHECK(eb.timed_out);
  ExitStatus bad{0, 1000, false};
  CHECK(!ExitStatus::decode(bad.encode(), eb).empty());
  std::string badbool = ExitStatus{0, 0, false}.encode();
  badbool.back() = 2;
  CHECK(!ExitStatus::decode(badbool, eb).empty());

  StatResult s{FileType::kRegular, 0644, 1ull << 40, 5}, sb;
  REQUIRE(StatResult::decode(s.encode(), sb).empty());
  CHECK(sb.size == (1ull << 40));
  StatResult sbad = s;
  sbad.mode = 0170000;
  CHECK(!StatResult::decode(sbad.encode(), sb).empty());

  PathRequest pr{"/a/b", 0755, 0}, pb;
  REQUIRE(PathRequest::decode(pr.encode(), pb).empty());
  CHECK(pb.path == "/a/b");
  CHECK(!PathRequest::decode(PathRequest{"", 0, 0}.encode(), pb).empty());
  CHECK(
      !PathRequest::decode(PathRequest{std::string(kMaxPath + 1, 'a'), 0, 0}.encode(), pb).empty());

  EnvRequest env{{"X=1"}, {"Y"}}, envb;
  REQUIRE(EnvRequest::decode(env.encode(), envb).empty());
  CHECK(envb.unset == std::vector<std::string>{"Y"});
  CHECK(!EnvRequest::decode(EnvRequest{{}, {"A=B"}}.encode(), envb).empty());

  CHECK(validate_payload(Op::kOk, "x") == "payload must be empty");
  CHECK(validate_payload(Op::kStdout, "anything").empty());
  SignalRequest sig{0};
  CHECK(!validate_payload(Op::kSignal, sig.encode()).empty());
}

TEST_CASE("direction tables: a guest may not send host operations") {
  CHECK(guest_may_send(Op::kStdout));
  CHECK(!guest_may_send(Op::kExec));
  CHECK(!guest_may_send(Op::kSignal));
  CHECK(host_may_send(Op::kExec));
  CHECK(!host_may_send(Op::kExit));
}

TEST_CASE("random bytes never crash the decoder and never buffer beyond one frame") {
  std::mt19937 rng(42);
  for (int round = 0; round < 200; ++round) {
    std::string junk(1 + rng() % 4096, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    FrameDecoder d;
    std::vector<Frame> frames;
    (void)d.feed(junk, frames);
    for (const auto& f : frames) {
      CHECK(f.payload.size() <= kMaxPayload);
      (void)validate_payload(f.header.op, f.payload);
    }
  }
}
