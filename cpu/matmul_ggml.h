// llama.cpp's CPU arithmetic (ggml's kernels as its x86 AVX2 build runs them),
// reproduced bit for bit, so our inference forward gives llama.cpp's logits
// exactly (tests/unit/models/test_llama_oracle.cpp: every row of the three
// stories260K prompts equal, bench/NOTES.md "Logits against llama.cpp"). Each
// function names the ggml kernel it follows; the orders that matter are:
//
//   hsum8(a)   = ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7))   tinyBLAS hsum, soft_max's
//   reduce8(a) = ((a0+a4) + (a1+a5)) + ((a2+a6) + (a3+a7))   GGML_F32x8_REDUCE (hadd)
//   lanes:     an 8-lane accumulator takes elements i ≡ l (mod 8) in order, one FMA each
//   vec_dot:   4 such accumulators over steps of 32 (element i → accumulator (i/8)%4),
//              combined as (acc0+acc2) + (acc1+acc3), then reduce8; the tail after the
//              last whole step of 32 is added one product at a time (f32, or f64 for f16)
//
// Two implementations: AVX2 intrinsics (matmul_ggml_avx2.cpp) and a scalar one with
// std::fma in the same order (matmul_ggml.cpp); they agree bit for bit. The scalar one
// runs when the kernel family is "scalar" (cpu/matmul.h) or the CPU lacks AVX2.
#pragma once
#include <cstdint>

#include "cpu/matmul.h"

namespace engine::cpu::ggml {

struct Kernels {
  // F32 weights, rows [r0, r1) of Y [n_tok][w.rows] = X [n_tok][w.cols] · Wᵀ (add: Y +=).
  // n_tok ≥ 2 and cols % 8 == 0: llamafile_sgemm's tinyBLAS (one 8-lane accumulator per
  // output, hsum8); otherwise ggml_vec_dot_f32 (vec_dot order, f32 tail).
  void (*f32_rows)(const WeightView& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok, float* y, bool add);
  // One (query, head) row of attention against an f16 cache, as llama.cpp without flash
  // attention computes it: kq = mul_mat(k, q) with q rounded to f16, soft_max_ext (scale,
  // causal mask, ggml_v_expf, Σ in f64 of hsum8 per 8 keys, × (float)(1/Σ)), the weights
  // rounded to f16, kqv = mul_mat(v, kq). batch (the ubatch has ≥ 2 tokens) selects
  // tinyBLAS for both products (kq only when hd % 8 == 0); otherwise ggml_vec_dot_f16
  // (vec_dot order, f64 tail). The key count is llama.cpp's padded one (a multiple of 32):
  // padded keys have weight 0 and change no sum, so only n_keys are read.
  //   q: hd floats, already f16 values;  k, v: key j at k + j·kv_stride (f16)
  //   scratch: at least scratch_floats(n_keys, hd) floats
  void (*attend_f16)(const float* q, const uint16_t* k, const uint16_t* v, int64_t kv_stride, int64_t n_keys,
                     int64_t hd, float scale, bool batch, float* out, float* scratch);
  // a[i] = silu(g[i]) · u[i] for one row of n: ggml_vec_silu_f32 (whole vectors of 8 with
  // ggml_v_expf: x / (1 + e^(0−x)); the last n % 8 with libm expf), then ggml_vec_mul.
  void (*swiglu_row)(const float* g, const float* u, float* a, int64_t n);
};

inline int64_t scratch_floats(int64_t n_keys, int64_t hd) { return (n_keys + 8) + 32 * hd; }

extern const Kernels kScalar;
extern const Kernels kAvx2;  // only where cpu_features().avx2

// The implementation for the active kernel family (scalar, or AVX2 for avx2/avx512).
const Kernels& kernels();

}  // namespace engine::cpu::ggml
