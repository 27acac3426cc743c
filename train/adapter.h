// Trainable adapters on a frozen base model (which may be SpQR):
//   ptune:      P trainable "virtual token" embeddings prepended to the input
//               (Lester et al. 2021); only the client holds them.
//   deep-ptune: a trainable P-row prompt per block, added to the first P hidden
//               rows before that block (Petals' deep_ptune / P-tuning v2); in the
//               swarm each span's prompts travel with the request.
//   lora:       W + (alpha/r)·B·A on chosen linears of every block (Hu et al.
//               2021); for spans the trainer holds itself.
// With a prefix the sequence a model sees is [P prefix rows][tokens], positions
// 0 .. P+n-1: the prefix is causal context of every token and scores no loss.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "models/llama.h"
#include "models/llama_backward.h"
#include "train/cross_entropy.h"
#include "train/optimizer.h"

namespace engine::train {

enum class AdapterMode { PTune, DeepPTune, LoRA };
const char* adapter_mode_name(AdapterMode m);
AdapterMode parse_adapter_mode(const std::string& s);  // "ptune" | "deep-ptune" | "lora"; else Error

// LoRA targets, in block order: q, k, v, o, gate, up, down.
constexpr int kLoraTargets = 7;
extern const char* const kLoraTargetNames[kLoraTargets];
uint32_t parse_lora_targets(const std::string& csv);  // "q,v" → bit mask; throws Error on unknown names
std::string lora_targets_string(uint32_t mask);

struct Adapter {
  AdapterMode mode = AdapterMode::PTune;
  int64_t n_prefix = 0, n_embd = 0, n_layer = 0;
  int64_t lora_rank = 0;
  float lora_alpha = 0.0f;
  uint32_t lora_targets = 0;
  // All trainable numbers in one flat vector (one optimizer state):
  //   ptune:      [P][n_embd]             the input prefix
  //   deep-ptune: [n_layer][P][n_embd]    one prompt per block (the input rows are 0)
  //   lora:       per block, per target in order: A [r][cols], then B [rows][r]
  std::vector<float> params;

  int64_t size() const { return (int64_t)params.size(); }
  // The prefix rows fed to block 0: [P][n_embd] (empty for lora).
  std::vector<float> input_rows() const;
  // Deep prompts of blocks [first, ...): a pointer into params, or null.
  const float* deep(int64_t first_block) const;
  // LoRA views of every block (empty unless lora); `grad` (sized like params, or
  // null) gets the same layout for dA, dB.
  std::vector<LlamaBlockLora> lora_views(const LlamaHParams& hp, float* grad) const;

  // ptune/deep-ptune start from the embeddings of P random vocabulary tokens (a
  // scale the model knows, as Lester et al. recommend; deep-ptune puts them in
  // block 0's prompt, zeros elsewhere, so both start as the same function).
  // lora starts as the base model: A ~ N(0, 1/cols), B = 0.
  static Adapter init(const LlamaModel& m, AdapterMode mode, int64_t n_prefix, uint64_t seed);
  static Adapter init_lora(const LlamaModel& m, int64_t rank, float alpha, uint32_t targets, uint64_t seed);

  // GGUF: general.type = "adapter", adapter.type, adapter.n_prefix, the base model's
  // n_embd and n_layer, adapter.lora_* for lora, tensor "adapter.params"; with
  // `opt`, the optimizer state too ("optim.m", "optim.v", train.step) so a run
  // resumes exactly. Atomic write.
  void save(const std::string& path, const std::string& base_name, const AdamWState* opt) const;
  // Checks the adapter fits `hp`. `opt`, when given, receives the saved optimizer
  // state (empty moments when the file has none).
  static Adapter load(const std::string& path, const LlamaHParams& hp, AdamWState* opt = nullptr);
};

// One training sequence: inputs [L] and targets [L] (targets[i] follows inputs[i]).
struct Window {
  std::vector<int32_t> inputs, targets;
};

// Σ of cross-entropy over the windows' targets with the adapter in place. With
// `grad` (sized like params), accumulates the gradient of grad_scale·Σloss.
// Each window: embed → prefix → span forward with checkpoints → fused head loss →
// span backward (recomputing one block at a time) → adapter gradients.
CrossEntropyResult adapter_loss_and_grad(const LlamaModel& m, const LmHead& head, const Adapter& ad,
                                         const std::vector<Window>& windows, float grad_scale, float* grad,
                                         ThreadPool& pool);

// generate / chat with an adapter: the prefix (with each block's deep prompt) is
// run into the KV cache first; LoRA runs on weights merged once into f32
// (W + scale·B·A, for the adapted linears only). n_past() and n_ctx() count the prefix.
class AdapterRunner {
 public:
  AdapterRunner(const LlamaModel& m, const Adapter& ad, int64_t n_ctx, ThreadPool& pool, DType kv_type = DType::F16);
  const std::vector<float>& eval(const std::vector<int32_t>& tokens);
  int64_t n_past() const { return cache_.n_past; }
  int64_t n_ctx() const { return cache_.n_ctx; }
  // Empties the context; the prefix is run into it again.
  void reset();

 private:
  void run_prefix();
  void run_blocks(float* x, int64_t n, const Adapter* prefix_of);
  const LlamaModel& model_;
  ThreadPool& pool_;
  KVCache cache_;
  Adapter adapter_;  // a copy: the prefix is run again after reset()
  std::vector<LlamaBlockWeights> blocks_;
  std::vector<std::vector<float>> merged_;  // LoRA-merged f32 weights
  std::vector<float> hidden_, logits_;
};

}  // namespace engine::train
