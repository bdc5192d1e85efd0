// airlock's DNS responder: the only name service the guest has.
//
// It never recurses and never sends a query anywhere: every standard IN A query is answered with
// the proxy's IPv4 address (so any name leads the guest to the transparent proxy), IN AAAA gets
// NOERROR with no answer (the sandbox link is IPv4-only, so clients fall back to A), everything
// else is REFUSED. Queries come from a hostile guest: the codec is strictly bounds-checked,
// compression pointers in the question are rejected (FORMERR), and packets that are not queries
// (too short, QR set) get no reply at all, so the responder cannot be turned into a reflector.
//
// Threads: the codec functions are pure and reentrant. A DnsResponder runs one worker thread;
// start()/stop()/stats() may be called from any thread.
#pragma once

#include <netinet/in.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "airlock/status.hpp"
#include "base/fd.h"

namespace airlock::net::dns {

enum class Rcode : uint8_t {
  noerror = 0,
  formerr = 1,
  servfail = 2,
  nxdomain = 3,
  notimp = 4,
  refused = 5
};

constexpr uint16_t kTypeA = 1;
constexpr uint16_t kTypeAAAA = 28;
constexpr uint16_t kClassIN = 1;
constexpr size_t kHeaderSize = 12;
// RFC 1035 §2.3.4: a name is at most 255 octets on the wire, a label at most 63.
constexpr size_t kMaxNameWire = 255;
constexpr size_t kMaxLabel = 63;

struct Question {
  std::string name;  // dotted, lower-cased, non-printable bytes escaped as \DDD
  uint16_t qtype = 0;
  uint16_t qclass = 0;
  size_t wire_end = 0;  // offset just past QCLASS in the datagram
};

struct Query {
  uint16_t id = 0;
  uint16_t flags = 0;  // as received (QR, opcode, RD, ...)
  uint16_t qdcount = 0, ancount = 0, nscount = 0, arcount = 0;
  uint8_t opcode() const noexcept { return (flags >> 11) & 0xf; }
  bool is_response() const noexcept { return (flags & 0x8000) != 0; }
  bool recursion_desired() const noexcept { return (flags & 0x0100) != 0; }
};

// Parses the 12-byte header; protocol error if the datagram is shorter.
Result<Query> parse_header(std::span<const uint8_t> datagram);
// Parses the question starting at offset 12; protocol error on any malformation (truncated
// name or fields, a label over 63 bytes, a name over 255 bytes, a compression pointer or a
// reserved label type).
Result<Question> parse_question(std::span<const uint8_t> datagram);

struct AnswerPolicy {
  in_addr ipv4{};    // the address every A query resolves to (network byte order)
  uint32_t ttl = 5;  // seconds; small, the answer is the same for every name anyway
};

struct Reply {
  std::vector<uint8_t> bytes;  // empty: send nothing
  Rcode rcode = Rcode::noerror;
  uint16_t answers = 0;
};

// The whole policy in one function: decides what to send back for one received datagram.
Reply answer(std::span<const uint8_t> datagram, const AnswerPolicy& policy);

struct ResponderStats {
  uint64_t received = 0;
  uint64_t answered_a = 0;
  uint64_t nodata_aaaa = 0;
  uint64_t refused = 0;
  uint64_t formerr = 0;
  uint64_t dropped = 0;
};

// Serves one bound UDP socket until stopped.
class Responder {
 public:
  static Result<std::unique_ptr<Responder>> start(UniqueFd udp_socket, AnswerPolicy policy);
  ~Responder();
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;

  void stop() noexcept;  // idempotent; joins the worker
  ResponderStats stats() const noexcept;

 private:
  Responder(UniqueFd sock, UniqueFd stop_fd, AnswerPolicy policy);
  void run() noexcept;

  UniqueFd sock_;
  UniqueFd stop_fd_;
  AnswerPolicy policy_;
  std::thread worker_;
  std::atomic<uint64_t> received_{0}, answered_a_{0}, nodata_aaaa_{0}, refused_{0}, formerr_{0},
      dropped_{0};
};

}  // namespace airlock::net::dns
