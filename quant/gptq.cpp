#include "quant/gptq.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/error.h"
#include "quant/linalg.h"

namespace engine {

bool quant_method_from_name(const std::string& s, QuantMethod* m) {
  if (s == "spqr") *m = QuantMethod::SpQR;
  else if (s == "gptq") *m = QuantMethod::GPTQ;
  else if (s == "rtn") *m = QuantMethod::RTN;
  else return false;
  return true;
}

const char* quant_method_name(QuantMethod m) {
  return m == QuantMethod::SpQR ? "spqr" : m == QuantMethod::GPTQ ? "gptq" : "rtn";
}

namespace {

// Asymmetric min-max quantizer of a few values with `bits` bits: w ≈ scale·(q − zero).
struct MinMax {
  float scale, zero;
};

MinMax fit_minmax(const float* v, int n, int bits) {
  float lo = v[0], hi = v[0];
  for (int i = 1; i < n; i++) {
    lo = std::min(lo, v[i]);
    hi = std::max(hi, v[i]);
  }
  if (hi - lo <= 1e-12f * std::max(std::fabs(lo), std::fabs(hi))) {
    // Constant values: widen the range to include zero (or [-1, 1] for all zeros).
    lo = std::min(lo, 0.0f);
    hi = std::max(hi, 0.0f);
    if (hi - lo <= 0) lo = -1, hi = 1;
  }
  const float maxq = (float)((1 << bits) - 1);
  MinMax m;
  m.scale = (hi - lo) / maxq;
  m.zero = -lo / m.scale;
  return m;
}

inline int quant_code(float v, float scale, float zero, int maxq) {
  if (!(std::fabs(scale) > 1e-30f)) return 0;
  float q = std::nearbyint(v / scale + zero);
  return (int)std::clamp(q, 0.0f, (float)maxq);
}

// Σ over the group of ((quantize(v) − v) / d)², quantizer fitted on `fit`.
double group_error(const float* v, const double* d, int n, const MinMax& m, int maxq, int skip) {
  double e = 0;
  for (int i = 0; i < n; i++) {
    if (i == skip) continue;
    float deq = m.scale * ((float)quant_code(v[i], m.scale, m.zero, maxq) - m.zero);
    double r = (deq - v[i]) / d[i];
    e += r * r;
  }
  return e;
}

// Second-level quantization of the statistics of one row group: fp16 scale and
// zero of the stat codes, then each row's code. `vals` in, codes out.
void quantize_stats(const float* vals, int n, int bits, uint16_t* s16, uint16_t* z16, uint8_t* codes) {
  MinMax m = fit_minmax(vals, n, bits);
  *s16 = f32_to_f16(m.scale);
  *z16 = f32_to_f16(m.zero);
  const float s = f16_to_f32(*s16), z = f16_to_f32(*z16);
  const int maxq = (1 << bits) - 1;
  for (int i = 0; i < n; i++) codes[i] = (uint8_t)quant_code(vals[i], s, z, maxq);
}

void put_code(uint8_t* group, int j, int wbits, int code) {
  const int bit = j * wbits;
  uint32_t v = (uint32_t)code << (bit % 8);
  group[bit / 8] |= (uint8_t)(v & 0xff);
  if ((bit % 8) + wbits > 8) group[bit / 8 + 1] |= (uint8_t)(v >> 8);
}

}  // namespace

SpqrLayer quantize_layer(std::vector<float>& W, int64_t rows, int64_t cols, const std::vector<double>& H,
                         const QuantConfig& cfg, ThreadPool& pool, LayerReport* report) {
  auto t0 = std::chrono::steady_clock::now();
  const SpqrParams& P = cfg.p;
  P.validate();
  if (cols > 65535) throw Error("SpQR stores column indices in 16 bits: layers wider than 65535 are not supported");
  const bool rtn = cfg.method == QuantMethod::RTN, spqr = cfg.method == QuantMethod::SpQR;
  const int gs = P.groupsize, maxq = (1 << P.wbits) - 1;

  SpqrLayer L;
  L.p = P;
  L.rows = rows;
  L.cols = cols;
  L.n_groups = (cols + gs - 1) / gs;
  L.group_bytes = (gs * P.wbits + 7) / 8;
  L.n_row_groups = (rows + P.stat_groupsize - 1) / P.stat_groupsize;
  L.codes_buf.assign((size_t)(rows * L.n_groups * L.group_bytes), 0);
  L.stats_buf.assign((size_t)(rows * L.n_groups), 0);
  L.stats2_buf.assign((size_t)(L.n_row_groups * L.n_groups), SpqrStats2{0, 0, 0, 0});
  L.perm_buf.resize((size_t)cols);
  std::iota(L.perm_buf.begin(), L.perm_buf.end(), 0);

  // Act-order: columns with the largest Hessian diagonal first (stable, so ties keep their order).
  if (cfg.act_order && !rtn)
    std::stable_sort(L.perm_buf.begin(), L.perm_buf.end(),
                     [&](int32_t a, int32_t b) { return H[(size_t)a * cols + a] > H[(size_t)b * cols + b]; });
  const std::vector<int32_t>& perm = L.perm_buf;

  // Permuted weights and the upper Cholesky factor of the damped, permuted H⁻¹.
  std::vector<float> Wp((size_t)(rows * cols));
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) Wp[r * cols + c] = W[r * cols + perm[c]];
  std::vector<double> U;
  if (!rtn) {
    U.resize((size_t)(cols * cols));
    double mean_diag = 0;
    for (int64_t c = 0; c < cols; c++) mean_diag += H[(size_t)c * cols + c];
    mean_diag /= (double)cols;
    for (int64_t i = 0; i < cols; i++)
      for (int64_t j = 0; j < cols; j++) U[i * cols + j] = H[(size_t)perm[i] * cols + perm[j]];
    for (int64_t c = 0; c < cols; c++) {
      if (U[c * cols + c] == 0) {  // a dead input: never active in calibration
        U[c * cols + c] = 1;
        for (int64_t r = 0; r < rows; r++) Wp[r * cols + c] = 0;
      }
      U[c * cols + c] += cfg.percdamp * mean_diag;
    }
    if (!linalg::spd_inverse(U, cols, pool) || !linalg::cholesky_upper(U, cols, pool))
      throw Error("the Hessian is not positive definite even after damping (raise --percdamp)");
  }
  auto ucc = [&](int64_t c) { return rtn ? 1.0 : U[c * cols + c]; };

  // Outlier threshold τ: relative to the mean over columns of var(W[:, c]) / U_cc².
  double tau = INFINITY;
  if (spqr) {
    double scale = 0;
    for (int64_t c = 0; c < cols; c++) {
      double m = 0, m2 = 0;
      for (int64_t r = 0; r < rows; r++) {
        m += Wp[r * cols + c];
        m2 += (double)Wp[r * cols + c] * Wp[r * cols + c];
      }
      m /= (double)rows;
      double var = rows > 1 ? (m2 - rows * m * m) / (double)(rows - 1) : 0;
      scale += var / (ucc(c) * ucc(c));
    }
    tau = cfg.outlier_threshold * scale / (double)cols;
  }

  std::vector<std::vector<uint32_t>> row_outliers((size_t)rows);
  std::vector<float> sc((size_t)rows), ze((size_t)rows);  // the current group's dequantized statistics
  const int64_t bs = std::max<int64_t>(1, cfg.blocksize / gs) * gs;
  std::vector<float> E((size_t)(rows * bs));  // scaled errors of the current block

  for (int64_t b0 = 0; b0 < cols; b0 += bs) {
    const int64_t b1 = std::min(cols, b0 + bs);
    for (int64_t g0 = b0; g0 < b1; g0 += gs) {
      const int64_t g = g0 / gs, g1 = std::min(cols, g0 + gs);
      const int n = (int)(g1 - g0);
      // 1. First-level statistics per row, fitted without the likely outliers (SpQR).
      std::vector<float> raw_s((size_t)rows), raw_z((size_t)rows);
      std::vector<float> fitv(spqr && cfg.stat_search > 0 && P.stat_bits != 16 ? (size_t)(rows * n) : 0);  // what the statistics were fitted on
      pool.parallel_for(rows, 16, [&](int64_t r0, int64_t r1) {
        std::vector<float> v((size_t)n), loo((size_t)n);
        std::vector<double> d((size_t)n);
        for (int64_t c = 0; c < n; c++) d[c] = ucc(g0 + c);
        for (int64_t r = r0; r < r1; r++) {
          std::copy(Wp.begin() + r * cols + g0, Wp.begin() + r * cols + g1, v.begin());
          if (spqr && n > 2) {
            // Leave-one-out: how much the group's error drops when weight j is left out.
            const MinMax base = fit_minmax(v.data(), n, P.wbits);
            const double base_err = group_error(v.data(), d.data(), n, base, maxq, -1);
            std::vector<bool> likely((size_t)n, false);
            double keep_sum = 0;
            int keep_n = 0;
            for (int j = 0; j < n; j++) {
              int k = 0;
              for (int i = 0; i < n; i++)
                if (i != j) loo[k++] = v[i];
              const MinMax m = fit_minmax(loo.data(), n - 1, P.wbits);
              likely[j] = base_err - group_error(v.data(), d.data(), n, m, maxq, j) > tau;
              if (!likely[j]) keep_sum += v[j], keep_n++;
            }
            const float mean = keep_n ? (float)(keep_sum / keep_n) : 0.0f;
            for (int j = 0; j < n; j++)
              if (likely[j]) v[j] = mean;
          }
          if (!fitv.empty()) std::copy(v.begin(), v.end(), fitv.begin() + r * n);
          const MinMax m = fit_minmax(v.data(), n, P.wbits);
          raw_s[r] = m.scale;
          raw_z[r] = m.zero;
        }
      });
      // 2. Statistics of the statistics: per row group, fp16 second level and stat_bits codes.
      for (int64_t rg = 0; rg < L.n_row_groups; rg++) {
        const int64_t r0 = rg * P.stat_groupsize, r1 = std::min(rows, r0 + P.stat_groupsize);
        SpqrStats2& s2 = L.stats2_buf[(size_t)(rg * L.n_groups + g)];
        if (P.stat_bits == 16) {
          s2.scale_scale = f32_to_f16(raw_s[r0]);
          s2.zero_scale = f32_to_f16(raw_z[r0]);
        } else {
          std::vector<uint8_t> qs((size_t)(r1 - r0)), qz((size_t)(r1 - r0));
          quantize_stats(&raw_s[r0], (int)(r1 - r0), P.stat_bits, &s2.scale_scale, &s2.scale_zero, qs.data());
          quantize_stats(&raw_z[r0], (int)(r1 - r0), P.stat_bits, &s2.zero_scale, &s2.zero_zero, qz.data());
          for (int64_t r = r0; r < r1; r++)
            L.stats_buf[(size_t)(r * L.n_groups + g)] = (uint8_t)(qs[r - r0] | (qz[r - r0] << 4));
        }
      }
      if (!fitv.empty()) {
        // 2b. Each row's codes: the pair near the rounded ones with the smallest weighted error.
        const int smax = (1 << P.stat_bits) - 1, R = cfg.stat_search;
        std::vector<double> d((size_t)n);
        for (int c = 0; c < n; c++) d[c] = ucc(g0 + c);
        pool.parallel_for(rows, 16, [&](int64_t a, int64_t b) {
          for (int64_t r = a; r < b; r++) {
            const SpqrStats2& s2 = L.stats2_buf[(size_t)(r / P.stat_groupsize * L.n_groups + g)];
            const float ss = f16_to_f32(s2.scale_scale), sz = f16_to_f32(s2.scale_zero);
            const float zs = f16_to_f32(s2.zero_scale), zz = f16_to_f32(s2.zero_zero);
            uint8_t& code = L.stats_buf[(size_t)(r * L.n_groups + g)];
            const int qs = code & 15, qz = code >> 4;
            int bs = qs, bz = qz;
            double best = INFINITY;
            for (int cs = std::max(0, qs - R); cs <= std::min(smax, qs + R); cs++)
              for (int cz = std::max(0, qz - R); cz <= std::min(smax, qz + R); cz++) {
                const MinMax m{ss * ((float)cs - sz), zs * ((float)cz - zz)};
                const double e = group_error(fitv.data() + r * n, d.data(), n, m, maxq, -1);
                if (e < best) best = e, bs = cs, bz = cz;
              }
            code = (uint8_t)(bs | bz << 4);
          }
        });
      }
      L.point_to_owned();
      for (int64_t r = 0; r < rows; r++) {
        sc[r] = L.scale(r, g);  // exactly what the kernels will use
        ze[r] = L.zero(r, g);
      }
      // 3. Quantize the group's columns, row by row, feeding each error forward within the block.
      pool.parallel_for(rows, 8, [&](int64_t r0, int64_t r1) {
        for (int64_t r = r0; r < r1; r++) {
          float* w = Wp.data() + r * cols;
          uint8_t* grp = L.codes_buf.data() + (size_t)(r * L.n_groups + g) * L.group_bytes;
          for (int64_t c = g0; c < g1; c++) {
            const float v = w[c];
            int q = quant_code(v, sc[r], ze[r], maxq);
            float deq = sc[r] * ((float)q - ze[r]);
            double err = (v - deq) / ucc(c);
            if (spqr && err * err > tau) {
              // An outlier keeps its own (fp16) value; its code is that of 0, as in the reference.
              const uint16_t h = f32_to_f16(v);
              q = quant_code(0.0f, sc[r], ze[r], maxq);
              deq = f16_to_f32(h);
              err = (v - deq) / ucc(c);
              row_outliers[r].push_back((uint32_t)c << 16 | h);
            }
            put_code(grp, (int)(c - g0), P.wbits, q);
            w[c] = deq;
            if (rtn) continue;
            E[r * bs + (c - b0)] = (float)err;
            const double* u = U.data() + c * cols;
            for (int64_t j = c + 1; j < b1; j++) w[j] -= (float)(err * u[j]);
          }
        }
      });
    }
    // 4. The block's errors reach every later column at once (GPTQ's lazy batch update).
    if (!rtn && b1 < cols)
      pool.parallel_for(rows, 4, [&](int64_t r0, int64_t r1) {
        std::vector<double> acc((size_t)(cols - b1));
        for (int64_t r = r0; r < r1; r++) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t k = b0; k < b1; k++) {
            const double e = E[r * bs + (k - b0)];
            const double* u = U.data() + k * cols + b1;
            for (int64_t j = 0; j < cols - b1; j++) acc[j] += e * u[j];
          }
          float* w = Wp.data() + r * cols + b1;
          for (int64_t j = 0; j < cols - b1; j++) w[j] -= (float)acc[j];
        }
      });
  }

  L.rowptr_buf.assign((size_t)(rows + 1), 0);
  for (int64_t r = 0; r < rows; r++) {
    L.rowptr_buf[r + 1] = L.rowptr_buf[r] + (int32_t)row_outliers[r].size();
    L.outliers_buf.insert(L.outliers_buf.end(), row_outliers[r].begin(), row_outliers[r].end());
  }
  L.point_to_owned();
  L.derive_outlier_deltas();

  // Back to the original column order; measure ‖ΔW X‖² / ‖W X‖² = tr(ΔW H ΔWᵀ) / tr(W H Wᵀ)
  // on at most 64 evenly spaced rows: each row reads all of H (250 MB for a 5632-wide
  // layer), so the exact sum over thousands of rows would dominate the run, while the
  // ratio over a sample of rows is an unbiased estimate good to a few percent.
  double num = 0, den = 0;
  {
    const int64_t n_sample = std::min<int64_t>(rows, 64);
    std::vector<double> part_num((size_t)n_sample), part_den((size_t)n_sample);
    pool.parallel_for(n_sample, 1, [&](int64_t s0, int64_t s1) {
      std::vector<double> delta((size_t)cols), orig((size_t)cols);
      for (int64_t si = s0; si < s1; si++) {
        const int64_t r = si * rows / n_sample;
        for (int64_t c = 0; c < cols; c++) {
          const int64_t o = perm[c];
          orig[o] = W[r * cols + o];
          delta[o] = (double)W[r * cols + o] - Wp[r * cols + c];
        }
        double a = 0, b = 0;
        for (int64_t i = 0; i < cols; i++) {
          const double* h = H.data() + i * cols;
          double da0 = 0, da1 = 0, db0 = 0, db1 = 0;
          int64_t j = 0;
          for (; j + 2 <= cols; j += 2) {
            da0 += h[j] * delta[j];
            da1 += h[j + 1] * delta[j + 1];
            db0 += h[j] * orig[j];
            db1 += h[j + 1] * orig[j + 1];
          }
          for (; j < cols; j++) da0 += h[j] * delta[j], db0 += h[j] * orig[j];
          a += delta[i] * (da0 + da1);
          b += orig[i] * (db0 + db1);
        }
        part_num[si] = a;
        part_den[si] = b;
      }
    });
    for (int64_t si = 0; si < n_sample; si++) num += part_num[si], den += part_den[si];
  }
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) W[r * cols + perm[c]] = Wp[r * cols + c];

  if (report) {
    report->rows = rows;
    report->cols = cols;
    report->bits = L.bits_per_param();
    report->rel_error = den > 0 ? num / den : 0;
    report->outliers = L.n_outliers;
    report->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  return L;
}

}  // namespace engine
