// The part of an i8042 keyboard controller a microVM needs: Linux reboots by writing the
// "pulse reset line" command (0xFE) to port 0x64 (reboot=k); we turn that into `on_reset`.
// The status/data ports answer like an idle controller with no devices attached, so a guest
// that probes it finds nothing and moves on.
//
// Threads: read()/write() from any vCPU thread (internal mutex); on_reset is invoked on that
// thread without the mutex held.
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>

namespace airlock::devices {

class I8042 {
 public:
  static constexpr uint16_t kDataPort = 0x60;
  static constexpr uint16_t kCommandPort = 0x64;  // reads: status, writes: command
  static constexpr uint8_t kCmdResetCpu = 0xfe;

  explicit I8042(std::function<void()> on_reset);

  uint8_t read(uint16_t port);
  void write(uint16_t port, uint8_t value);

 private:
  std::mutex mu_;
  std::function<void()> on_reset_;
  uint8_t command_byte_ = 0x30;  // both ports' clocks disabled, no interrupts
  uint8_t pending_command_ = 0;  // command waiting for its data byte on port 0x60
  bool has_output_ = false;
  uint8_t output_ = 0;
};

}  // namespace airlock::devices
