// A random, well-formed SpQR layer in memory (codes, both statistics levels,
// a random permutation, CSR outliers in random column order), for the GPU tests
// and bench/cuda_bench.cu. Not a quantized matrix: the kernels only need a valid
// packed layout; the tests compare against SpqrLayer::dequantize_row.
#pragma once
#include <algorithm>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/spqr.h"

namespace engine::testing_gpu {

inline SpqrLayer random_spqr(int64_t rows, int64_t cols, const SpqrParams& p, double outlier_frac, uint64_t seed) {
  p.validate();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> U(0.0f, 1.0f);
  std::normal_distribution<float> N(0.0f, 1.0f);
  SpqrLayer L;
  L.p = p;
  L.rows = rows, L.cols = cols;
  L.n_groups = (cols + p.groupsize - 1) / p.groupsize;
  L.group_bytes = (p.groupsize * p.wbits + 7) / 8;
  L.n_row_groups = (rows + p.stat_groupsize - 1) / p.stat_groupsize;
  // Codes: a random wbits value per stored column, zero in the padding of a ragged last group.
  L.codes_buf.assign((size_t)(rows * L.n_groups * L.group_bytes), 0);
  const uint32_t mask = (1u << p.wbits) - 1;
  uint64_t bits = 0;
  int left = 0;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) {
      if (left < p.wbits) bits = rng(), left = 64;
      const uint32_t code = (uint32_t)bits & mask;
      bits >>= p.wbits, left -= p.wbits;
      uint8_t* g = L.codes_buf.data() + ((size_t)r * L.n_groups + (size_t)(c / p.groupsize)) * L.group_bytes;
      const int64_t bit = (c % p.groupsize) * p.wbits;
      g[bit / 8] |= (uint8_t)(code << (bit % 8));
      if (bit % 8 + p.wbits > 8) g[bit / 8 + 1] |= (uint8_t)(code >> (8 - bit % 8));
    }
  // First-level statistics codes.
  L.stats_buf.assign((size_t)(rows * L.n_groups), 0);
  if (p.stat_bits != 16) {
    const uint32_t smask = (1u << p.stat_bits) - 1;
    for (auto& b : L.stats_buf) {
      const uint64_t v = rng();
      b = (uint8_t)((v & smask) | ((v >> 8) & smask) << 4);
    }
  }
  // Second level: scale = ss·(q − sz) > 0 around 0.02; zero = zs·(q − zz) around the middle of the code range.
  const float mid = (float)mask / 2.0f, qmax = (float)((1u << std::min(p.stat_bits, 8)) - 1);
  L.stats2_buf.resize((size_t)(L.n_row_groups * L.n_groups));
  for (auto& s : L.stats2_buf) {
    if (p.stat_bits == 16) {
      s.scale_scale = f32_to_f16(0.01f + 0.02f * U(rng));
      s.zero_scale = f32_to_f16(mid + N(rng) * 0.5f);
      s.scale_zero = s.zero_zero = 0;
    } else {
      s.scale_scale = f32_to_f16((0.01f + 0.02f * U(rng)) / (qmax + 1.0f));
      s.scale_zero = f32_to_f16(-1.0f - U(rng));
      s.zero_scale = f32_to_f16(mid / std::max(qmax, 1.0f) * (0.8f + 0.4f * U(rng)));
      s.zero_zero = f32_to_f16(N(rng) * 0.3f);
    }
  }
  L.perm_buf.resize((size_t)cols);
  std::iota(L.perm_buf.begin(), L.perm_buf.end(), 0);
  std::shuffle(L.perm_buf.begin(), L.perm_buf.end(), rng);
  // Outliers: distinct stored columns per row, listed in random order, fp16 values ~ N(0, 0.3).
  L.rowptr_buf.assign((size_t)rows + 1, 0);
  L.outliers_buf.clear();
  std::vector<int32_t> cols_r;
  for (int64_t r = 0; r < rows; r++) {
    cols_r.clear();
    const int64_t want = std::min<int64_t>(cols, (int64_t)(outlier_frac * (double)cols * 2.0 * U(rng) + 0.5));
    for (int64_t k = 0; k < want; k++) cols_r.push_back((int32_t)(rng() % (uint64_t)cols));
    std::sort(cols_r.begin(), cols_r.end());
    cols_r.erase(std::unique(cols_r.begin(), cols_r.end()), cols_r.end());
    std::shuffle(cols_r.begin(), cols_r.end(), rng);
    for (int32_t c : cols_r) L.outliers_buf.push_back((uint32_t)c << 16 | f32_to_f16(N(rng) * 0.3f));
    L.rowptr_buf[r + 1] = (int32_t)L.outliers_buf.size();
  }
  L.point_to_owned();
  L.derive_outlier_deltas();
  return L;
}

}  // namespace engine::testing_gpu
