#include "devices/i8042.h"

namespace airlock::devices {

namespace {
constexpr uint8_t kStatusOutputFull = 0x01;
constexpr uint8_t kStatusSystemFlag = 0x04;  // set after a successful self test
constexpr uint8_t kCmdReadCommandByte = 0x20;
constexpr uint8_t kCmdWriteCommandByte = 0x60;
constexpr uint8_t kCmdSelfTest = 0xaa;
constexpr uint8_t kCmdTestPort1 = 0xab;
constexpr uint8_t kCmdWriteOutputPort = 0xd1;
}  // namespace

I8042::I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

uint8_t I8042::read(uint16_t port) {
  std::lock_guard lock(mu_);
  if (port == kCommandPort) return kStatusSystemFlag | (has_output_ ? kStatusOutputFull : 0);
  if (port == kDataPort) {
    has_output_ = false;
    return output_;
  }
  return 0xff;
}

void I8042::write(uint16_t port, uint8_t value) {
  bool reset = false;
  {
    std::lock_guard lock(mu_);
    if (port == kCommandPort) {
      pending_command_ = 0;
      switch (value) {
        case kCmdResetCpu:
          reset = true;
          break;
        case kCmdReadCommandByte:
          output_ = command_byte_;
          has_output_ = true;
          break;
        case kCmdSelfTest:
          output_ = 0x55;  // "test passed"
          has_output_ = true;
          break;
        case kCmdTestPort1:
          output_ = 0x00;  // "no error"
          has_output_ = true;
          break;
        case kCmdWriteCommandByte:
        case kCmdWriteOutputPort:
          pending_command_ = value;
          break;
        default:
          break;  // enable/disable ports and the like: accepted, nothing to do
      }
    } else if (port == kDataPort) {
      if (pending_command_ == kCmdWriteCommandByte) command_byte_ = value;
      // Output port bit 0 low pulses the CPU reset line.
      if (pending_command_ == kCmdWriteOutputPort && !(value & 0x01)) reset = true;
      pending_command_ = 0;
    }
  }
  if (reset && on_reset_) on_reset_();
}

}  // namespace airlock::devices
