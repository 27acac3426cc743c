// Products with SpQR weights, computed from the packed form (no dense copy):
// activations are gathered into the stored (permuted) column order once per
// call, each group's 16 codes are unpacked in registers and dotted with them,
// the group's statistics are applied once per group, and outliers are added
// sparsely at the end.
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
// Σ_j code_j · xp_j over one group of `w.p.groupsize` codes (the hot loop); picked at run time.
using SpqrGroupDot = float (*)(const uint8_t* group, const float* xp, int wbits, int groupsize, int group_bytes);
float spqr_group_dot_scalar(const uint8_t* group, const float* xp, int wbits, int groupsize, int group_bytes);
float spqr_group_dot_avx2(const uint8_t* group, const float* xp, int wbits, int groupsize, int group_bytes);
}  // namespace detail

}  // namespace engine::cpu
