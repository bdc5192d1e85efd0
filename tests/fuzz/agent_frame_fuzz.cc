// libFuzzer target: the host side of the agent protocol. The input is what a hostile guest
// writes on the agent connection: it goes through the frame decoder in pieces of varying size
// and every decoded frame through payload validation, then, prefixed with a valid hello, through
// a whole agent::Client (reader thread, dispatch, failure path).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "agent/client.h"
#include "agent/protocol.h"

namespace {

using namespace airlock;
using namespace airlock::agent;

// Serves a fixed byte string, then end of stream; swallows writes.
class MemoryTransport final : public Transport {
 public:
  explicit MemoryTransport(std::string data) : data_(std::move(data)) {}
  Result<size_t> read(void* buf, size_t len, Millis) override {
    size_t n = std::min(len, data_.size() - off_);
    std::memcpy(buf, data_.data() + off_, n);
    off_ += n;
    return n;
  }
  Status write(std::string_view, Millis) override { return ok_status(); }
  void close() override {}

 private:
  std::string data_;
  size_t off_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  proto::FrameDecoder decoder;
  std::vector<proto::Frame> frames;
  size_t step = size ? 1 + data[0] % 64 : 1;
  for (size_t off = 0; off < size; off += step) {
    if (!decoder.feed(input.substr(off, step), frames).empty()) break;
  }
  for (const auto& f : frames) {
    if (f.payload.size() > proto::kMaxPayload) __builtin_trap();
    (void)proto::validate_payload(f.header.op, f.payload);
    (void)proto::guest_may_send(f.header.op);
  }

  std::string stream = proto::encode_frame(proto::Op::kHello, 0, proto::Hello{}.encode());
  stream.append(input);
  auto client = Client::connect(std::make_unique<MemoryTransport>(std::move(stream)), Millis(1000));
  if (client.ok()) {
    (void)(*client)->ping("x", Millis(50));
    (*client)->close();
  }
  return 0;
}
