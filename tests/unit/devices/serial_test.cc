#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "devices/serial.h"

using airlock::devices::Serial;

namespace {
struct Harness {
  std::string out;
  std::vector<bool> irq_changes;
  Serial uart{[this](uint8_t b) { out.push_back(static_cast<char>(b)); },
              [this](bool level) { irq_changes.push_back(level); }};
  bool irq() const { return !irq_changes.empty() && irq_changes.back(); }
};
constexpr uint16_t THR = 0, IER = 1, IIR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;
}  // namespace

TEST_CASE("transmitted bytes reach the output at once, LSR always shows THR empty") {
  Harness h;
  for (char c : std::string("hi\n")) h.uart.write(THR, static_cast<uint8_t>(c));
  CHECK(h.out == "hi\n");
  CHECK((h.uart.read(LSR) & 0x60) == 0x60);
  CHECK((h.uart.read(LSR) & 0x01) == 0);
  CHECK(h.irq_changes.empty());  // no interrupts enabled
}

TEST_CASE("DLAB switches offsets 0 and 1 to the divisor latch") {
  Harness h;
  h.uart.write(LCR, 0x83);
  h.uart.write(THR, 0x01);  // DLL
  h.uart.write(IER, 0x00);  // DLM
  CHECK(h.uart.read(THR) == 0x01);
  CHECK(h.uart.read(IER) == 0x00);
  CHECK(h.out.empty());  // nothing transmitted while DLAB is set
  h.uart.write(LCR, 0x03);
  h.uart.write(IER, 0x05);
  CHECK(h.uart.read(IER) == 0x05);
  CHECK(h.uart.read(LCR) == 0x03);
  h.uart.write(SCR, 0x5a);
  CHECK(h.uart.read(SCR) == 0x5a);
}

TEST_CASE(
    "THRE interrupt: raised when enabled, cleared by reading IIR, raised again after a write") {
  Harness h;
  CHECK(h.uart.read(IIR) == 0x01);  // no interrupt pending
  h.uart.write(IER, 0x02);
  CHECK(h.irq());
  CHECK((h.uart.read(IIR) & 0x0f) == 0x02);  // THRE, and reading it acknowledges
  CHECK(!h.irq());
  CHECK(h.uart.read(IIR) == 0x01);
  h.uart.write(THR, 'x');
  CHECK(h.irq());
  h.uart.write(IER, 0x00);
  CHECK(!h.irq());
  // Linux's THRE test: enable, read IIR, disable, enable again, IIR must report THRE again.
  h.uart.write(IER, 0x02);
  CHECK((h.uart.read(IIR) & 0x0f) == 0x02);
  h.uart.write(IER, 0x00);
  h.uart.write(IER, 0x02);
  CHECK((h.uart.read(IIR) & 0x0f) == 0x02);
}

TEST_CASE("received bytes: LSR data ready, RX interrupt with priority over THRE, RBR pops") {
  Harness h;
  h.uart.write(IER, 0x03);
  CHECK(h.uart.push_input("ab") == 2);
  CHECK((h.uart.read(LSR) & 0x01) == 1);
  CHECK((h.uart.read(IIR) & 0x0f) == 0x04);
  CHECK(h.irq());
  CHECK(h.uart.read(THR) == 'a');
  CHECK(h.uart.read(THR) == 'b');
  CHECK((h.uart.read(LSR) & 0x01) == 0);
  // Only the THRE interrupt remains (latched by enabling IER bit 1), then nothing.
  CHECK((h.uart.read(IIR) & 0x0f) == 0x02);
  CHECK(h.uart.read(IIR) == 0x01);
  CHECK(!h.irq());
  CHECK(h.uart.read(THR) == 0);  // empty receiver reads 0
}

TEST_CASE("console input is bounded") {
  Harness h;
  std::string big(Serial::kInputLimit + 10, 'z');
  CHECK(h.uart.push_input(big) == Serial::kInputLimit);
  CHECK(h.uart.push_input("more") == 0);
}

TEST_CASE("FIFO enable shows in IIR, FCR can clear the receiver") {
  Harness h;
  h.uart.write(IIR, 0x01);  // FCR: enable FIFO
  CHECK((h.uart.read(IIR) & 0xc0) == 0xc0);
  h.uart.push_input("xyz");
  h.uart.write(IIR, 0x03);  // clear RX FIFO
  CHECK((h.uart.read(LSR) & 0x01) == 0);
}

TEST_CASE("loopback mode feeds transmitted bytes back and mirrors modem lines") {
  Harness h;
  h.uart.write(MCR, 0x10 | 0x0b);  // loop, DTR, RTS, OUT2
  h.uart.write(THR, 'q');
  CHECK(h.out.empty());
  CHECK(h.uart.read(THR) == 'q');
  CHECK((h.uart.read(MSR) & 0xb0) == 0xb0);  // DCD, DSR, CTS
  h.uart.write(MCR, 0x08);
  CHECK((h.uart.read(MSR) & 0xb0) == 0xb0);  // carrier and ready when not looping
  CHECK(h.uart.read(99) == 0xff);            // out of range register
}
