#include "cpu/spqr_matmul.h"

#include "core/cpu_features.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <cstring>
#include <vector>

namespace engine::cpu {

namespace detail {

float spqr_group_dot_scalar(const uint8_t* group, const float* xp, int wbits, int groupsize, int group_bytes) {
  // Stream the group's bits through a 64-bit window, a byte at a time.
  uint64_t window = 0;
  int have = 0, next = 0;
  const uint32_t mask = (1u << wbits) - 1;
  float acc = 0;
  for (int j = 0; j < groupsize; j++) {
    while (have < wbits && next < group_bytes) {
      window |= (uint64_t)group[next++] << have;
      have += 8;
    }
    acc += (float)(window & mask) * xp[j];
    window >>= wbits;
    have -= wbits;
  }
  return acc;
}

}  // namespace detail

static detail::SpqrGroupDot pick_group_dot() {
  static const detail::SpqrGroupDot fn = [] {
    const char* force = std::getenv("ENGINE_CPU");
    if (force && std::string(force) == "scalar") return &detail::spqr_group_dot_scalar;
    if (cpu_features().avx2) return &detail::spqr_group_dot_avx2;
    return &detail::spqr_group_dot_scalar;
  }();
  return fn;
}

// xp[t][c'] = x[t][perm[c']] with zero padding to whole groups, and per-group sums.
static void gather(const SpqrLayer& w, const float* x, int64_t n_tok, std::vector<float>& xp,
                   std::vector<float>& gsum) {
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs;
  xp.assign((size_t)(n_tok * padded), 0.0f);
  gsum.assign((size_t)(n_tok * w.n_groups), 0.0f);
  for (int64_t t = 0; t < n_tok; t++) {
    float* dst = xp.data() + t * padded;
    const float* src = x + t * w.cols;
    for (int64_t c = 0; c < w.cols; c++) dst[c] = src[w.perm[c]];
    for (int64_t g = 0; g < w.n_groups; g++) {
      float s = 0;
      for (int64_t j = 0; j < gs; j++) s += dst[g * gs + j];
      gsum[t * w.n_groups + g] = s;
    }
  }
}

void spqr_matmul(const SpqrLayer& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool) {
  std::vector<float> xp, gsum;
  gather(w, x, n_tok, xp, gsum);
  const detail::SpqrGroupDot dot = pick_group_dot();
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs;
  pool.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) {
    std::vector<float> sc((size_t)w.n_groups), ze((size_t)w.n_groups);
    for (int64_t r = r0; r < r1; r++) {
      for (int64_t g = 0; g < w.n_groups; g++) {
        sc[g] = w.scale(r, g);
        ze[g] = w.zero(r, g);
      }
      const uint8_t* codes = w.codes + (size_t)r * w.n_groups * w.group_bytes;
      for (int64_t t = 0; t < n_tok; t++) {
        const float* xt = xp.data() + t * padded;
        const float* st = gsum.data() + t * w.n_groups;
        float acc = 0;
        for (int64_t g = 0; g < w.n_groups; g++)
          acc += sc[g] * (dot(codes + g * w.group_bytes, xt + g * gs, w.p.wbits, (int)gs, (int)w.group_bytes) -
                          ze[g] * st[g]);
        // Outliers: replace the quantized value by the stored one.
        for (int32_t k = w.outlier_rowptr[r]; k < w.outlier_rowptr[r + 1]; k++) {
          const int64_t c = w.outliers[k] >> 16, g = c / gs;
          const float deq = sc[g] * ((float)w.code(r, c) - ze[g]);
          acc += (f16_to_f32((uint16_t)(w.outliers[k] & 0xffff)) - deq) * xt[c];
        }
        y[t * w.rows + r] = acc;
      }
    }
  });
}

void spqr_matmul_transposed(const SpqrLayer& w, const float* dy, int64_t n_tok, float* dx, ThreadPool& pool) {
  // dxp[t][c'] = Σ_r dy[t][r] W[r][perm c']; each thread owns a slice of columns (groups),
  // so no two threads write the same output, then the permutation is undone.
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs;
  std::vector<float> dxp((size_t)(n_tok * padded), 0.0f);
  pool.parallel_for(w.n_groups, 4, [&](int64_t g0, int64_t g1) {
    for (int64_t r = 0; r < w.rows; r++)
      for (int64_t g = g0; g < g1; g++) {
        const float s = w.scale(r, g), z = w.zero(r, g);
        const int64_t c1 = std::min(w.cols, (g + 1) * gs);
        for (int64_t c = g * gs; c < c1; c++) {
          const float wv = s * ((float)w.code(r, c) - z);
          for (int64_t t = 0; t < n_tok; t++) dxp[t * padded + c] += dy[t * w.rows + r] * wv;
        }
      }
    for (int64_t r = 0; r < w.rows; r++)
      for (int32_t k = w.outlier_rowptr[r]; k < w.outlier_rowptr[r + 1]; k++) {
        const int64_t c = w.outliers[k] >> 16, g = c / gs;
        if (g < g0 || g >= g1) continue;
        const float deq = w.scale(r, g) * ((float)w.code(r, c) - w.zero(r, g));
        const float delta = f16_to_f32((uint16_t)(w.outliers[k] & 0xffff)) - deq;
        for (int64_t t = 0; t < n_tok; t++) dxp[t * padded + c] += dy[t * w.rows + r] * delta;
      }
  });
  for (int64_t t = 0; t < n_tok; t++)
    for (int64_t c = 0; c < w.cols; c++) dx[t * w.cols + w.perm[c]] = dxp[t * padded + c];
}

}  // namespace engine::cpu
