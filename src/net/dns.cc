#include "net/dns.h"

#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstring>

#include "base/log.h"

namespace airlock::net::dns {

namespace {

uint16_t get16(std::span<const uint8_t> d, size_t off) {
  return static_cast<uint16_t>(d[off] << 8 | d[off + 1]);
}

void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  put16(out, static_cast<uint16_t>(v >> 16));
  put16(out, static_cast<uint16_t>(v));
}

void append_label_text(std::string& name, std::span<const uint8_t> label) {
  if (!name.empty()) name.push_back('.');
  for (uint8_t c : label) {
    if (c >= 'A' && c <= 'Z') c = static_cast<uint8_t>(c - 'A' + 'a');
    if (c > 0x20 && c < 0x7f && c != '.' && c != '\\') {
      name.push_back(static_cast<char>(c));
    } else {
      char esc[5];
      snprintf(esc, sizeof esc, "\\%03u", c);
      name += esc;
    }
  }
}

Status malformed(const char* what) {
  return Status(Errc::protocol, std::string("dns: ") + what);
}

// Header of a reply: id and opcode/RD echoed, QR and AA set, RA clear (no recursion offered).
std::vector<uint8_t> reply_header(const Query& q, Rcode rcode, uint16_t qd, uint16_t an) {
  std::vector<uint8_t> out;
  out.reserve(kHeaderSize + kMaxNameWire + 4 + 16);
  put16(out, q.id);
  uint16_t flags =
      0x8000 | (q.flags & 0x7800) | 0x0400 | (q.flags & 0x0100) | static_cast<uint16_t>(rcode);
  put16(out, flags);
  put16(out, qd);
  put16(out, an);
  put16(out, 0);
  put16(out, 0);
  return out;
}

}  // namespace

Result<Query> parse_header(std::span<const uint8_t> d) {
  if (d.size() < kHeaderSize) return malformed("datagram shorter than a header");
  Query q;
  q.id = get16(d, 0);
  q.flags = get16(d, 2);
  q.qdcount = get16(d, 4);
  q.ancount = get16(d, 6);
  q.nscount = get16(d, 8);
  q.arcount = get16(d, 10);
  return q;
}

Result<Question> parse_question(std::span<const uint8_t> d) {
  Question question;
  size_t off = kHeaderSize;
  size_t wire_len = 0;
  for (;;) {
    if (off >= d.size()) return malformed("name runs past the datagram");
    uint8_t len = d[off];
    if ((len & 0xc0) == 0xc0) return malformed("compression pointer in a question");
    if ((len & 0xc0) != 0) return malformed("reserved label type");
    wire_len += 1 + len;
    if (wire_len > kMaxNameWire) return malformed("name longer than 255 bytes");
    ++off;
    if (len == 0) break;
    if (len > d.size() - off) return malformed("label runs past the datagram");
    append_label_text(question.name, d.subspan(off, len));
    off += len;
  }
  if (d.size() - off < 4) return malformed("question truncated before type and class");
  question.qtype = get16(d, off);
  question.qclass = get16(d, off + 2);
  question.wire_end = off + 4;
  return question;
}

Reply answer(std::span<const uint8_t> d, const AnswerPolicy& policy) {
  Reply r;
  auto header = parse_header(d);
  // Not even a header, or a response: answering would let anyone bounce packets off us.
  if (!header.ok() || header->is_response()) return r;
  const Query& q = *header;

  if (q.qdcount != 1 || q.ancount != 0 || q.nscount != 0) {
    r.rcode = Rcode::formerr;
    r.bytes = reply_header(q, r.rcode, 0, 0);
    return r;
  }
  auto question = parse_question(d);
  if (!question.ok()) {
    r.rcode = Rcode::formerr;
    r.bytes = reply_header(q, r.rcode, 0, 0);
    return r;
  }
  const Question& qu = *question;
  // The additional section (EDNS OPT) is ignored: replies are always far below 512 bytes.
  const bool standard = q.opcode() == 0 && qu.qclass == kClassIN && !qu.name.empty();
  if (standard && qu.qtype == kTypeA) {
    r.rcode = Rcode::noerror;
    r.answers = 1;
  } else if (standard && qu.qtype == kTypeAAAA) {
    r.rcode = Rcode::noerror;  // NODATA: the name exists, it has no IPv6 address
  } else {
    r.rcode = Rcode::refused;
  }
  r.bytes = reply_header(q, r.rcode, 1, r.answers);
  // The question was validated above (no pointers), so its bytes can be echoed as they are.
  r.bytes.insert(r.bytes.end(), d.begin() + kHeaderSize, d.begin() + qu.wire_end);
  if (r.answers == 1) {
    put16(r.bytes, 0xc000 | kHeaderSize);  // name: pointer to the question's name
    put16(r.bytes, kTypeA);
    put16(r.bytes, kClassIN);
    put32(r.bytes, policy.ttl);
    put16(r.bytes, 4);
    const auto* a = reinterpret_cast<const uint8_t*>(&policy.ipv4.s_addr);
    r.bytes.insert(r.bytes.end(), a, a + 4);
  }
  return r;
}

Result<std::unique_ptr<Responder>> Responder::start(UniqueFd udp_socket, AnswerPolicy policy) {
  if (!udp_socket) return Status(Errc::invalid_argument, "dns responder: no socket");
  AIRLOCK_RETURN_IF_ERROR(set_nonblocking(udp_socket.get()));
  AIRLOCK_ASSIGN_OR_RETURN(UniqueFd stop_fd, make_eventfd());
  std::unique_ptr<Responder> r(new Responder(std::move(udp_socket), std::move(stop_fd), policy));
  try {
    r->worker_ = std::thread([p = r.get()] { p->run(); });
  } catch (const std::system_error& e) {
    return Status(Errc::resource_exhausted, std::string("dns responder thread: ") + e.what());
  }
  return r;
}

Responder::Responder(UniqueFd sock, UniqueFd stop_fd, AnswerPolicy policy)
    : sock_(std::move(sock)), stop_fd_(std::move(stop_fd)), policy_(policy) {}

Responder::~Responder() {
  stop();
}

void Responder::stop() noexcept {
  signal_eventfd(stop_fd_.get());
  if (worker_.joinable()) worker_.join();
}

ResponderStats Responder::stats() const noexcept {
  return {received_.load(), answered_a_.load(), nodata_aaaa_.load(),
          refused_.load(),  formerr_.load(),    dropped_.load()};
}

void Responder::run() noexcept {
  // A DNS message over UDP is at most 512 bytes without EDNS; a bigger buffer lets oversize
  // datagrams be seen whole (and answered or refused) instead of silently truncated.
  uint8_t buf[4096];
  pollfd fds[2] = {{sock_.get(), POLLIN, 0}, {stop_fd_.get(), POLLIN, 0}};
  for (;;) {
    int n = ::poll(fds, 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      AIRLOCK_LOG_ERROR("dns", "poll failed: {}", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    // Bounded batch so a flood cannot starve the stop check.
    for (int i = 0; i < 64; ++i) {
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof peer;
      ssize_t len = ::recvfrom(sock_.get(), buf, sizeof buf, MSG_TRUNC,
                               reinterpret_cast<sockaddr*>(&peer), &peer_len);
      if (len < 0) break;  // EAGAIN or a transient error (ICMP bounce): back to poll
      received_.fetch_add(1, std::memory_order_relaxed);
      if (static_cast<size_t>(len) > sizeof buf) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      Reply r = answer(std::span<const uint8_t>(buf, static_cast<size_t>(len)), policy_);
      if (r.bytes.empty()) {
        dropped_.fetch_add(1, std::memory_order_relaxed);
        continue;
      }
      switch (r.rcode) {
        case Rcode::noerror:
          (r.answers ? answered_a_ : nodata_aaaa_).fetch_add(1, std::memory_order_relaxed);
          break;
        case Rcode::formerr:
          formerr_.fetch_add(1, std::memory_order_relaxed);
          break;
        default:
          refused_.fetch_add(1, std::memory_order_relaxed);
          break;
      }
      // Non-blocking: if the socket buffer is full the reply is lost, as UDP allows.
      (void)::sendto(sock_.get(), r.bytes.data(), r.bytes.size(), MSG_DONTWAIT,
                     reinterpret_cast<sockaddr*>(&peer), peer_len);
    }
  }
}

}  // namespace airlock::net::dns
