// Local fine-tuning of adapters (ptune, deep-ptune, LoRA): data windows, the training loop
// (AdamW, warm-up + cosine, clipping), held-out evaluation. The command
// (commands/finetune.cpp) only parses flags, prints progress and writes files.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "models/llama.h"
#include "models/tokenizer.h"
#include "train/adapter.h"

namespace engine::train {

// A text as one token stream, split into a training part and a held-out tail.
struct TextData {
  std::vector<int32_t> train, heldout;
  int32_t bos = -1;
  // heldout_frac of the tokens (at the end) are kept out of training.
  static TextData from_text(const Tokenizer& tok, const std::string& text, double heldout_frac);
};

// A window of `seqlen` inputs starting at `start` of `stream`: [BOS] + stream[start ..
// start+seqlen-1) predicting stream[start .. start+seqlen). Without BOS, plain shift.
Window make_window(const std::vector<int32_t>& stream, int64_t start, int64_t seqlen, int32_t bos);

// The windows of step `step`: random starts drawn from a generator seeded by
// (seed, step) alone, so a resumed or distributed run sees the same batches.
std::vector<Window> batch_for_step(const TextData& data, uint64_t seed, int64_t step, int64_t batch, int64_t seqlen);
// Non-overlapping windows over the held-out tail (at most max_windows).
std::vector<Window> heldout_windows(const TextData& data, int64_t seqlen, int64_t max_windows);

struct FinetuneConfig {
  int64_t steps = 100, batch = 4, seqlen = 64;
  int64_t warmup = -1;  // -1: steps / 10
  float lr = 1e-2f, min_lr_ratio = 0.1f, clip = 1.0f;
  AdamWConfig adam;
  uint64_t seed = 1;
  int64_t eval_every = 0;  // 0: at the start and the end only
  int64_t eval_windows = 16;
};

struct StepReport {
  int64_t step = 0, steps = 0;  // step is 1-based: steps done
  double loss = 0;              // mean over the batch's tokens
  float lr = 0, grad_norm = 0;
  int64_t tokens = 0;           // scored tokens this step
  double seconds = 0;           // this step
  double elapsed = 0;           // since the loop began
  bool has_eval = false;
  double eval_loss = 0;
};

// Σ loss of the adapter over a batch of windows, and (grad non-null) the gradient
// of grad_scale·Σloss accumulated into grad: adapter_loss_and_grad on the local
// model, or swarm_adapter_loss_and_grad through the swarm.
using LossFn = std::function<CrossEntropyResult(const Adapter& ad, const std::vector<Window>& windows,
                                                float grad_scale, float* grad)>;
LossFn local_loss(const LlamaModel& m, ThreadPool& pool);

// Mean held-out loss of the adapter.
double evaluate(const LossFn& loss, const Adapter& ad, const std::vector<Window>& windows);

// Trains `ad` from opt.t (0, or where a resumed state left off) up to cfg.steps.
// `m` gives the hyper-parameters (its blocks need not be loaded when `loss` runs
// them elsewhere). `on_step` is called after every step (and once before the
// first with step = opt.t and only the evaluation filled in).
void finetune_adapter(const LlamaModel& m, const TextData& data, Adapter& ad, AdamWState& opt,
                      const FinetuneConfig& cfg, const LossFn& loss, const std::function<void(const StepReport&)>& on_step);

}  // namespace engine::train
