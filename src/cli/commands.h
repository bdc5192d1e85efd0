// The airlock command-line tool's subcommands. main() (airlock_main.cc) dispatches on argv[1]
// to the table below; a subcommand lives in its own cmd_<name>.cc and is added here with one
// line. Each returns the process exit code.
#pragma once

namespace airlock::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);  // argv[0] is the subcommand name
};

int cmd_boot(int argc, char** argv);
int cmd_run(int argc, char** argv);

// The registry: one line per subcommand.
inline constexpr Command kCommands[] = {
    {"boot", "boot a kernel + initramfs and stream its console", cmd_boot},
    {"run", "run a command in a fresh sandbox and print its output", cmd_run},
};

}  // namespace airlock::cli
