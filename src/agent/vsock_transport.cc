#include "agent/vsock_transport.h"

namespace airlock::agent {

namespace {

class VsockTransport final : public Transport {
 public:
  explicit VsockTransport(std::unique_ptr<devices::VsockStream> s) : stream_(std::move(s)) {}
  Result<size_t> read(void* buf, size_t len, Millis timeout) override {
    return stream_->read(buf, len, timeout);
  }
  Status write(std::string_view data, Millis timeout) override {
    return stream_->write(data, timeout);
  }
  void close() override { stream_->close(); }

 private:
  std::unique_ptr<devices::VsockStream> stream_;
};

}  // namespace

std::unique_ptr<Transport> make_vsock_transport(std::unique_ptr<devices::VsockStream> stream) {
  return std::make_unique<VsockTransport>(std::move(stream));
}

}  // namespace airlock::agent
