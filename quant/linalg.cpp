#include "quant/linalg.h"

#include <cmath>

namespace engine::linalg {

namespace {
// Σ_k a[k] b[k] with four accumulators, so the compiler can keep vector lanes busy.
double dot(const double* a, const double* b, int64_t n) {
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  int64_t k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += a[k] * b[k];
    s1 += a[k + 1] * b[k + 1];
    s2 += a[k + 2] * b[k + 2];
    s3 += a[k + 3] * b[k + 3];
  }
  for (; k < n; k++) s0 += a[k] * b[k];
  return (s0 + s1) + (s2 + s3);
}
}  // namespace

bool cholesky_lower(std::vector<double>& a, int64_t n, ThreadPool& pool) {
  // Column by column (left-looking): once column j's diagonal is known, the
  // entries below it are independent dot products of rows, done in parallel.
  for (int64_t j = 0; j < n; j++) {
    double* rj = a.data() + j * n;
    double d = rj[j] - dot(rj, rj, j);
    if (!(d > 0) || !std::isfinite(d)) return false;
    const double ljj = std::sqrt(d);
    rj[j] = ljj;
    pool.parallel_for(n - j - 1, 64, [&](int64_t b, int64_t e) {
      for (int64_t i = j + 1 + b; i < j + 1 + e; i++) {
        double* ri = a.data() + i * n;
        ri[j] = (ri[j] - dot(ri, rj, j)) / ljj;
      }
    });
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = i + 1; k < n; k++) a[i * n + k] = 0;
  return true;
}

bool spd_inverse(std::vector<double>& a, int64_t n, ThreadPool& pool) {
  if (!cholesky_lower(a, n, pool)) return false;
  // M = L⁻¹ (lower), by forward substitution, column by column in parallel; stored transposed
  // (mt[c][i] = M[i][c]) so each column is contiguous.
  std::vector<double> mt((size_t)(n * n), 0.0);
  pool.parallel_for(n, 8, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      double* m = mt.data() + c * n;
      m[c] = 1.0 / a[c * n + c];
      for (int64_t i = c + 1; i < n; i++) {
        const double* li = a.data() + i * n;
        double s = 0;
        for (int64_t k = c; k < i; k++) s += li[k] * m[k];
        m[i] = -s / li[i];
      }
    }
  });
  // A⁻¹ = Mᵀ M: (A⁻¹)[i][j] = Σ_k M[k][i] M[k][j] = dot(mt[i], mt[j]) over k >= max(i, j).
  pool.parallel_for(n, 8, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++)
      for (int64_t j = 0; j <= i; j++) {
        double v = dot(mt.data() + i * n + i, mt.data() + j * n + i, n - i);
        a[i * n + j] = v;
        a[j * n + i] = v;
      }
  });
  return true;
}

bool cholesky_upper(std::vector<double>& a, int64_t n, ThreadPool& pool) {
  // A = Uᵀ U with U = Lᵀ of the lower factor.
  if (!cholesky_lower(a, n, pool)) return false;
  for (int64_t i = 0; i < n; i++)
    for (int64_t k = i + 1; k < n; k++) {
      a[i * n + k] = a[k * n + i];
      a[k * n + i] = 0;
    }
  return true;
}

}  // namespace engine::linalg
