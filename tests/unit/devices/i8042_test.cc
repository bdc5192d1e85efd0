#include <doctest/doctest.h>

#include "devices/i8042.h"

using airlock::devices::I8042;

TEST_CASE("i8042: 0xFE on the command port pulses reset") {
  int resets = 0;
  I8042 kbd([&] { ++resets; });
  CHECK((kbd.read(I8042::kCommandPort) & 0x02) == 0);  // input buffer empty: ready for commands
  kbd.write(I8042::kCommandPort, 0xad);
  CHECK(resets == 0);
  kbd.write(I8042::kCommandPort, I8042::kCmdResetCpu);
  CHECK(resets == 1);
}

TEST_CASE("i8042: output-port write with bit 0 clear also resets") {
  int resets = 0;
  I8042 kbd([&] { ++resets; });
  kbd.write(I8042::kCommandPort, 0xd1);
  kbd.write(I8042::kDataPort, 0x01);
  CHECK(resets == 0);
  kbd.write(I8042::kCommandPort, 0xd1);
  kbd.write(I8042::kDataPort, 0x00);
  CHECK(resets == 1);
}

TEST_CASE("i8042: command byte, self test and data port status") {
  I8042 kbd([] {});
  CHECK((kbd.read(I8042::kCommandPort) & 0x01) == 0);
  kbd.write(I8042::kCommandPort, 0xaa);
  CHECK((kbd.read(I8042::kCommandPort) & 0x01) == 1);
  CHECK(kbd.read(I8042::kDataPort) == 0x55);
  CHECK((kbd.read(I8042::kCommandPort) & 0x01) == 0);
  kbd.write(I8042::kCommandPort, 0x60);
  kbd.write(I8042::kDataPort, 0x47);
  kbd.write(I8042::kCommandPort, 0x20);
  CHECK(kbd.read(I8042::kDataPort) == 0x47);
  CHECK(kbd.read(0x61) == 0xff);
}
