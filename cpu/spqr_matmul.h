// Products with SpQR weights, computed from the packed form (no dense copy):
// activations are gathered into the stored (permuted) column order once per
// call, each group's codes are unpacked in registers and dotted with them, the
// statistics are applied once per group, and outliers are added sparsely.
//
//   y[t][r] = Σ_g scale_rg · (Σ_j code_rgj · xp[t][g,j] − zero_rg · Σ_j xp[t][g,j])  + outliers
#pragma once
#include <cstdint>

#include "core/spqr.h"
#include "core/thread_pool.h"

namespace engine::cpu {

// Y[t][r] = Σ_c W[r][c] X[t][c]: X [n_tok][cols], Y [n_tok][rows], f32.
void spqr_matmul(const SpqrLayer& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool);

// dX[t][c] = Σ_r dY[t][r] W[r][c]: the transposed product (backward passes).
void spqr_matmul_transposed(const SpqrLayer& w, const float* dy, int64_t n_tok, float* dx, ThreadPool& pool);

namespace detail {

// Everything a row kernel needs for rows [r0, r1) of one row group.
struct SpqrRowsJob {
  const SpqrLayer* w;
  int64_t r0, r1;
  const float* ss;  // [n_groups] second-level stats of the row group, decoded to f32
  const float* sz;
  const float* zs;
  const float* zz;
  const float* xp;    // [n_tok][n_groups · groupsize] gathered activations, zero-padded
  const float* gsum;  // [n_tok][n_groups] their group sums
  int64_t n_tok;
  float* y;           // [n_tok][rows]; the kernel writes rows r0..r1 without outliers
};
void spqr_rows_scalar(const SpqrRowsJob& job);
// AVX2: groupsize 16 and wbits <= 4 (the SpQR configurations); others go to the scalar kernel.
void spqr_rows_avx2(const SpqrRowsJob& job);

}  // namespace detail

}  // namespace engine::cpu
