#include "devices/serial.h"

namespace airlock::devices {

namespace {
// Register indices (PC16550D data sheet).
constexpr uint16_t kRbrThr = 0;  // DLL when DLAB
constexpr uint16_t kIer = 1;     // DLM when DLAB
constexpr uint16_t kIirFcr = 2;
constexpr uint16_t kLcr = 3;
constexpr uint16_t kMcr = 4;
constexpr uint16_t kLsr = 5;
constexpr uint16_t kMsr = 6;
constexpr uint16_t kScr = 7;

constexpr uint8_t kLcrDlab = 0x80;
constexpr uint8_t kIerRxData = 0x01;
constexpr uint8_t kIerThrEmpty = 0x02;
constexpr uint8_t kIirNoInterrupt = 0x01;
constexpr uint8_t kIirThrEmpty = 0x02;
constexpr uint8_t kIirRxData = 0x04;
constexpr uint8_t kIirFifoEnabled = 0xc0;
constexpr uint8_t kFcrFifoEnable = 0x01;
constexpr uint8_t kLsrDataReady = 0x01;
constexpr uint8_t kLsrThrEmpty = 0x20;
constexpr uint8_t kLsrTxEmpty = 0x40;
constexpr uint8_t kMcrLoop = 0x10;
constexpr uint8_t kMsrCts = 0x10;
constexpr uint8_t kMsrDsr = 0x20;
constexpr uint8_t kMsrDcd = 0x80;
}  // namespace

Serial::Serial(OutputFn output, IrqFn set_irq)
    : output_(std::move(output)), set_irq_(std::move(set_irq)) {}

uint8_t Serial::interrupt_id_locked() const {
  if ((ier_ & kIerRxData) && !rx_.empty()) return kIirRxData;
  if ((ier_ & kIerThrEmpty) && thr_empty_pending_) return kIirThrEmpty;
  return kIirNoInterrupt;
}

bool Serial::irq_level_locked() const {
  return interrupt_id_locked() != kIirNoInterrupt;
}

void Serial::update_irq_locked() {
  bool level = irq_level_locked();
  if (level == irq_level_) return;
  irq_level_ = level;
  if (set_irq_) set_irq_(level);
}

uint8_t Serial::read(uint16_t offset) {
  std::lock_guard lock(mu_);
  uint8_t v = 0;
  switch (offset) {
    case kRbrThr:
      if (lcr_ & kLcrDlab) return dll_;
      if (!rx_.empty()) {
        v = rx_.front();
        rx_.pop_front();
      }
      break;
    case kIer:
      return (lcr_ & kLcrDlab) ? dlm_ : ier_;
    case kIirFcr:
      v = interrupt_id_locked();
      // Reading IIR while it reports THRE acknowledges that interrupt.
      if (v == kIirThrEmpty) thr_empty_pending_ = false;
      if (fcr_ & kFcrFifoEnable) v |= kIirFifoEnabled;
      break;
    case kLcr:
      return lcr_;
    case kMcr:
      return mcr_;
    case kLsr:
      v = kLsrThrEmpty | kLsrTxEmpty;
      if (!rx_.empty()) v |= kLsrDataReady;
      return v;
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback wires DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return kMsrDcd | kMsrDsr | kMsrCts;
    case kScr:
      return scr_;
    default:
      return 0xff;
  }
  update_irq_locked();
  return v;
}

void Serial::transmit_locked(uint8_t byte, bool& emit) {
  if (mcr_ & kMcrLoop) {
    if (rx_.size() < kInputLimit) rx_.push_back(byte);
  } else {
    emit = true;
  }
  // The byte left at once: THR is empty again.
  thr_empty_pending_ = true;
}

void Serial::write(uint16_t offset, uint8_t value) {
  bool emit = false;
  {
    std::lock_guard lock(mu_);
    switch (offset) {
      case kRbrThr:
        if (lcr_ & kLcrDlab)
          dll_ = value;
        else
          transmit_locked(value, emit);
        break;
      case kIer:
        if (lcr_ & kLcrDlab) {
          dlm_ = value;
        } else {
          // Enabling THRE interrupts with THR empty raises one at once.
          if ((value & kIerThrEmpty) && !(ier_ & kIerThrEmpty)) thr_empty_pending_ = true;
          ier_ = value & 0x0f;
        }
        break;
      case kIirFcr:
        fcr_ = value;
        if (value & 0x02) rx_.clear();  // clear receive FIFO
        break;
      case kLcr:
        lcr_ = value;
        break;
      case kMcr:
        mcr_ = value & 0x1f;
        break;
      case kScr:
        scr_ = value;
        break;
      default:
        break;  // LSR, MSR: read-only
    }
    update_irq_locked();
  }
  if (emit && output_) output_(value);
}

size_t Serial::push_input(std::string_view bytes) {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (char c : bytes) {
    if (rx_.size() >= kInputLimit) break;
    rx_.push_back(static_cast<uint8_t>(c));
    ++n;
  }
  update_irq_locked();
  return n;
}

}  // namespace airlock::devices
