// Matrix products with weights in any storage format (F32, F16, BF16, Q8_0, Q6_K).
//
//   matmul:            Y[t][r]  = Σ_c W[r][c] · X[t][c]     X [n_tok][cols], Y [n_tok][rows]
//   matmul_add:        Y[t][r] += Σ_c W[r][c] · X[t][c]     (residual add fused into the product)
//   matmul_transposed: dX[t][c] = Σ_r dY[t][r] · W[r][c]    dY [n_tok][rows], dX [n_tok][cols]
//
// All activations are f32, row-major. n_tok == 1 (decode) is a matrix-vector
// product bound by memory bandwidth: weights are streamed once, converted in
// registers. n_tok >= a small threshold (prefill) is compute-bound: on AVX2, F16
// and BF16 rows are used as stored by a dot-product micro-kernel against the
// activations rounded to f16 once; other types (and the AVX-512 family) convert
// panels of weights to f32 into a cache-resident buffer for a register-blocked
// FMA micro-kernel.
//
// Numerics: F32/F16/BF16 accumulate in f32 (float FMA chains, several partial
// sums), so results match a double-precision reference to ~1e-6 relative of
// Σ|w·x| — of the activations as given, or, for the AVX2 F16/BF16 product from 8
// tokens on, of the activations rounded to f16 (as llama.cpp rounds them for its
// F16 products: at most 2^-11 ≈ 4.9e-4 relative each, so at most that of Σ|w·x|,
// and far less on average as the errors cancel; a product whose activations exceed
// f16's range, 65504, takes the f32 path instead). F32 weights (matmul,
// matmul_add) accumulate exactly as llama.cpp's CPU backend does
// (cpu/matmul_ggml.h), on every kernel family. Q8_0 and Q6_K matrix-vector
// products (n_tok below the GEMM threshold) quantize
// each 32-value block of x to int8 with an f32 scale (d = max|x|/127, as
// llama.cpp does for its Q8_0 dot products) and use exact integer dot products:
// the only extra error is x's rounding, |Δy| ≤ Σ_blocks (d_x/2)·Σ|w|, typically
// ~0.3% of Σ|w·x|. Q8_0 and Q6_K GEMM (prefill) dequantize weights to f32 instead and
// has no activation rounding.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/dtype.h"
#include "core/thread_pool.h"

namespace engine::cpu {

// A weight matrix [rows = out features][cols = in features], row-major, each row
// stored in `type`; cols is a multiple of the type's block size; row r starts at
// (const char*)data + r * row_bytes (row_bytes >= dtype_row_bytes(type, cols)).
struct WeightView {
  DType type;
  int64_t rows;
  int64_t cols;
  const void* data;
  size_t row_bytes;
};

void matmul(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool);
void matmul_add(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool);
void matmul_transposed(const WeightView& w, const float* dy, int64_t n_tok, float* dx, ThreadPool& pool);

// wt [cols][rows] = Wᵀ of an F32 W [rows][cols] (training's dX = dY·W runs as a GEMM on it).
void transpose_f32(const WeightView& w, float* wt, ThreadPool& pool);

// The kernel family in use: "avx512", "avx2" or "scalar" — the best the CPU
// supports, or a lower one forced with the environment variable
// ENGINE_CPU=scalar|avx2 (read once, at first use).
const char* kernel_name();

// Tests and benchmarks: force a family ("scalar", "avx2", "avx512"); returns false
// (and changes nothing) if the CPU cannot run it or the name is unknown. Not
// thread-safe with concurrent matmuls.
bool set_kernel_family(const char* name);

}  // namespace engine::cpu
