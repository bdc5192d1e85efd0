// DNS codec and answer policy, including hostile datagrams.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <string>
#include <vector>

#include "net/dns.h"

using namespace airlock;
using namespace airlock::net::dns;

namespace {

std::vector<uint8_t> encode_name(const std::string& dotted) {
  std::vector<uint8_t> out;
  size_t start = 0;
  while (start < dotted.size()) {
    size_t dot = dotted.find('.', start);
    if (dot == std::string::npos) dot = dotted.size();
    out.push_back(static_cast<uint8_t>(dot - start));
    out.insert(out.end(), dotted.begin() + start, dotted.begin() + dot);
    start = dot + 1;
  }
  out.push_back(0);
  return out;
}

std::vector<uint8_t> query(uint16_t id, const std::vector<uint8_t>& name, uint16_t qtype,
                           uint16_t qclass = kClassIN, uint16_t flags = 0x0100,
                           uint16_t qdcount = 1) {
  std::vector<uint8_t> q;
  q.reserve(12 + name.size() + 4);
  for (uint16_t v : {id, flags, qdcount, uint16_t{0}, uint16_t{0}, uint16_t{0}}) {
    q.push_back(static_cast<uint8_t>(v >> 8));
    q.push_back(static_cast<uint8_t>(v));
  }
  for (uint8_t b : name) q.push_back(b);
  q.push_back(static_cast<uint8_t>(qtype >> 8));
  q.push_back(static_cast<uint8_t>(qtype));
  q.push_back(static_cast<uint8_t>(qclass >> 8));
  q.push_back(static_cast<uint8_t>(qclass));
  return q;
}

AnswerPolicy policy() {
  AnswerPolicy p;
  inet_pton(AF_INET, "10.213.0.1", &p.ipv4);
  p.ttl = 7;
  return p;
}

uint16_t be16(const std::vector<uint8_t>& b, size_t off) {
  return static_cast<uint16_t>(b[off] << 8 | b[off + 1]);
}

Rcode rcode_of(const Reply& r) {
  return static_cast<Rcode>(r.bytes[3] & 0xf);
}

}  // namespace

TEST_CASE("an A query for any name gets the proxy address") {
  auto q = query(0xbeef, encode_name("API.OpenAI.com"), kTypeA);
  Reply r = answer(q, policy());
  REQUIRE(r.bytes.size() == q.size() + 16);
  CHECK(be16(r.bytes, 0) == 0xbeef);
  uint16_t flags = be16(r.bytes, 2);
  CHECK((flags & 0x8000) != 0);  // QR
  CHECK((flags & 0x0400) != 0);  // AA
  CHECK((flags & 0x0100) != 0);  // RD echoed
  CHECK((flags & 0x0080) == 0);  // RA: no recursion offered
  CHECK(rcode_of(r) == Rcode::noerror);
  CHECK(be16(r.bytes, 4) == 1);
  CHECK(be16(r.bytes, 6) == 1);
  CHECK(be16(r.bytes, 8) == 0);
  CHECK(be16(r.bytes, 10) == 0);
  // Question echoed verbatim.
  CHECK(std::equal(q.begin() + 12, q.end(), r.bytes.begin() + 12));
  size_t a = q.size();
  CHECK(be16(r.bytes, a) == 0xc00c);
  CHECK(be16(r.bytes, a + 2) == kTypeA);
  CHECK(be16(r.bytes, a + 4) == kClassIN);
  CHECK(be16(r.bytes, a + 6) == 0);
  CHECK(be16(r.bytes, a + 8) == 7);
  CHECK(be16(r.bytes, a + 10) == 4);
  CHECK(r.bytes[a + 12] == 10);
  CHECK(r.bytes[a + 13] == 213);
  CHECK(r.bytes[a + 14] == 0);
  CHECK(r.bytes[a + 15] == 1);

  auto parsed = parse_question(q);
  REQUIRE(parsed.ok());
  CHECK(parsed->name == "api.openai.com");
}

TEST_CASE("AAAA gets NOERROR with no answer, other types and classes are refused") {
  Reply aaaa = answer(query(1, encode_name("example.com"), kTypeAAAA), policy());
  CHECK(rcode_of(aaaa) == Rcode::noerror);
  CHECK(be16(aaaa.bytes, 6) == 0);

  for (uint16_t t : {uint16_t{16}, uint16_t{15}, uint16_t{12}, uint16_t{255}, uint16_t{65},
                     uint16_t{252}, uint16_t{5}}) {
    Reply r = answer(query(2, encode_name("example.com"), t), policy());
    CHECK(rcode_of(r) == Rcode::refused);
    CHECK(be16(r.bytes, 6) == 0);
  }
  Reply chaos = answer(query(3, encode_name("version.bind"), 16, 3), policy());
  CHECK(rcode_of(chaos) == Rcode::refused);
  Reply chaos_a = answer(query(3, encode_name("example.com"), kTypeA, 3), policy());
  CHECK(rcode_of(chaos_a) == Rcode::refused);
  // Opcode other than QUERY (here UPDATE = 5), even for type A.
  Reply update = answer(query(4, encode_name("example.com"), kTypeA, kClassIN, 5 << 11), policy());
  CHECK(rcode_of(update) == Rcode::refused);
  CHECK(((be16(update.bytes, 2) >> 11) & 0xf) == 5);
  // The root name.
  Reply root = answer(query(5, {0}, kTypeA), policy());
  CHECK(rcode_of(root) == Rcode::refused);
}

TEST_CASE("responses and runt packets get no reply at all") {
  auto resp = query(1, encode_name("example.com"), kTypeA, kClassIN, 0x8100);
  CHECK(answer(resp, policy()).bytes.empty());
  for (size_t n = 0; n < 12; ++n) {
    std::vector<uint8_t> runt(n, 0);
    CHECK(answer(runt, policy()).bytes.empty());
  }
}

TEST_CASE("malformed questions get FORMERR without a question section") {
  auto check_formerr = [](const std::vector<uint8_t>& pkt) {
    Reply r = answer(pkt, policy());
    REQUIRE(r.bytes.size() == 12);
    CHECK(rcode_of(r) == Rcode::formerr);
    CHECK(be16(r.bytes, 4) == 0);
    CHECK(be16(r.bytes, 6) == 0);
  };
  auto good = query(9, encode_name("a.example.com"), kTypeA);

  // Every truncation of a good query.
  for (size_t n = 12; n < good.size(); ++n)
    check_formerr(std::vector<uint8_t>(good.begin(), good.begin() + n));

  // A compression pointer (to itself and to the header).
  for (uint16_t ptr : {uint16_t{0xc00c}, uint16_t{0xc000}, uint16_t{0xffff}}) {
    std::vector<uint8_t> name = {1, 'a', static_cast<uint8_t>(ptr >> 8), static_cast<uint8_t>(ptr)};
    check_formerr(query(9, name, kTypeA));
  }
  // Reserved label types 01 and 10.
  check_formerr(query(9, {0x41, 'a', 0}, kTypeA));
  check_formerr(query(9, {0x81, 'a', 0}, kTypeA));
  // A label longer than the datagram.
  check_formerr(query(9, {63, 'a', 'b', 0}, kTypeA));
  // A name over 255 bytes (5 labels of 63 = 320).
  std::vector<uint8_t> long_name;
  for (int i = 0; i < 5; ++i) {
    long_name.push_back(63);
    long_name.insert(long_name.end(), 63, 'x');
  }
  long_name.push_back(0);
  check_formerr(query(9, long_name, kTypeA));
  // Exactly 255 bytes is fine: 3 labels of 63 + one of 61 + root = 64*3 + 62 + 1 = 255.
  std::vector<uint8_t> max_name;
  for (int i = 0; i < 3; ++i) {
    max_name.push_back(63);
    max_name.insert(max_name.end(), 63, 'y');
  }
  max_name.push_back(61);
  max_name.insert(max_name.end(), 61, 'z');
  max_name.push_back(0);
  REQUIRE(max_name.size() == 255);
  CHECK(rcode_of(answer(query(9, max_name, kTypeA), policy())) == Rcode::noerror);
  // Wrong counts.
  check_formerr(query(9, encode_name("example.com"), kTypeA, kClassIN, 0x0100, 0));
  check_formerr(query(9, encode_name("example.com"), kTypeA, kClassIN, 0x0100, 2));
  auto with_answer = good;
  with_answer[7] = 1;  // ancount
  check_formerr(with_answer);
}

TEST_CASE("an EDNS OPT record in the additional section is ignored") {
  auto q = query(0x1234, encode_name("example.com"), kTypeA);
  q[11] = 1;  // arcount
  const uint8_t opt[] = {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0};
  q.insert(q.end(), std::begin(opt), std::end(opt));
  Reply r = answer(q, policy());
  CHECK(rcode_of(r) == Rcode::noerror);
  CHECK(be16(r.bytes, 6) == 1);
  CHECK(be16(r.bytes, 10) == 0);  // no OPT echoed
}

TEST_CASE("non-printable label bytes are escaped in the parsed name") {
  std::vector<uint8_t> name = {3, 'a', 0, '.', 2, 'B', '\\', 0};
  auto q = query(1, name, kTypeA);
  auto parsed = parse_question(q);
  REQUIRE(parsed.ok());
  CHECK(parsed->name == "a\\000\\046.b\\092");
  CHECK(rcode_of(answer(q, policy())) == Rcode::noerror);
}

TEST_CASE("random datagrams never break the codec") {
  std::mt19937 rng(12345);
  auto base = query(7, encode_name("www.example.com"), kTypeA);
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> pkt;
    if (i % 2 == 0) {
      pkt.resize(rng() % 80);
      for (auto& b : pkt) b = static_cast<uint8_t>(rng());
    } else {
      pkt = base;
      for (int k = 0; k < 3; ++k) pkt[rng() % pkt.size()] = static_cast<uint8_t>(rng());
      pkt.resize(rng() % (pkt.size() + 1));
    }
    Reply r = answer(pkt, policy());
    if (r.bytes.empty()) continue;
    // Whatever came back is a response to this id and never longer than question + one A.
    REQUIRE(r.bytes.size() >= 12);
    CHECK(r.bytes.size() <= pkt.size() + 16);
    CHECK((r.bytes[2] & 0x80) != 0);
    CHECK(r.bytes[0] == pkt[0]);
    CHECK(r.bytes[1] == pkt[1]);
  }
}

TEST_CASE("the responder answers over UDP on loopback and stops cleanly") {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(s >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(::getsockname(s, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  auto responder = Responder::start(UniqueFd(s), policy());
  REQUIRE(responder.ok());

  int c = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  REQUIRE(c >= 0);
  UniqueFd client(c);
  timeval tv{2, 0};
  ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  REQUIRE(::connect(c, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);

  auto q = query(0x4242, encode_name("pypi.org"), kTypeA);
  REQUIRE(::send(c, q.data(), q.size(), 0) == static_cast<ssize_t>(q.size()));
  uint8_t buf[512];
  ssize_t n = ::recv(c, buf, sizeof buf, 0);
  REQUIRE(n == static_cast<ssize_t>(q.size() + 16));
  CHECK(buf[0] == 0x42);
  CHECK((buf[3] & 0xf) == 0);
  CHECK(buf[n - 4] == 10);
  CHECK(buf[n - 1] == 1);

  // A response-flagged packet is dropped: the next thing we get answers the following query.
  auto resp = query(0x1111, encode_name("x.org"), kTypeA, kClassIN, 0x8000);
  ::send(c, resp.data(), resp.size(), 0);
  auto mx = query(0x2222, encode_name("x.org"), 15);
  ::send(c, mx.data(), mx.size(), 0);
  n = ::recv(c, buf, sizeof buf, 0);
  REQUIRE(n >= 12);
  CHECK(buf[0] == 0x22);
  CHECK((buf[3] & 0xf) == static_cast<int>(Rcode::refused));

  (*responder)->stop();
  auto st = (*responder)->stats();
  CHECK(st.received == 3);
  CHECK(st.answered_a == 1);
  CHECK(st.refused == 1);
  CHECK(st.dropped == 1);
}
