// engine train: full-parameter training of a Llama model — from scratch (random
// init, byte or GGUF vocabulary), or from a model's weights — on a text file or
// folder, with exact resume, a CSV loss log and an SVG loss chart. The shared
// flags and setup live in commands/train_flags.{h,cpp} so the collaborative mode
// (--swarm) reuses them.
#include <cstdio>
#include <string>

#include "commands/train_flags.h"
#include "commands/train_swarm_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/thread_pool.h"

using namespace engine;
using namespace engine::train;

static int cmd_train(int argc, char** argv) {
  TrainFlags f;
  ArgParser p("train",
              "Train every weight of a Llama model on text: a new model of the given shape (random init) or "
              "--init-from a model. Writes OUT.gguf (llama.cpp reads it), OUT.gguf.state (Adam moments, step: "
              "--resume continues bit for bit), a CSV loss log and optionally an SVG loss chart.");
  f.add_to(p);
  CollabFlags swarm;  // --swarm and its flags (commands/train_swarm_flags.h)
  swarm.add_to(p);
  p.epilog(
      "Examples:\n"
      "  engine train --data corpus.txt -o tiny.gguf --steps 200 --plot tiny.svg\n"
      "  engine train --data corpus/ -o m.gguf --dim 256 --layers 6 --heads 8 --steps 2000 --checkpoint-every 100\n"
      "  engine train --data corpus/ -o m.gguf --steps 4000 --resume m.gguf      (continue a run)\n"
      "  engine train --plot cmp.svg --plot-logs single=a.csv,swarm=b.csv      (only draw logs)\n"
      "Together (every peer gives the same model and optimizer flags; docs/training.md):\n"
      "  engine dht --listen 0.0.0.0:31337\n"
      "  engine train --swarm --run demo --initial-peers HOST:31337 --listen 0.0.0.0:31338 --announce MY_IP:31338 \\\n"
      "      --target-batch 256 --batch 8 --data my-shard/ -o m.gguf --steps 1000\n"
      "SWARM pipeline (blocks split into stages held by different peers; docs/training.md):\n"
      "  engine train --swarm --run big --stages 2 --stage auto   --initial-peers HOST:31337 --layers 8 ...\n"
      "  engine train --swarm --run big --stages 2 --trainer --data corpus/ -o big.gguf --initial-peers HOST:31337 ...\n"
      "Batches are a function of (--seed, step), so a resumed run repeats the uninterrupted one exactly.");
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    if (!f.plot_logs.empty()) {
      if (f.plot.empty()) throw Error("--plot-logs needs --plot SVG (the chart to write)");
      plot_logs(f.plot_logs, f.plot, "engine train: loss");
      std::fprintf(stderr, "train: wrote %s\n", f.plot.c_str());
      return 0;
    }
    if (!swarm.swarm)
      for (const char* flag : {"--initial-peers", "--run", "--target-batch", "--announce", "--client-mode",
                               "--aggregator", "--byzantine", "--test-die", "--stages", "--stage", "--trainer",
                               "--inflight", "--rebalance-period", "--rebalance-threshold", "--throttle",
                               "--byzantine-serve"})
        if (p.given(flag)) throw Error(std::string(flag) + " needs --swarm");
    const bool pipeline = swarm.swarm && (p.given("--stages") || p.given("--stage") || swarm.trainer);
    if (pipeline) {
      if (swarm.stages < 1) throw Error("--stage and --trainer need --stages N (the run's number of pipeline stages)");
      if (swarm.stage.empty() == !swarm.trainer)
        throw Error("a SWARM peer is either a stage peer (--stage K|auto) or a trainer (--trainer)");
      if (!p.given("--wire-dtype")) swarm.wire = "f16";  // activations: half the bytes, as Petals sends them
      for (const char* flag : {"--resume", "--stop-after", "--checkpoint-every"})
        if (p.given(flag)) throw Error(std::string(flag) + " is not supported with --stages (pipeline runs)");
    }
    if (p.given("--target-batch") && swarm.target_batch < 1) throw Error("--target-batch must be positive");
    if (swarm.swarm && p.given("--stop-after"))
      throw Error("--stop-after is for single-process runs (a swarm run ends at --steps)");
    TrainSetup s = setup_training(f, p, /*needs_data=*/!(pipeline && !swarm.trainer), /*needs_out=*/!pipeline);
    if (pipeline) return train_pipeline(f, swarm, s);
    if (swarm.swarm) return train_collaborative(f, swarm, s);
    ThreadPool pool(f.threads);
    Trainer t(std::move(s.state), s.data, f.cfg, pool);
    TrainReporter rep(f, t);
    pretrain(
        t, [&](const StepReport& r) { rep.report(r, t.state()); },
        [&](int64_t step) {
          save_training_checkpoint(f, s, t.state());
          std::fprintf(stderr, "train: checkpoint at step %lld: %s\n", (long long)step, f.out.c_str());
        });
    rep.finish(t.state());
    return 0;
  });
}

ENGINE_COMMAND("train", "train every weight of a Llama model on text (from scratch or from a model), resumable",
               cmd_train);
