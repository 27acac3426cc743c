// Training-time forward and backward of Llama blocks and spans, on the CPU.
//
// Training differs from inference in two ways: activations stay f32 (no f16 KV
// cache; the whole sequence is one causal window at positions 0 .. n-1), and a
// block's forward can keep what its backward needs. A span's backward keeps only
// each block's INPUT ([n][n_embd] per block, "checkpoints") and recomputes one
// block's activations at a time on the way back, so memory is one block's
// activations plus n·n_embd per block — not the whole span's activations.
//
// Backward returns the gradient of the input hidden states (what a client or the
// previous span needs), plus, when asked, the gradients of the two norm vectors of
// each block and (full-parameter training, f32 weights) of its seven linears.
#pragma once
#include <cstdint>
#include <vector>

#include "models/llama.h"
#include "models/llama_moe.h"

namespace engine {

// LoRA (Hu et al. 2021) on one frozen linear:  y = W·x + scale · B·(A·x),
// A: [rank][cols], B: [rows][rank], scale = alpha / rank; f32, trainable.
// rank 0 means no adapter on this linear.
struct LoraLinear {
  int64_t rank = 0;
  float scale = 0.0f;
  const float* A = nullptr;
  const float* B = nullptr;
  float* dA = nullptr;  // gradients, accumulated; null when not wanted
  float* dB = nullptr;
};
struct LlamaBlockLora {
  LoraLinear q, k, v, o, gate, up, down;
};

// What a block's backward needs from its forward. n tokens:
struct LlamaBlockActs {
  int64_t n = 0;
  std::vector<float> x0;    // [n][n_embd]  block input
  std::vector<float> q, k;  // [n][q_dim], [n][kv_dim]  after rope
  std::vector<float> v;     // [n][kv_dim]
  std::vector<float> att;   // [n][q_dim]   attention output (input of Wo)
  std::vector<float> x1;    // [n][n_embd]  x0 + Wo·att (input of the FFN half)
  std::vector<float> g, u;  // [n][n_ff]    gate and up projections (before silu)
  // With LoRA, or keep_linear_inputs (weight gradients need the linears' inputs):
  std::vector<float> h1, h2;  // [n][n_embd]  normed inputs of q/k/v and of gate/up
  std::vector<float> a;       // [n][n_ff]    input of down
  std::vector<float> ax[7];   // [n][rank]    A·x of q, k, v, o, gate, up, down (LoRA only)
  MoeActs moe;                // mixture-of-experts blocks: routing and each expert's activations (then g, u,
                              // a stay empty)
  // Set by the caller before the forward when the backward will want weight
  // gradients: h1, h2, a are then kept (3 more [n][·] buffers per block).
  bool keep_linear_inputs = false;
};

// Gradients of a block's trainable tensors (accumulated, +=). A null pointer (or an
// empty vector) means "not wanted".
struct LlamaBlockGrads {
  std::vector<float> attn_norm, ffn_norm;  // [n_embd] each (used when the pointers below are null)
  // Full-parameter training: the same gradients into caller-owned memory (e.g. a
  // flat gradient vector). The norm pointers take precedence over the vectors.
  float* d_attn_norm = nullptr;  // [n_embd]
  float* d_ffn_norm = nullptr;   // [n_embd]
  // Weight gradients of the linears, laid out like the weights [rows][cols]:
  //   dW += Σ_t dy[t] ⊗ x[t]. Need the forward's acts with keep_linear_inputs.
  float* dwq = nullptr;      // [q_dim][n_embd]
  float* dwk = nullptr;      // [kv_dim][n_embd]
  float* dwv = nullptr;      // [kv_dim][n_embd]
  float* dwo = nullptr;      // [n_embd][q_dim]
  float* dw_gate = nullptr;  // [n_ff][n_embd]
  float* dw_up = nullptr;    // [n_ff][n_embd]
  float* dw_down = nullptr;  // [n_embd][n_ff]
  MoeGrads moe = {};         // mixture-of-experts blocks: router and experts (in place of the three above)
  bool wants_weights() const { return dwq || dwk || dwv || dwo || dw_gate || dw_up || dw_down || moe.any(); }
};

// x [n][n_embd] in place, tokens at positions 0 .. n-1, f32 throughout.
// With `acts`, keeps the activations for llama_block_backward.
void llama_block_forward_train(const LlamaHParams& hp, const LlamaBlockWeights& w, float* x, int64_t n,
                               ThreadPool& pool, LlamaBlockActs* acts = nullptr, const LlamaBlockLora* lora = nullptr);

// dx [n][n_embd]: on entry the gradient of the block's output, on return that of
// its input. `grads`, when given, is accumulated into (see LlamaBlockGrads).
// With `lora` (the same as the forward's), its dA/dB are accumulated.
void llama_block_backward(const LlamaHParams& hp, const LlamaBlockWeights& w, const LlamaBlockActs& acts, float* dx,
                          ThreadPool& pool, LlamaBlockGrads* grads = nullptr, const LlamaBlockLora* lora = nullptr);

// Deep prompt tuning (Petals' deep_ptune): before each block blk of the span, the
// first n_prefix rows of the hidden states get a per-block trainable prompt added,
//   x[0..P) += prompts[blk - a]          prompts: [(b-a)][P][n_embd]
// so its gradient is the gradient of that block's input rows 0..P-1:
//   grad[blk - a] += dx_in(blk)[0..P)    grad: same shape, accumulated (may be null).
struct DeepPrompts {
  const float* prompts = nullptr;
  int64_t n_prefix = 0;
  float* grad = nullptr;
};

// Blocks [a, b) of `m` on x [n][n_embd] in place (training forward). When
// `checkpoints` is given it receives each block's input (after its deep prompt is
// added): [(b-a)][n][n_embd]. `lora`, when given, has b-a entries.
void llama_span_forward_train(const LlamaModel& m, int64_t a, int64_t b, float* x, int64_t n, ThreadPool& pool,
                              std::vector<float>* checkpoints = nullptr, const DeepPrompts* deep = nullptr,
                              const LlamaBlockLora* lora = nullptr);

// dx [n][n_embd]: gradient of the span's output on entry, of its input on return,
// given the checkpoints saved by llama_span_forward_train. Recomputes one block at
// a time. `grads`, when given, holds b-a entries (sized by the callee if empty).
// `deep` (the same prompts as the forward) receives the deep-prompt gradients.
// `lora`: b-a entries (blocks a..b-1), as for the forward; receives dA, dB.
void llama_span_backward(const LlamaModel& m, int64_t a, int64_t b, const std::vector<float>& checkpoints, float* dx,
                         int64_t n, ThreadPool& pool, std::vector<LlamaBlockGrads>* grads = nullptr,
                         const DeepPrompts* deep = nullptr, const LlamaBlockLora* lora = nullptr);

// Convenience for a stateless server: the span's input in, its input gradient out
// (forward to rebuild checkpoints, then backward). `deep` as for the span's backward.
void llama_span_backward_from_input(const LlamaModel& m, int64_t a, int64_t b, const float* x_in, float* dx,
                                    int64_t n, ThreadPool& pool, const DeepPrompts* deep = nullptr);

// The server's stateless training RPCs on a batch of B sequences of n tokens each
// (each its own causal window at positions 0..n-1). `prompts` [(b-a)][P][n_embd]
// or null (P = 0). Small models (n_embd <= 512) run the sequences in parallel,
// each on one thread; larger ones one at a time with parallel ops.
//   forward:  x [B][n][n_embd] in place.
//   backward: x_in [B][n][n_embd] the span's inputs; dx [B][n][n_embd] gradient of
//             its outputs in, of its inputs out; prompt_grad (same shape as prompts,
//             may be null) accumulates the sum over the batch, in sequence order.
void llama_span_forward_batch(const LlamaModel& m, int64_t a, int64_t b, float* x, int64_t B, int64_t n,
                              const float* prompts, int64_t P, ThreadPool& pool);
void llama_span_backward_batch(const LlamaModel& m, int64_t a, int64_t b, const float* x_in, float* dx, int64_t B,
                               int64_t n, const float* prompts, int64_t P, float* prompt_grad, ThreadPool& pool);

}  // namespace engine
