// engine swarm-key: makes a private swarm's pre-shared key (net/swarm_key.h).
// Every member of the swarm is then started with --swarm-key FILE.
#include <cstdio>

#include "core/cli.h"
#include "net/swarm_key.h"

using namespace engine;

static int cmd_swarm_key(int argc, char** argv) {
  std::string out;
  bool force = false;
  ArgParser p("swarm-key", "Write a new random 256-bit key for a private swarm (file mode 0600). Give the same "
              "file to every member with --swarm-key FILE; nodes without it cannot connect.");
  p.add("-o,--output", "FILE", "where to write the key", &out, true);
  p.flag("--force", "replace an existing file", &force);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    net::write_swarm_key(out, force);
    std::printf("swarm-key: wrote %s (keep it secret; copy it to every member over a safe channel)\n", out.c_str());
    return 0;
  });
}

ENGINE_COMMAND("swarm-key", "make the pre-shared key of a private swarm", cmd_swarm_key);
