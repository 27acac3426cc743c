// The mixture-of-experts feed-forward of a Mixtral block (llama.cpp's
// build_moe_ffn for the llama architecture: softmax gating, renormalised top-k):
//   p   = softmax(R·h)                      over all n_expert experts
//   S   = the n_expert_used largest p       (ties: the lower expert index)
//   w_s = p_s / Σ_{j∈S} p_j                 for s ∈ S (Mixtral's norm_w)
//   out = Σ_{s∈S} w_s · Down_s(silu(Gate_s·h) · Up_s·h)
// Tokens are grouped by expert so each expert runs one batched product.
#pragma once
#include <cstdint>
#include <vector>

#include "models/llama.h"

namespace engine {

struct MoeRouting {
  int64_t n = 0, k = 0;
  std::vector<float> probs;     // [n][n_expert]
  std::vector<int32_t> expert;  // [n][k], most probable first
  std::vector<float> weight;    // [n][k], renormalised
  // rows_of[e]: the slots t·k + s routed to expert e, in token order.
  std::vector<std::vector<int64_t>> rows_of;
};

MoeRouting moe_route(const LlamaHParams& hp, const cpu::Linear& router, const float* h, int64_t n, ThreadPool& pool);

// out [n][n_embd] = the mixture on the normed FFN input h [n][n_embd] (inference:
// llama.cpp's silu). `tap` sees each expert's input and activation (BlockTap).
void moe_ffn_forward(const LlamaHParams& hp, const LlamaBlockWeights& w, const float* h, int64_t n, float* out,
                     ThreadPool& pool, const BlockTapFn& tap = nullptr);

// What the backward needs from the training forward.
struct MoeActs {
  MoeRouting r;
  std::vector<float> g, u;  // [n·k][n_ff]   gate and up projections of slot t·k+s
  std::vector<float> y;     // [n·k][n_embd] expert outputs before weighting
};

// Training forward (f32 silu, as the dense training block): out as moe_ffn_forward.
void moe_ffn_forward_train(const LlamaHParams& hp, const LlamaBlockWeights& w, const float* h, int64_t n, float* out,
                           ThreadPool& pool, MoeActs* acts);

// Gradients of the mixture's weights (accumulated, +=; null: not wanted), laid out
// as the weights: router [n_expert][n_embd], per expert gate/up [n_ff][n_embd],
// down [n_embd][n_ff]. The expert vectors are empty or hold n_expert pointers.
struct MoeGrads {
  float* d_router = nullptr;
  std::vector<float*> d_gate, d_up, d_down;
  bool any() const { return d_router || !d_gate.empty() || !d_up.empty() || !d_down.empty(); }
};

// dh [n][n_embd] = ∂L/∂h given dout = ∂L/∂out (overwritten, not accumulated).
// Unchosen experts get no gradient (the top-k choice is piecewise constant).
void moe_ffn_backward(const LlamaHParams& hp, const LlamaBlockWeights& w, const float* h, const MoeActs& acts,
                      const float* dout, float* dh, ThreadPool& pool, const MoeGrads* grads = nullptr);

}  // namespace engine
