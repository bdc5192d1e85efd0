// A 16550A UART as the guest's console (ttyS0 at I/O port 0x3f8, IRQ 4).
//
// Bytes the guest transmits go to `output` at once (THR is always empty, LSR always says so);
// bytes the host queues with push_input() are received one by one through RBR with the RX
// interrupt. The interrupt line is reported through `set_irq(level)` whenever the level the
// registers imply changes (the machine turns it into KVM_IRQ_LINE). Loopback mode (MCR bit 4)
// feeds transmitted bytes back to the receiver, as Linux's probe expects.
//
// Threads: read()/write() from any vCPU thread, push_input() from any host thread; one
// internal mutex. The callbacks are invoked without that mutex held, except set_irq.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string_view>

namespace airlock::devices {

class Serial {
 public:
  static constexpr uint16_t kCom1Base = 0x3f8;
  static constexpr uint32_t kCom1Irq = 4;
  static constexpr size_t kInputLimit = 64 * 1024;

  using OutputFn = std::function<void(uint8_t)>;
  using IrqFn = std::function<void(bool level)>;

  Serial(OutputFn output, IrqFn set_irq);

  // offset is the register index 0..7 relative to the base port.
  uint8_t read(uint16_t offset);
  void write(uint16_t offset, uint8_t value);

  // Queues console input for the guest. Returns how many bytes were accepted (bounded buffer).
  size_t push_input(std::string_view bytes);

 private:
  uint8_t interrupt_id_locked() const;
  bool irq_level_locked() const;
  // Returns the new level if it changed.
  void update_irq_locked();
  void transmit_locked(uint8_t byte, bool& emit);

  std::mutex mu_;
  OutputFn output_;
  IrqFn set_irq_;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0x03;  // 8N1
  uint8_t mcr_ = 0x08;  // OUT2
  uint8_t scr_ = 0;
  uint8_t fcr_ = 0;
  uint8_t dll_ = 0x0c;  // 9600 baud
  uint8_t dlm_ = 0;
  bool thr_empty_pending_ = false;  // THRE interrupt latched until IIR read or THR write
  bool irq_level_ = false;
};

}  // namespace airlock::devices
