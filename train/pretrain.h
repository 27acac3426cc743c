// Full-parameter training of a whole model (engine train): the corpus, the
// optimizer step, evaluation, checkpoints and exact resume. One process drives it
// with pretrain(); the collaborative driver (train/collaborative.h) uses the same
// Trainer but gets each step's gradient from the group's all-reduce.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/tokenizer.h"
#include "train/finetune.h"  // TextData, batch_for_step, heldout_windows, StepReport
#include "train/model_params.h"
#include "train/optimizer.h"

namespace engine::train {

// The text of a file, or of every regular file in a folder (recursively, sorted by
// path, joined with "\n"; symlinks are not followed). In a folder, files with NUL
// bytes are skipped (listed in *skipped for the caller to mention). Error naming the
// path when missing, unreadable, empty or not text, or when a folder has no text.
std::string read_corpus(const std::string& path, std::vector<std::string>* skipped = nullptr);

struct PretrainConfig {
  int64_t steps = 1000, batch = 8, seqlen = 128;
  int64_t warmup = -1;            // -1: steps / 20 (at least 1)
  float lr = 1e-3f, min_lr_ratio = 0.1f, clip = 1.0f;
  float weight_decay = 0.1f;      // on matrices only (not norms), as llm.c
  AdamWConfig adam;               // its weight_decay is ignored (above)
  uint64_t seed = 1;              // data order: the windows of step s depend on (seed, s) only
  int64_t eval_every = 50;        // 0: at the start and the end only
  int64_t eval_windows = 32;
  int64_t checkpoint_every = 0;   // 0: only at the end
  int64_t stop_at = 0;            // > 0: pretrain() stops after this step (checkpointing); the
                                  // schedule still spans `steps`, so a later --resume continues it exactly
  int64_t warmup_steps() const;   // warmup, or its default
};

// What a checkpoint holds besides the weights: enough to continue bit for bit.
struct TrainState {
  ModelParams params;
  AdamWState opt;                 // m, v over params.data; t = optimizer steps taken
  int64_t step = 0;               // optimizer steps done (= opt.t)
  uint64_t seed = 1;
  int64_t samples = 0;            // windows trained on so far (progress accounting)
};

class Trainer {
 public:
  Trainer(TrainState state, const TextData& data, const PretrainConfig& cfg, ThreadPool& pool);

  // Σ loss over windows; grad (size params) accumulates d(grad_scale·Σloss)/dparams.
  CrossEntropyResult accumulate(const std::vector<Window>& windows, float grad_scale, float* grad);
  // One optimizer step with the MEAN gradient g (clipped in place to cfg.clip):
  // lr from the warm-up + cosine schedule at step(), AdamW with decay on matrices;
  // step() advances by one (state().samples is the caller's to count). Returns the
  // gradient norm before clipping.
  float apply_step(float* g, float* lr_used = nullptr);
  float lr_at(int64_t step) const;  // the schedule's learning rate for 0-based `step`
  // Mean held-out loss over the first cfg.eval_windows held-out windows (NaN when the
  // held-out text is shorter than one window).
  double evaluate();
  const std::vector<Window>& heldout() const { return heldout_; }

  int64_t step() const { return st_.step; }
  TrainState& state() { return st_; }
  const TrainState& state() const { return st_; }
  const PretrainConfig& config() const { return cfg_; }
  const TextData& data() const { return data_; }

 private:
  TrainState st_;
  const TextData& data_;
  PretrainConfig cfg_;
  ThreadPool& pool_;
  std::vector<Window> heldout_;
};

// The single-process loop: from state().step to cfg.steps (or cfg.stop_at), the
// batch_for_step(seed, step) windows, mean gradient over the batch's scored tokens,
// apply_step. on_step after every step (and once before the first, with tokens = 0 and
// only the evaluation filled in); evaluation every cfg.eval_every steps and after the
// last; checkpoint(step) every cfg.checkpoint_every steps and after the last.
void pretrain(Trainer& t, const std::function<void(const StepReport&)>& on_step,
              const std::function<void(int64_t step)>& checkpoint);

// Checkpoint = the model GGUF at `path` (llama.cpp opens it: weights only; with
// train.step and train.samples in its metadata) + the optimizer state beside it at
// state_path(path) = path + ".state" (GGUF: optim.m, optim.v, train.step, train.seed,
// train.samples, train.params_xxh3, and the f32 master weights train.params when the
// model is written as f16). Both written atomically (temp + rename), the state first.
// load_checkpoint checks the state belongs to the model (xxh3 of the parameters) and
// that its shape matches `expect` when given.
std::string state_path(const std::string& model_path);
void save_checkpoint(const TrainState& s, const std::string& path, DType type, const GGUFFile* vocab_from,
                     const std::function<void(GGUFWriter&)>& extra = nullptr);
TrainState load_checkpoint(const std::string& path, const LlamaHParams* expect = nullptr);

// Plain bytes of a TrainState for the network (state download): a small header
// (magic, version, shape, step, seed, samples, n params, the part: first block, block
// count, embedding + head) then params, m, v as f32 (little-endian hosts only, like the
// rest of the wire format). A part's state (a SWARM stage) travels the same way;
// deserialize checks the part fits the shape and the parameter count, and lays it out
// with ModelParams::layout_part.
std::string serialize_state(const TrainState& s);
TrainState deserialize_state(std::string_view bytes);  // Error on any inconsistency

}  // namespace engine::train
