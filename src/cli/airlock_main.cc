// airlock: command-line front end. Dispatches to subcommands (commands.h).
#include <cstdio>
#include <cstring>

#include "cli/commands.h"

namespace {
void usage(FILE* out) {
  std::fprintf(out, "usage: airlock <command> [options]\n\ncommands:\n");
  for (const auto& c : airlock::cli::kCommands)
    std::fprintf(out, "  %-10s %s\n", c.name, c.summary);
  std::fprintf(out, "\n'airlock <command> --help' for a command's options.\n");
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : airlock::cli::kCommands)
    if (!std::strcmp(argv[1], c.name)) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "airlock: unknown command '%s'\n", argv[1]);
  usage(stderr);
  return 2;
}
