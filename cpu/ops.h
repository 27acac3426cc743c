// Element-wise and attention ops of the Llama block on the CPU, forward
// (backward lands beside each forward when training needs it).
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

// Causal grouped-query attention against a KV cache.
//   q:   [n][n_head][hd] f32      queries of tokens at positions pos0 .. pos0+n-1
//   k,v: [n_ctx][n_head_kv][hd]   the cache in `kv_type` (F32 or F16), filled up to pos0+n
//   out: [n][n_head][hd] f32
// Query head h reads KV head h / (n_head / n_head_kv). Per (token, head) one row
// of n_keys scores is held, never an n×n matrix. With an F16 cache the numerics
// follow llama.cpp's (q and the softmax weights are rounded to f16 for the two
// products, accumulation is f32), so logits agree with it closely.
void attention(const float* q, const void* k, const void* v, DType kv_type, float* out, int64_t n, int64_t pos0,
               int64_t n_head, int64_t n_head_kv, int64_t hd, ThreadPool& pool);

// a[i] = silu(g[i]) * u[i],  silu(x) = x / (1 + e^-x). a may alias g.
void swiglu(const float* g, const float* u, float* a, int64_t n);

// x[i] += y[i]
void add_inplace(float* x, const float* y, int64_t n);

}  // namespace engine::cpu
