// Flags of `engine train --swarm` (collaborative training, train/collaborative.h):
// where the run is, how big its steps are, how peers average.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <string>

#include "commands/security_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "net/address.h"
#include "net/dht_record.h"
#include "train/collaborative.h"

namespace engine {

struct CollabFlags {
  bool swarm = false, client_mode = false, verbose = false;
  std::string initial_peers, run = "run", listen = "127.0.0.1:0", announce, aggregator = "centered-clip", wire = "f32",
              byzantine = "none";
  int64_t target_batch = 0;
  double bandwidth = 1.0, averaging_timeout_s = 30, matchmaking_time_s = 1.5, progress_period_s = 0.5;
  float clip_tau = 0.5f;  // measured: 1.0 let one liar in four cost up to 9.7% eval loss, 0.5 at most 2.4% (bench/NOTES.md)
  int clip_iters = 20;
  uint64_t data_seed = 0;
  std::string test_die;
  // SWARM pipeline roles (commands/train_pipeline.cpp).
  int64_t stages = 0;             // 0: data-parallel (every peer holds the whole model)
  std::string stage;              // "K" or "auto": a stage peer
  bool trainer = false;
  double throttle = 1.0, rebalance_period_s = 10, rebalance_threshold = 0.75;
  int inflight = 0;               // micro-batches a trainer keeps in the pipeline (0: stages + 1)
  std::string byzantine_serve;    // TEST HOOK: a stage peer's dishonest replies
  SecurityFlags security;

  void add_to(ArgParser& p) {
    p.flag("--swarm", "train together with the peers of --run (data-parallel, DeDLOC-style averaging)", &swarm);
    p.add("--initial-peers", "ADDR,...", "DHT peers of the run (engine dht, or any peer); none: this peer starts it",
          &initial_peers);
    p.add("--run", "NAME", "the run's name in the DHT; every peer of a run trains the same model config", &run);
    p.add("--listen", "ADDR", "where this peer accepts connections (DHT, averaging, state downloads)", &listen);
    p.add("--announce", "ADDR", "the address other peers should dial (a proxy, a NAT's public address; default: "
          "the listen address)", &announce);
    p.flag("--client-mode", "accept no connections (behind NAT/firewall): send and receive, reduce nothing",
           &client_mode);
    p.add("--target-batch", "S", "samples (windows) the peers accumulate together per optimizer step "
          "(default: --batch)", &target_batch);
    p.add("--bandwidth", "X", "announced bandwidth: this peer reduces a share of the vector proportional to it",
          &bandwidth);
    p.add("--aggregator", "A", "mean or centered-clip (Byzantine-robust)", &aggregator);
    p.add("--clip-tau", "T", "CenteredClip radius, as a multiple of the median distance of the contributions from "
          "their coordinate-wise median", &clip_tau);
    p.add("--clip-iters", "N", "CenteredClip iteration cap", &clip_iters);
    p.add("--wire-dtype", "T", "on the wire: averaged gradients, f32, f16 or int8 (8-bit blockwise); with --stages "
          "also the activations and their gradients, f32, f16 (the default there), bf16 or int8", &wire);
    p.add("--averaging-timeout", "SECONDS", "an all-reduce round never takes longer", &averaging_timeout_s);
    p.add("--matchmaking-time", "SECONDS", "how long peers gather into a group", &matchmaking_time_s);
    p.add("--progress-period", "SECONDS", "how often progress is published to the DHT", &progress_period_s);
    p.add("--data-seed", "S", "this peer's data order (default: drawn from its peer id, so peers see different "
          "windows)", &data_seed);
    p.add("--byzantine", "MODE", "TEST HOOK: send a corrupted gradient every round: sign-flip (-1000x), scale "
          "(1000x), random (1000x-norm random direction), delayed (8 steps old), epoch-lie (claims an epoch 1000 ahead); none", &byzantine);
    p.add("--test-die", "round:E|step:E|fwd:E|bwd:E", "TEST HOOK: SIGKILL this process 3 ms into the all-reduce of "
          "epoch E, after its first micro-batch of epoch E, or (stage peer) in the middle of its first forward / backward at "
          "or after epoch E", &test_die);
    p.flag("--verbose", "log joins, groups, state downloads and repairs on stderr", &verbose);
    p.add("--stages", "N", "SWARM pipeline: the model's blocks split into N stages, each held by its own peers "
          "(with --stage or --trainer)", &stages);
    p.add("--stage", "K|auto", "SWARM stage peer: hold stage K's blocks (0-based) and serve them; auto: the stage "
          "with the least throughput", &stage);
    p.flag("--trainer", "SWARM trainer: hold the embedding and head, push --data through the stages", &trainer);
    p.add("--inflight", "N", "trainer: micro-batches in the pipeline at once (default: stages + 1)", &inflight);
    p.add("--rebalance-period", "SECONDS", "stage peer: how often to check whether to move to the slowest stage "
          "(0: never)", &rebalance_period_s);
    p.add("--rebalance-threshold", "R", "stage peer: move when the slowest stage has under R x the throughput of "
          "the one it would leave (after the move)", &rebalance_threshold);
    p.add("--throttle", "X", "TEST HOOK: stage peer computes X times slower", &throttle);
    security.add_to(p);
    p.add("--byzantine-serve", "nan|shape", "TEST HOOK: stage peer answers with a NaN in its activations, or one "
          "window short", &byzantine_serve);
  }

  // The collaborative configuration; `config_text` describes the model and
  // optimizer (every peer of the run must give the same).
  train::CollabConfig config(int64_t batch, const std::string& config_text) const {
    train::CollabConfig c;
    // The run's name goes into DHT keys and averaging round ids (<= 128 bytes).
    if (run.empty() || run.size() > 64 ||
        run.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != std::string::npos)
      throw Error("--run is 1-64 characters of letters, digits, '.', '_' and '-'");
    c.run = run;
    c.initial_peers = net::split_list(initial_peers);
    c.listen = listen;
    c.announce = announce;
    c.identity = security.identity();
    c.swarm_key = security.swarm_key();
    c.client_mode = client_mode;
    c.target_batch = target_batch > 0 ? target_batch : batch;
    if (c.target_batch < 1) throw Error("--target-batch must be positive");
    if (bandwidth <= 0) throw Error("--bandwidth must be positive");
    c.bandwidth = bandwidth;
    if (progress_period_s <= 0 || matchmaking_time_s <= 0 || averaging_timeout_s <= 0)
      throw Error("--progress-period, --matchmaking-time and --averaging-timeout must be positive");
    // The run config lives 60 progress periods (10 for progress, x6), and DHT records at most a day.
    if (progress_period_s * 60 > net::kMaxTtlS)
      throw Error("--progress-period must be at most " + std::to_string((int)(net::kMaxTtlS / 60)));
    c.progress_period_s = progress_period_s;
    c.progress_ttl_s = std::max(10.0, progress_period_s * 10);
    c.matchmaking.gather_ms = (uint32_t)(matchmaking_time_s * 1000);
    c.matchmaking.join_window_ms = (uint32_t)(matchmaking_time_s * 2000) + 1000;
    if (!train::aggregator_from_name(aggregator, &c.allreduce.aggregator))
      throw Error("--aggregator is mean or centered-clip, not '" + aggregator + "'");
    if (!(clip_tau > 0) || clip_iters < 1) throw Error("--clip-tau and --clip-iters must be positive");
    c.allreduce.clip.tau = clip_tau;
    c.allreduce.clip.iters = clip_iters;
    c.allreduce.clip.relative = true;
    // No contribution weighs more than the median one: a liar that computed (or was
    // routed) more of the batch than the others must not buy influence with it
    // (measured: at 4x, a SWARM stage liar reached +6.7% eval loss under load).
    c.allreduce.clip.max_weight_ratio = 1;
    if (!train::wire_dtype_from_name(wire, &c.allreduce.wire))
      throw Error("--wire-dtype is f32, f16 or int8, not '" + wire + "'");
    c.allreduce.deadline_ms = (uint32_t)(averaging_timeout_s * 1000);
    if (!train::byzantine_from_name(byzantine, &c.byzantine))
      throw Error("--byzantine is none, sign-flip, scale, random, delayed or epoch-lie, not '" + byzantine + "'");
    c.config_text = config_text;
    c.data_seed = data_seed;
    if (!test_die.empty()) {
      const size_t colon = test_die.find(':');
      const std::string phase = test_die.substr(0, colon);
      if (colon == std::string::npos || (phase != "round" && phase != "step" && phase != "fwd" && phase != "bwd"))
        throw Error("--test-die is round:EPOCH, step:EPOCH, fwd:EPOCH or bwd:EPOCH, not '" + test_die + "'");
      if ((phase == "fwd" || phase == "bwd") && stage.empty())
        throw Error("--test-die " + phase + ":EPOCH is for stage peers (--stage)");
      c.die_in_round = phase == "round";
      char* end = nullptr;
      const std::string num = test_die.substr(colon + 1);
      c.die_at_epoch = std::strtoll(num.c_str(), &end, 10);
      if (num.empty() || *end || c.die_at_epoch < 0) throw Error("--test-die: bad epoch '" + num + "'");
      if (phase == "fwd" || phase == "bwd") c.die_at_epoch = -1;  // the stage server's hook, not the averager's
    }
    if (verbose) c.log = [](const std::string& s) { std::fprintf(stderr, "swarm: %s\n", s.c_str()); };
    return c;
  }
};

}  // namespace engine

namespace engine::train {
struct TrainFlags;
struct TrainSetup;
}  // namespace engine::train

namespace engine {
// engine train --swarm: the collaborative run of the model TrainFlags describe
// (commands/train_swarm.cpp). Writes f.out at the end, like the single-process run.
int train_collaborative(train::TrainFlags& f, const CollabFlags& cf, train::TrainSetup& s);
// engine train --swarm --stages N --stage K|auto / --trainer (commands/train_pipeline.cpp).
int train_pipeline(train::TrainFlags& f, const CollabFlags& cf, train::TrainSetup& s);
// What every peer of a run must agree on (commands/train_swarm.cpp).
std::string run_config_text(const train::TrainFlags& f, const train::TrainSetup& s, int64_t target_batch,
                            const CollabFlags& cf);
}  // namespace engine
