// SpQR linear layers on the GPU, computed from the packed form (core/spqr.h,
// docs/spqr-format.md): nothing is ever dequantized to a dense matrix in memory.
//
//   y  [n][rows] = x [n][cols] · Wᵀ      spqr_linear           (forward)
//   dx [n][cols] = dy [n][rows] · W      spqr_linear_backward_input (frozen-weight backward)
//
// Kernels (cuda/spqr.cu):
// - spqr_gemv (n <= 4 tokens, decode): x is first gathered into stored (permuted)
//   column order, zero-padded to whole groups (xp [n][G·groupsize], in ctx's
//   workspace). A block of 256 threads owns 8 rows; thread i takes column groups
//   i, i+256, …; per group it loads the 16 codes of each of its 8 rows (a packed
//   wbits·2-byte word), the stats byte and the row group's fp16 second-level
//   statistics, and the group's 16 activations once (reused for the 8 rows):
//     y[t][r] += scale_rg · (Σ_j code_rgj · xp[t][g,j] − zero_rg · Σ_j xp[t][g,j])
//   Outliers are added sparsely from the CSR (value − dequantized code, f32 delta,
//   derived once on upload) and the block reduces each row. Fast path: groupsize
//   16 and wbits 2/3/4 (template on wbits); any other layout takes a generic
//   per-element path in the same kernel shape.
// - spqr_gemm (any n; used from 5 tokens): a 64-row × 64-token output tile per
//   block, 4×4 per thread, stored columns in chunks of 32: each chunk's weights
//   are dequantized into shared memory (f32) and the activations gathered through
//   perm into shared memory, then an FMA loop; outliers in the epilogue (CSR).
// - spqr_gemm_t (the transposed product, any n): a 64-stored-column × 64-token
//   tile, rows in chunks of 32, the same dequantize-to-shared scheme; outliers in
//   the epilogue from a CSC copy (by stored column) built on upload; results are
//   scattered to dx[t][perm[c]].
// All sums are f32. Results equal x·W_dequantizedᵀ (dy·W_dequantized) to ~1e-6
// relative of Σ|w·x|, like the CPU kernels, the summation order differing.
#pragma once
#include <cstdint>

#include "core/spqr.h"
#include "cuda/device.h"

namespace engine::cuda {

// Plain pointers and sizes, passed to kernels by value.
struct SpqrDeviceView {
  const uint8_t* codes;     // [rows][G][group_bytes]
  const uint8_t* stats;     // [rows][G]
  const uint16_t* stats2;   // [R][G][4] fp16: scale_scale, scale_zero, zero_scale, zero_zero
  const int32_t* perm;      // [cols] stored column -> original column
  const int32_t* rowptr;    // [rows + 1]
  const uint32_t* outliers; // [n_out] stored column << 16 | fp16 value
  const float* odelta;      // [n_out] value − dequantized code
  const int32_t* colptr;    // [cols + 1] CSC by stored column
  const int32_t* crow;      // [n_out] the outlier's row
  const float* cdelta;      // [n_out] its delta
  int rows, cols, G, group_bytes, groupsize, wbits, stat_bits, stat_groupsize;
};

// A SpQR layer uploaded to the device once (weights never move again).
struct DeviceSpqr {
  SpqrParams p;
  int64_t rows = 0, cols = 0, n_groups = 0, group_bytes = 0, n_row_groups = 0, n_outliers = 0;
  DeviceBuffer codes, stats, stats2, perm, rowptr, outliers, odelta, colptr, crow, cdelta;

  // Copies the packed layer (and derives the outlier deltas and the CSC copy on the host).
  static DeviceSpqr upload(const SpqrLayer& L);
  SpqrDeviceView view() const;
  // Bytes a matrix-vector product reads from the packed weights (codes, stats,
  // second-level stats, outliers, perm): what the bandwidth report divides by.
  size_t packed_bytes() const;
};

// Y [n][rows] = X [n][cols] · Wᵀ. n <= 4: spqr_gemv; otherwise spqr_gemm.
void spqr_linear(Context& ctx, const DeviceSpqr& w, const float* x, int64_t n, float* y);
// dX [n][cols] = dY [n][rows] · W  (overwritten).
void spqr_linear_backward_input(Context& ctx, const DeviceSpqr& w, const float* dy, int64_t n, float* dx);

// The two forward kernels, callable directly (tests exercise both on every shape).
void spqr_gemv(Context& ctx, const DeviceSpqr& w, const float* x, int64_t n, float* y);  // n <= 4
void spqr_gemm(Context& ctx, const DeviceSpqr& w, const float* x, int64_t n, float* y);

}  // namespace engine::cuda
