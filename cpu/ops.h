// Element-wise and attention ops of the Llama block on the CPU, forward
// and backward, side by side: each op's backward is in the section at the end.
// Shapes are written [rows][cols], row-major, f32 unless said otherwise.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace engine::cpu {

// y[t] = x[t] / rms(x[t]) * w,   x, y: [n][d], w: [d]. y may alias x.
// The mean square is summed in double and rounded to float before the square root, as ggml does.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps);

enum class RopeLayout {
  Adjacent,  // GGML "normal" / llama2.c: rotate pairs (2i, 2i+1)
  NeoX,      // GPT-NeoX: rotate pairs (i, i + n_rot/2)
};
// Rotates the first n_rot dims of each head in place. x: [n][n_heads][head_dim];
// token t sits at position pos[t]. theta_i = pos * base^(-2i/n_rot).
void rope(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos,
          float freq_base, RopeLayout layout);

// rope with llama.cpp's arithmetic (ggml_compute_forward_rope_f32 as its CPU build
// runs it): theta_scale = powf(base, -2/n_rot), the angles of a token in float as
// theta_0 = pos, theta_{i+1} = theta_i · theta_scale, cosf/sinf, and the rotation with
// one product fused: x0' = fma(x0, cos, −x1·sin), x1' = fma(x0, sin, x1·cos). Within
// ~1e-6 of rope() (relative to |x|) at short positions; the float angle recurrence
// loses ~i ulp of theta_i, so at positions of thousands the two differ by 1e-4..2e-3
// (n_rot 64..128). The inference forward uses this one, to give llama.cpp's logits
// (bench/NOTES.md); training keeps rope(), whose backward is its exact transpose.
void rope_ggml(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos,
               float freq_base, RopeLayout layout);

// Causal grouped-query attention against a KV cache.
//   q:   [n][n_head][hd] f32      queries of tokens at positions pos0 .. pos0+n-1
//   k,v: [n_ctx][n_head_kv][hd]   the cache in `kv_type` (F32 or F16), filled up to pos0+n
//   out: [n][n_head][hd] f32
// Query head h reads KV head h / (n_head / n_head_kv). Per (token, head) one row
// of n_keys scores is held, never an n×n matrix. With an F16 cache the arithmetic
// is llama.cpp's, bit for bit (no flash attention; cpu/matmul_ggml.h): q and the
// softmax weights rounded to f16 for the two products, its summation orders (which
// differ between a batch of n ≥ 2 tokens and a single one) and its vectorised expf.
void attention(const float* q, const void* k, const void* v, DType kv_type, float* out, int64_t n, int64_t pos0,
               int64_t n_head, int64_t n_head_kv, int64_t hd, ThreadPool& pool);

// a[i] = silu(g[i]) * u[i],  silu(x) = x / (1 + e^-x). a may alias g.
void swiglu(const float* g, const float* u, float* a, int64_t n);

// swiglu with llama.cpp's arithmetic, per row of n_ff (g, u, a: [n][n_ff]): silu from
// ggml's vectorised expf (≤ 2 ulp) for whole groups of 8, libm's for the row's last
// n_ff % 8, as ggml_vec_silu_f32. The inference forward uses this one.
void swiglu_ggml(const float* g, const float* u, float* a, int64_t n, int64_t n_ff);

// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

// ---- backward ---------------------------------------------------------------------
// Each op's backward, in llm.c's convention: gradients of inputs are ACCUMULATED
// (+=) so that a tensor read by two consumers (the residual stream) sums its
// gradients without a temporary; outputs' gradients are read only. A null
// gradient pointer means "not wanted". All f32; sums that run over a row are
// kept in double so a row of thousands does not lose the small terms.
//
// Residual adds need no backward of their own: for x_out = x_in + f(x_in) the
// gradient of x_in is dx_out + (f's backward of dx_out), i.e. add_inplace.

// Embedding lookup h[t] = table[tokens[t]]: the gradient is sparse, only the rows
// of tokens that occur.  dh: [n][d]; dtable: [n_vocab][d], rows tokens[t] += dh[t].
void embedding_backward(const int32_t* tokens, const float* dh, float* dtable, int64_t n, int64_t d);

// rmsnorm: y = x·s·w with s = 1/sqrt(mean(x²)+eps).
//   x, dy, dx: [n][d]; w, dw: [d].
//   dx += s·(w⊙dy) − s³/d · x · Σ_i(w_i·dy_i·x_i);   dw += Σ_t dy·x·s.
void rmsnorm_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t n, int64_t d,
                      float eps);

// rope is a rotation per pair, so its backward is the inverse rotation (by −θ)
// applied to the gradient, in place. Same shapes and arguments as rope().
void rope_backward(float* dx, int64_t n, int64_t n_head, int64_t head_dim, int64_t n_rot, const int32_t* pos,
                   float freq_base, RopeLayout layout);

// Backward of causal GQA attention with f32 keys and values (training keeps its
// activations in f32; the f16 cache is an inference-time saving).
//   q, dq:   [n][n_head][hd]          queries at positions pos0 .. pos0+n-1
//   k,v,dk,dv: [pos0+n][n_head_kv][hd] keys/values of positions 0 .. pos0+n-1
//   dout:    [n][n_head][hd]
// The softmax row of each (token, head) is recomputed from q and k (flash-attention
// style: no n×n matrix is stored), then with P the probabilities and dP_j = dout·v_j:
//   dv_j += P_j·dout,  dS_j = P_j·(dP_j − Σ_k P_k dP_k),
//   dq += scale·Σ_j dS_j·k_j,  dk_j += scale·dS_j·q.
// Threads split the KV heads, so dk/dv rows are written by one thread only.
void attention_backward(const float* dout, const float* q, const float* k, const float* v, float* dq, float* dk,
                        float* dv, int64_t n, int64_t pos0, int64_t n_head, int64_t n_head_kv, int64_t hd,
                        ThreadPool& pool);

// Weight gradient of a trainable f32 linear y = W·x (LoRA's A and B, llm.c's
// matmul_backward dweight):  dW [rows][cols] += scale · Σ_t dy[t] ⊗ x[t],
//   dy: [n][rows], x: [n][cols]. Threads split the rows of dW.
void linear_backward_weight(const float* dy, const float* x, float* dw, int64_t n, int64_t rows, int64_t cols,
                            float scale, ThreadPool& pool);

// swiglu: a = silu(g)·u.  dg += da·u·silu'(g), du += da·silu(g), with
// silu'(g) = σ(g)·(1 + g·(1 − σ(g))).  All [n]; dg, du must not alias da.
void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du, int64_t n);

}  // namespace engine::cpu
