// The Llama block's element-wise, normalisation, attention and dense-linear ops
// as CUDA kernels, forward and backward side by side (llm.c style). They mirror
// cpu/ops.h and cpu/linear.h op for op: same shapes, same layouts, same
// conventions, so a block can run on either backend.
//
// Conventions (as cpu/ops.h):
// - Every pointer is DEVICE memory; shapes are [rows][cols] row-major, f32 unless said.
// - Backward ops ACCUMULATE (+=) into input gradients; a null gradient pointer
//   means "not wanted". Output gradients are read only.
// - Every op is asynchronous on the given stream (or the context's stream) and
//   checks its launch (CUDA_CHECK_LAUNCH); errors throw engine::Error.
// - Integer arrays (tokens, positions) are device int32.
//
// Numerics differ from the CPU only in summation order (f32 tree reductions
// instead of double row sums; attention's online softmax), except where noted:
// dense F16/BF16 linears round the activations to the weight's type for cuBLAS.
#pragma once
#include <cstdint>

#include "core/dtype.h"
#include "cpu/ops.h"  // cpu::RopeLayout (header only: engine_cuda does not link engine_cpu)
#include "cuda/device.h"

namespace engine::cuda {

using cpu::RopeLayout;

// ---- embedding -------------------------------------------------------------------
// out[t][:] = table[tokens[t]][:] converted to f32.  table: [n_vocab][d] in F32, F16,
// BF16 or Q8_0 (d a multiple of 32), rows of dtype_row_bytes(type, d) bytes.
// Token ids must be in range (the caller validates them on the host, as the CPU does).
void embedding(const void* table, DType type, const int32_t* tokens, float* out, int64_t n, int64_t d,
               cudaStream_t s);
// dtable [n_vocab][d] (f32): rows tokens[t] += dh[t]. Atomic adds (a token may repeat).
void embedding_backward(const int32_t* tokens, const float* dh, float* dtable, int64_t n, int64_t d, cudaStream_t s);

// ---- rmsnorm ---------------------------------------------------------------------
// y[t] = x[t] · s_t · w,  s_t = 1/sqrt(mean(x[t]²) + eps).  x, y: [n][d], w: [d]; y may alias x.
// One block per row; the sum of squares is a f32 tree reduction.
void rmsnorm(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps, cudaStream_t s);
// dx += s·(w⊙dy) − s³/d · x · Σ_i(w_i·dy_i·x_i);   dw += Σ_t dy·x·s   (dw by atomic adds per row)
void rmsnorm_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t n, int64_t d,
                      float eps, cudaStream_t s);

// ---- rope ------------------------------------------------------------------------
// In place on x [n][n_heads][head_dim]; the first n_rot dims of each head rotate,
// pairs (2i, 2i+1) (Adjacent) or (i, i + n_rot/2) (NeoX); θ_i = pos[t]·base^(−2i/n_rot),
// θ in double precision as the CPU computes it. pos: device int32 [n].
void rope(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos, float freq_base,
          RopeLayout layout, cudaStream_t s);
// The inverse rotation (by −θ) of the gradient, in place: rope's transpose.
void rope_backward(float* dx, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos,
                   float freq_base, RopeLayout layout, cudaStream_t s);

// ---- swiglu, residual ------------------------------------------------------------
// a[i] = silu(g[i])·u[i]; a may alias g.
void swiglu(const float* g, const float* u, float* a, int64_t n, cudaStream_t s);
// dg += da·u·σ(g)(1 + g(1−σ(g))),  du += da·silu(g).
void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du, int64_t n, cudaStream_t s);
// x[i] += y[i]  (residual add; also the residual's backward)
void add_inplace(float* x, const float* y, int64_t n, cudaStream_t s);

// ---- attention -------------------------------------------------------------------
// Causal grouped-query attention against a KV cache (as cpu::attention):
//   q:   [n][n_head][hd] f32        queries of tokens at positions pos0 .. pos0+n-1
//   k,v: [n_ctx][n_head_kv][hd]     the cache, F32 or F16, filled up to pos0+n
//   out: [n][n_head][hd] f32
// Query head h reads KV head h / (n_head / n_head_kv). hd <= 256.
// Flash-attention style: a block holds the queries of one KV head's group for a
// few tokens, streams tiles of 32 keys/values through shared memory and keeps an
// online softmax (running max and sum) per query; no n×n scores in memory.
// Decode (few queries, long cache) also splits the keys across blocks and
// combines the partial softmaxes (flash-decoding); partials live in ctx's workspace.
// With an F16 cache q is rounded to f16 before the scores (as the CPU does); the
// probabilities are not (the CPU rounds them; tolerance ~1e-3 relative).
void attention(Context& ctx, const float* q, const void* k, const void* v, DType kv_type, float* out, int64_t n,
               int64_t pos0, int64_t n_head, int64_t n_head_kv, int64_t hd);

// Backward of causal GQA attention with f32 K/V (as cpu::attention_backward):
//   q, dq, dout: [n][n_head][hd];  k, v, dk, dv: [pos0+n][n_head_kv][hd].   dq, dk, dv += .
// Three passes, each recomputing scores from q and k (no n×n matrix stored):
//   1. per (token, head): row max m, sum l (→ lse = m + log l) and D = Σ_j P_j·(dout·v_j)
//      (= dout·o), kept in ctx's workspace: 2·n·n_head floats.
//   2. dq: per (token, head), keys streamed:  dq += scale·Σ_j P_j(dP_j − D)·k_j
//   3. dk, dv: per (key, KV head), the queries of its group streamed:
//      dv_j += Σ P_j·dout,  dk_j += scale·Σ P_j(dP_j − D)·q
// so every gradient row is written by one warp (no atomics, deterministic).
void attention_backward(Context& ctx, const float* dout, const float* q, const float* k, const float* v, float* dq,
                        float* dk, float* dv, int64_t n, int64_t pos0, int64_t n_head, int64_t n_head_kv, int64_t hd);

// ---- dense linears (cuBLAS) ------------------------------------------------------
// A dense weight on the device: [rows][cols] row-major, F32, F16 or BF16.
struct DenseWeight {
  DType type = DType::F32;
  int64_t rows = 0, cols = 0;
  const void* data = nullptr;
};
// Y [n][rows] = X [n][cols] · Wᵀ  (beta = 0: Y is overwritten).
// cublasGemmEx with f32 compute. F32 weights: SGEMM-exact f32 (no TF32). F16/BF16
// weights: X is converted to the weight's type in ctx's workspace first (cuBLAS
// has no mixed f16×f32 GEMM), then the product accumulates in f32 into f32 Y.
void linear(Context& ctx, const DenseWeight& w, const float* x, int64_t n, float* y);
// dX [n][cols] = dY [n][rows] · W  (overwritten; as cpu::matmul_transposed).
void linear_backward_input(Context& ctx, const DenseWeight& w, const float* dy, int64_t n, float* dx);
// dW [rows][cols] += scale · Σ_t dy[t] ⊗ x[t]  (f32 trainable weights: LoRA's A and B;
// as cpu::linear_backward_weight).  dy: [n][rows], x: [n][cols].
void linear_backward_weight(Context& ctx, const float* dy, const float* x, float* dw, int64_t n, int64_t rows,
                            int64_t cols, float scale);

// f32 → f16 / bf16 (round to nearest even) and back, element-wise; for uploads,
// the KV cache and the linears' activation conversion.
void convert_f32(const float* x, void* y, DType to, int64_t n, cudaStream_t s);
void convert_to_f32(const void* x, DType from, float* y, int64_t n, cudaStream_t s);

// Fills n floats with a value (tests poison outputs with NaN).
void fill(float* x, float value, int64_t n, cudaStream_t s);

}  // namespace engine::cuda
