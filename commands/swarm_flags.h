// Flags of the commands that can run a model through the swarm (generate,
// chat, api, finetune): where to join, how hidden states travel, spot checks
// (docs/protocol.md §7), and the client itself.
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "commands/security_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "net/address.h"
#include "net/swarm_runner.h"

namespace engine {

struct SwarmFlags {
  bool swarm = false;
  std::string initial_peers, swarm_name = "default", model_name, wire = "f32";
  bool verbose = false;
  double step_timeout_s = 30, give_up_s = 60;
  double verify_rate = 0.05, verify_tolerance = 0;
  uint64_t verify_seed = 0;
  SecurityFlags security;

  // `spot_checks`: the command runs inference sessions, which --verify-rate checks
  // (finetune's training chain is not spot-checked yet, so it does not offer the flags).
  void add_to(ArgParser& p, bool with_switch, bool spot_checks = true) {
    if (with_switch) p.flag("--swarm", "run the blocks on the swarm (needs --initial-peers)", &swarm);
    p.add("--initial-peers", "ADDR,...", "DHT peers of the swarm to run the blocks on", &initial_peers);
    p.add("--swarm-name", "NAME", "swarm name (as given to engine dht / serve --swarm)", &swarm_name);
    p.add("--model-name", "NAME", "model name in the DHT (default: the file name without .gguf)", &model_name);
    p.add("--wire-dtype", "T", "hidden states on the wire: f32 (exact), f16 or bf16", &wire);
    p.add("--step-timeout", "SECONDS", "a server slower than this for one step is replaced", &step_timeout_s);
    p.add("--give-up", "SECONDS", "fail when some blocks have no server for this long", &give_up_s);
    if (spot_checks) add_verify_flags(p);
    p.flag("--verbose", "show the route, failures and re-routes on stderr", &verbose);
    security.add_to(p);
  }
  void add_verify_flags(ArgParser& p) {
    p.add("--verify-rate", "P", "spot-check this fraction of span steps on another server (0: off)", &verify_rate);
    p.add("--verify-seed", "N", "seed of the spot-check draws (0: random)", &verify_seed);
    p.add("--verify-tolerance", "R", "relative L2 error per position two servers may differ by (0: f32 1e-2, "
          "f16 2e-2, bf16 5e-2)", &verify_tolerance);
  }
  bool enabled() const {
    if (swarm && initial_peers.empty()) throw Error("--swarm needs --initial-peers");
    return swarm || !initial_peers.empty();
  }
  // The client keeps only the embeddings, the head and the tokenizer.
  static LlamaLoadOptions client_load_options() {
    LlamaLoadOptions o;
    o.first_block = 0, o.last_block = 0, o.embeddings = true, o.head = true;
    return o;
  }
  std::unique_ptr<net::SwarmClient> connect(const LlamaModel& model, const std::string& path) const {
    auto o = net::swarm_options_for(model, model_name.empty() ? net::model_dht_name(path) : model_name);
    o.initial_peers = net::split_list(initial_peers);
    o.swarm = swarm_name;
    o.identity = security.identity();
    o.swarm_key = security.swarm_key();
    if (!dtype_from_name(wire, &o.wire_dtype) || !net::wire_dtype_ok(o.wire_dtype))
      throw Error("--wire-dtype is f32, f16 or bf16");
    if (step_timeout_s <= 0 || give_up_s <= 0) throw Error("--step-timeout and --give-up must be positive");
    o.step_timeout_ms = (uint32_t)(step_timeout_s * 1000);
    o.give_up_s = give_up_s;
    o.verify_rate = verify_rate, o.verify_seed = verify_seed, o.verify_tolerance = verify_tolerance;
    o.warn = [](const std::string& s) { std::fprintf(stderr, "warning: %s\n", s.c_str()); };
    if (verbose) o.log = [](const std::string& s) { std::fprintf(stderr, "swarm: %s\n", s.c_str()); };
    auto c = std::make_unique<net::SwarmClient>(o);
    if (verbose) {
      const auto& servers = c->refresh();
      std::fprintf(stderr, "swarm: %zu servers announce model %s\n", servers.size(), o.model.c_str());
    }
    return c;
  }
  void report(net::SwarmClient& c) const {
    if (!verbose) return;
    auto& st = c.stats();
    std::fprintf(stderr, "swarm: %d server failures, %d re-routes, %d replayed steps, last recovery %.3f s\n",
                 st.failures, st.reroutes, st.replayed_steps, st.last_recovery_s);
    std::fprintf(stderr, "swarm: %d spot checks (%d skipped), %d mismatches, %d liars banned, %d unresolved, "
                 "%d rollbacks\n", st.verifications, st.verify_skipped, st.mismatches, st.liars, st.unresolved,
                 st.rollbacks);
  }
};

}  // namespace engine
