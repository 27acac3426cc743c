// Prompt tuning: the base model stays frozen; a few trainable vectors steer it.
//   ptune:      P trainable "virtual token" embeddings prepended to the input
//               (Lester et al. 2021); only the client holds them.
//   deep-ptune: a trainable P-row prompt per block, added to the first P hidden
//               rows before that block (Petals' deep_ptune / P-tuning v2); in the
//               swarm each span's prompts travel with the request.
// The sequence a model sees is [P prefix rows][tokens], positions 0 .. P+n-1, so
// the prefix is part of the causal context of every token and scores no loss.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "models/llama.h"
#include "train/cross_entropy.h"
#include "train/optimizer.h"

namespace engine::train {

enum class PromptMode { PTune, DeepPTune };
const char* prompt_mode_name(PromptMode m);
PromptMode parse_prompt_mode(const std::string& s);  // "ptune" | "deep-ptune"; throws Error otherwise

struct PromptAdapter {
  PromptMode mode = PromptMode::PTune;
  int64_t n_prefix = 0, n_embd = 0, n_layer = 0;
  // All trainable numbers in one flat vector (one optimizer state):
  //   ptune:      [P][n_embd]             the input prefix
  //   deep-ptune: [n_layer][P][n_embd]    one prompt per block (the input rows are 0)
  std::vector<float> params;

  int64_t size() const { return (int64_t)params.size(); }
  // The prefix rows fed to block 0: [P][n_embd].
  std::vector<float> input_rows() const;
  // Deep prompts of blocks [first, ...): a pointer into params, or null for ptune.
  const float* deep(int64_t first_block) const;

  // Starts from the embeddings of P random vocabulary tokens (a scale the model
  // knows, as Lester et al. recommend); deep-ptune puts them in block 0's prompt
  // and zeros elsewhere, so both modes start as the same function.
  static PromptAdapter init(const LlamaModel& m, PromptMode mode, int64_t n_prefix, uint64_t seed);

  // GGUF: general.type = "adapter", adapter.type, adapter.n_prefix, the base model's
  // n_embd and n_layer, tensor "prompt.params"; with `opt`, the optimizer state too
  // ("optim.m", "optim.v", train.step) so a run resumes exactly. Atomic write.
  void save(const std::string& path, const std::string& base_name, const AdamWState* opt) const;
  // Checks the adapter fits `hp`. `opt`, when given, receives the saved optimizer
  // state (empty moments when the file has none).
  static PromptAdapter load(const std::string& path, const LlamaHParams& hp, AdamWState* opt = nullptr);
};

// One training sequence: inputs [L] and targets [L] (targets[i] follows inputs[i]).
struct Window {
  std::vector<int32_t> inputs, targets;
};

// Σ of cross-entropy over the windows' targets with the adapter in place. With
// `grad` (sized like params), accumulates the gradient of grad_scale·Σloss.
// Each window: embed → prefix → span forward with checkpoints → fused head loss →
// span backward (recomputing one block at a time) → prefix/prompt gradients.
CrossEntropyResult prompt_loss_and_grad(const LlamaModel& m, const LmHead& head, const PromptAdapter& ad,
                                        const std::vector<Window>& windows, float grad_scale, float* grad,
                                        ThreadPool& pool);

// generate / chat with an adapter: the prefix (and, for deep-ptune, each block's
// prompt) is run into the KV cache first; then tokens are evaluated as LocalRunner
// does. n_past() and n_ctx() count the prefix.
class PromptRunner {
 public:
  PromptRunner(const LlamaModel& m, const PromptAdapter& ad, int64_t n_ctx, ThreadPool& pool,
               DType kv_type = DType::F16);
  const std::vector<float>& eval(const std::vector<int32_t>& tokens);
  int64_t n_past() const { return cache_.n_past; }
  int64_t n_ctx() const { return cache_.n_ctx; }

 private:
  const LlamaModel& model_;
  ThreadPool& pool_;
  KVCache cache_;
  std::vector<float> hidden_, logits_;
};

}  // namespace engine::train
