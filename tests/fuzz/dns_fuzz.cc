// libFuzzer target for airlock's DNS responder codec: whatever the guest sends, answer() must
// stay in bounds, never reply to a response, and only ever return the proxy's address.
#include <arpa/inet.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>

#include "net/dns.h"

using namespace airlock::net::dns;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  AnswerPolicy policy;
  policy.ipv4.s_addr = htonl(0x0ad50001);  // 10.213.0.1
  policy.ttl = 5;
  std::span<const uint8_t> in(data, size);
  (void)parse_question(in);
  Reply r = answer(in, policy);
  if (r.bytes.empty()) return 0;
  // Replies exist only for queries, carry the query's id, and are never larger than the
  // question echoed plus one A record.
  if (size < kHeaderSize || (data[2] & 0x80)) abort();
  if (r.bytes.size() < kHeaderSize || r.bytes.size() > size + 16) abort();
  if (memcmp(r.bytes.data(), data, 2) != 0) abort();
  if (!(r.bytes[2] & 0x80)) abort();
  if (r.answers == 1) {
    if (r.rcode != Rcode::noerror) abort();
    if (memcmp(r.bytes.data() + r.bytes.size() - 4, &policy.ipv4, 4) != 0) abort();
  }
  return 0;
}
