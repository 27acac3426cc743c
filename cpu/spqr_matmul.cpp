#include "cpu/spqr_matmul.h"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/cpu_features.h"

namespace engine::cpu {

namespace detail {

void spqr_rows_scalar(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs;
  const uint32_t mask = (1u << w.p.wbits) - 1;
  std::vector<float> sc((size_t)w.n_groups), ze((size_t)w.n_groups);
  for (int64_t r = job.r0; r < job.r1; r++) {
    for (int64_t g = 0; g < w.n_groups; g++) {
      sc[g] = w.scale(r, g);
      ze[g] = w.zero(r, g);
    }
    const uint8_t* codes = w.codes + (size_t)r * w.n_groups * w.group_bytes;
    for (int64_t t = 0; t < job.n_tok; t++) {
      const float* xt = job.xp + t * padded;
      float acc = 0;
      for (int64_t g = 0; g < w.n_groups; g++) {
        // Stream the group's bits through a 64-bit window, a byte at a time.
        const uint8_t* grp = codes + g * w.group_bytes;
        uint64_t window = 0;
        int have = 0, next = 0;
        float dot = 0;
        for (int64_t j = 0; j < gs; j++) {
          while (have < w.p.wbits && next < w.group_bytes) {
            window |= (uint64_t)grp[next++] << have;
            have += 8;
          }
          dot += (float)(window & mask) * xt[g * gs + j];
          window >>= w.p.wbits;
          have -= w.p.wbits;
        }
        acc += sc[g] * (dot - ze[g] * job.gsum[t * w.n_groups + g]);
      }
      job.y[t * w.rows + r] = acc;
    }
  }
}

}  // namespace detail

using RowsKernel = void (*)(const detail::SpqrRowsJob&);

static RowsKernel pick_rows_kernel() {
  static const RowsKernel fn = [] {
    const char* force = std::getenv("ENGINE_CPU");
    if (force && std::string(force) == "scalar") return &detail::spqr_rows_scalar;
    if (cpu_features().avx2) return &detail::spqr_rows_avx2;
    return &detail::spqr_rows_scalar;
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
  const RowsKernel kernel = pick_rows_kernel();
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs, rg_rows = w.p.stat_groupsize;
  // Work is split by row groups, which share their second-level statistics.
  pool.parallel_for(w.n_row_groups, 1, [&](int64_t q0, int64_t q1) {
    std::vector<float> s2((size_t)(4 * w.n_groups));
    for (int64_t q = q0; q < q1; q++) {
      const SpqrStats2* st = w.stats2 + q * w.n_groups;
      float *ss = s2.data(), *sz = ss + w.n_groups, *zs = sz + w.n_groups, *zz = zs + w.n_groups;
      for (int64_t g = 0; g < w.n_groups; g++) {
        ss[g] = f16_to_f32(st[g].scale_scale);
        sz[g] = f16_to_f32(st[g].scale_zero);
        zs[g] = f16_to_f32(st[g].zero_scale);
        zz[g] = f16_to_f32(st[g].zero_zero);
      }
      detail::SpqrRowsJob job{&w, q * rg_rows, std::min(w.rows, (q + 1) * rg_rows), ss, sz, zs, zz,
                              xp.data(), gsum.data(), n_tok, y};
      kernel(job);
      // Outliers: replace the quantized value by the stored one (delta = value − dequantized).
      if ((int64_t)w.outlier_delta.size() == w.n_outliers) {
        for (int64_t r = job.r0; r < job.r1; r++)
          for (int32_t k = w.outlier_rowptr[r]; k < w.outlier_rowptr[r + 1]; k++) {
            const int64_t c = w.outliers[k] >> 16;
            const float delta = w.outlier_delta[k];
            for (int64_t t = 0; t < n_tok; t++) y[t * w.rows + r] += delta * xp[t * padded + c];
          }
      } else {
        for (int64_t r = job.r0; r < job.r1; r++)
          for (int32_t k = w.outlier_rowptr[r]; k < w.outlier_rowptr[r + 1]; k++) {
            const int64_t c = w.outliers[k] >> 16, g = c / gs;
            const float delta =
                f16_to_f32((uint16_t)(w.outliers[k] & 0xffff)) - w.scale(r, g) * ((float)w.code(r, c) - w.zero(r, g));
            for (int64_t t = 0; t < n_tok; t++) y[t * w.rows + r] += delta * xp[t * padded + c];
          }
      }
    }
  });
}

void spqr_matmul_transposed(const SpqrLayer& w, const float* dy, int64_t n_tok, float* dx, ThreadPool& pool) {
  // dxp[t][c'] = Σ_r dy[t][r] W[r][perm c']; each thread owns a slice of column groups,
  // so no two threads write the same output; then the permutation is undone.
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
        const float delta =
            f16_to_f32((uint16_t)(w.outliers[k] & 0xffff)) - w.scale(r, g) * ((float)w.code(r, c) - w.zero(r, g));
        for (int64_t t = 0; t < n_tok; t++) dxp[t * padded + c] += dy[t * w.rows + r] * delta;
      }
  });
  for (int64_t t = 0; t < n_tok; t++)
    for (int64_t c = 0; c < w.cols; c++) dx[t * w.cols + w.perm[c]] = dxp[t * padded + c];
}

}  // namespace engine::cpu
