// A linear layer in any weight format: dense rows (F32/F16/BF16/Q8_0) or SpQR.
// The model code calls linear() and never needs to know which.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "core/spqr.h"
#include "cpu/matmul.h"
#include "cpu/spqr_matmul.h"

namespace engine::cpu {

struct Linear {
  WeightView dense{};              // used when spqr is null
  const SpqrLayer* spqr = nullptr;
  // Optional Wᵀ [cols][rows] in f32 (training keeps one per step): dX = dY·W then runs
  // as a plain GEMM on it instead of transposing W inside every backward call.
  const float* dense_t = nullptr;
  int64_t rows() const { return spqr ? spqr->rows : dense.rows; }
  int64_t cols() const { return spqr ? spqr->cols : dense.cols; }
  // Bytes a matrix-vector product reads.
  size_t bytes() const { return spqr ? spqr->storage_bytes() : (size_t)dense.rows * dense.row_bytes; }
};

// Y [n][rows] = X [n][cols] · Wᵀ
inline void linear(const Linear& w, const float* x, int64_t n, float* y, ThreadPool& pool) {
  if (w.spqr) spqr_matmul(*w.spqr, x, n, y, pool);
  else matmul(w.dense, x, n, y, pool);
}

// Several linears of one input X [n][cols]: Y_i [n][rows_i] = X · W_iᵀ (q, k, v; gate,
// up). One-token SpQR products that run the int8 kernel share one parallel region
// (spqr_decode_int8_many); anything else is one linear() after another. Same results
// either way.
inline void linear_same_input(std::initializer_list<std::pair<const Linear*, float*>> outs, const float* x,
                              int64_t n, ThreadPool& pool) {
  const SpqrLayer* layers[kSpqrDecodeManyMax];
  float* ys[kSpqrDecodeManyMax];
  int count = 0;
  bool fused = n == 1 && outs.size() <= (size_t)kSpqrDecodeManyMax;
  for (const auto& [w, y] : outs) {
    if (!fused) break;
    fused = w->spqr && spqr_decode_int8_active(*w->spqr);
    layers[count] = w->spqr, ys[count] = y, count++;
  }
  if (fused) return spqr_decode_int8_many(layers, count, x, ys, pool);
  for (const auto& [w, y] : outs) linear(*w, x, n, y, pool);
}

// dX [n][cols] = dY [n][rows] · W
inline void linear_backward_input(const Linear& w, const float* dy, int64_t n, float* dx, ThreadPool& pool) {
  if (w.spqr) spqr_matmul_transposed(*w.spqr, dy, n, dx, pool);
  else if (w.dense_t && n >= 16)
    matmul(WeightView{DType::F32, w.dense.cols, w.dense.rows, w.dense_t, (size_t)w.dense.rows * sizeof(float)}, dy, n,
           dx, pool);
  else matmul_transposed(w.dense, dy, n, dx, pool);
}

}  // namespace engine::cpu
