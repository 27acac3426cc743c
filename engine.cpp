// main(): finds the subcommand and hands off. Commands live in commands/*.cpp
// and register themselves with ENGINE_COMMAND.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/cli.h"
#include "engine.h"

static void print_usage(FILE* out) {
  std::fprintf(out,
               "engine %s: run and fine-tune large language models together over the internet\n\n"
               "usage: engine <command> [options]   (engine <command> --help for its options)\n\n"
               "commands:\n",
               ENGINE_VERSION);
  auto cmds = engine::command_registry();
  std::sort(cmds.begin(), cmds.end(), [](auto& a, auto& b) { return std::strcmp(a.name, b.name) < 0; });
  for (auto& c : cmds) std::fprintf(out, "  %-14s %s\n", c.name, c.summary);
}

int main(int argc, char** argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 1;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help" || cmd == "help") {
    print_usage(stdout);
    return 0;
  }
  if (cmd == "--version" || cmd == "version") {
    std::printf("engine %s\n", ENGINE_VERSION);
    return 0;
  }
  for (auto& c : engine::command_registry())
    if (cmd == c.name) return c.fn(argc - 1, argv + 1);
  std::fprintf(stderr, "error: unknown command '%s'\n\n", cmd.c_str());
  print_usage(stderr);
  return 1;
}
