// The parts of `engine train` that the single-process run (commands/train.cpp) and the
// collaborative one (--swarm) share: the flags of the data, the model's shape and the
// optimizer, turning them into a corpus + tokenizer + starting TrainState, the
// progress lines, loss log and chart, and checkpoints.
//
// A driver does:
//   TrainFlags f;  ArgParser p(...);  f.add_to(p);  /* its own flags */  p.parse(...);
//   TrainSetup s = setup_training(f, p);         // every check that can fail, before any write
//   ThreadPool pool(f.threads);
//   Trainer t(std::move(s.state), s.data, f.cfg, pool);
//   TrainReporter rep(f, t);                     // opens the CSV log (appends on resume)
//   ... per step: rep.report(step_report, t.state());
//   save_training_checkpoint(f, s, t.state());   // OUT.gguf + OUT.gguf.state
//   rep.finish(t.state());
#pragma once
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "core/cli.h"
#include "core/gguf.h"
#include "models/tokenizer.h"
#include "train/loss_chart.h"
#include "train/pretrain.h"

namespace engine::train {

struct TrainFlags {
  // Data and files.
  std::string data, out, log, plot, plot_logs, resume, init_from, vocab = "bytes", type = "f32";
  float heldout = 0.1f;
  int threads = 0;
  // Model shape (a fresh model; --init-from and --resume take it from their file).
  int64_t dim = 128, ffn = 0, layers = 4, heads = 4, kv_heads = 0, ctx = 0;
  int64_t experts = 0, experts_used = 2;  // a mixture of experts (Mixtral layout); 0 = dense
  float init_std = 0.02f, rope_base = 10000.0f;
  // Optimizer, schedule, data order, evaluation, checkpoints.
  PretrainConfig cfg = defaults();

  static PretrainConfig defaults();
  // Registers every shared flag (none required: a driver checks what it needs, so a
  // mode like --plot-logs can run without --data).
  void add_to(ArgParser& p);
};

struct TrainSetup {
  std::unique_ptr<GGUFFile> vocab_file;  // where outputs copy the tokenizer from; null: byte vocabulary
  std::unique_ptr<Tokenizer> tokenizer;
  TextData data;
  TrainState state;                      // fresh, --init-from or --resume (step > 0)
  DType out_type = DType::F32;
  std::string vocab_name;                // "bytes" or the tokenizer's file, for messages and metadata
  bool resumed = false;
};

// Validates the flags, reads the corpus and builds the starting state; prints what it
// set up on stderr. Every Error a bad input can cause happens here, before anything is
// written. Fills in f.log's default (OUT with .csv).
// needs_data false (a SWARM stage peer): no --data, s.data stays empty; needs_out
// false: -o is optional (a SWARM trainer without it, a stage peer).
TrainSetup setup_training(TrainFlags& f, const ArgParser& p, bool needs_data = true, bool needs_out = true);

// OUT.gguf and OUT.gguf.state, atomically (train.vocab in the metadata).
void save_training_checkpoint(const TrainFlags& f, const TrainSetup& s, const TrainState& st);

// Progress on stderr, the CSV log, the chart (redrawn after each evaluation and at the end).
class TrainReporter {
 public:
  // extra_header: a driver's own CSV columns (the swarm's), filled by report()'s `extra`.
  TrainReporter(const TrainFlags& f, const Trainer& t, const std::string& extra_header = "");
  // A StepReport from pretrain() (or a driver's own loop): tokens == 0 is an
  // evaluation-only report. `st` gives the sample count after the step.
  void report(const StepReport& r, const TrainState& st, const std::string& extra = "");
  void finish(const TrainState& st);  // the summary lines, the final chart
  const LossLog& log() const { return log_; }

 private:
  void plot();
  const TrainFlags& f_;
  LossLog log_;
  int64_t first_step_, seqlen_;
  double train_seconds_ = 0, tokens_ = 0, elapsed_ = 0;
  double elapsed_before_ = 0;  // a resumed log's elapsed_s goes on from the previous runs'
  double first_loss_ = NAN, last_loss_ = NAN, first_eval_ = NAN, last_eval_ = NAN;
};

// "NAME=PATH,NAME=PATH" (or bare paths, named by their file name) drawn on one chart.
void plot_logs(const std::string& list, const std::string& svg_path, const std::string& title);

}  // namespace engine::train
