// The LM head fused with cross-entropy over the vocabulary, forward and backward.
//
//   logits[t] = Wout · rmsnorm(h[t])·norm          Wout: [n_vocab][n_embd], any dense format
//   loss      = Σ_t −log softmax(logits[t])[target[t]]   (targets < 0 are skipped)
//   dh[t]    += scale · rmsnorm_backward(Woutᵀ · (softmax(logits[t]) − onehot(target[t])))
//
// Tokens are processed `chunk` at a time, so only [chunk][n_vocab] logits (reused
// in place as their gradient) exist at once: a 32000-wide vocabulary over a
// 2048-token sequence never materialises 2048 × 32000 floats.
#pragma once
#include <cstdint>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/matmul.h"
#include "models/llama.h"

namespace engine::train {

struct LmHead {
  int64_t n_embd = 0, n_vocab = 0;
  float eps = 1e-5f;
  const float* norm = nullptr;  // [n_embd]
  cpu::WeightView out{};        // [n_vocab][n_embd]
  std::vector<float> norm_owned;

  // The model's head: output_norm.weight and output.weight (or the tied token
  // embedding), viewed in the model's mapping.
  static LmHead from_model(const LlamaModel& m);
};

struct CrossEntropyResult {
  double loss_sum = 0;  // Σ over scored tokens of −log p(target)
  int64_t n_scored = 0;
};

// Gradients of the head's own parameters (full-parameter training; the head must
// then be f32 or any dense format — only its values are read). Accumulated, scaled
// like dhidden; null = not wanted:
//   out  += Σ_t dlogits[t] ⊗ hn[t]      [n_vocab][n_embd]   (hn = rmsnorm(h)·norm)
//   norm += rmsnorm_backward's dw        [n_embd]
struct LmHeadGrads {
  float* out = nullptr;
  float* norm = nullptr;
};

// hidden, dhidden: [n][n_embd]; targets: [n]. dhidden may be null (loss only);
// otherwise the gradient of scale·loss_sum is ACCUMULATED into it. `head_grads`
// (may be null) receives the head's parameter gradients, also of scale·loss_sum.
CrossEntropyResult head_cross_entropy(const LmHead& head, const float* hidden, const int32_t* targets, int64_t n,
                                      float scale, float* dhidden, ThreadPool& pool, int64_t chunk = 64,
                                      const LmHeadGrads* head_grads = nullptr);

}  // namespace engine::train
