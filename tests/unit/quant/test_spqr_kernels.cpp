// SpQR kernels on shapes that cross their internal blocking. Few tokens (< 4) take
// the row kernels; from 4 tokens the forward is a GEMM over dequantized panels (row
// blocks of 48, column chunks of 256, token passes of 256, 6/12-row and 8/16-lane
// tiles); the transposed product always runs over panels (row chunks of 256, token
// passes of 192, 6/12/4/1-token tiles, column groups in blocks of 8 and pairs). So:
// ragged rows, columns and tokens, outliers in every chunk, wbits 2 (scalar
// fallback), 3, 4 and plain fp16 statistics (GPTQ). Both products are compared with
// the dequantized dense matrix (which quantize_layer returns), in double, to 1e-5 of
// Σ|w·x| (f32 sums over ≤ 600 terms), for every kernel family the CPU has.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <tuple>

#include "cpu/matmul.h"
#include "cpu/spqr_matmul.h"
#include "quant/gptq.h"

using namespace engine;

namespace {

SpqrLayer make_layer(int64_t rows, int64_t cols, QuantMethod method, int wbits, std::vector<float>* W_deq,
                     ThreadPool& pool) {
  std::mt19937 rng((uint32_t)(rows * 31 + cols + wbits));
  std::normal_distribution<float> N(0, 1);
  std::vector<float> W((size_t)(rows * cols));
  for (auto& w : W) w = N(rng) * 0.05f;
  for (int k = 0; k < (int)(rows * cols / 100); k++) W[rng() % W.size()] *= 25.0f;
  // A diagonal-dominant Hessian with unequal columns (act-order then permutes them).
  std::vector<double> H((size_t)(cols * cols), 0.0);
  for (int64_t i = 0; i < cols; i++) {
    H[i * cols + i] = 1.0 + std::exp((double)N(rng));
    if (i + 1 < cols) H[i * cols + i + 1] = H[(i + 1) * cols + i] = 0.2;
  }
  QuantConfig cfg;
  cfg.method = method;
  cfg.p.wbits = wbits;
  if (method == QuantMethod::GPTQ) cfg.p.stat_bits = 16, cfg.p.stat_groupsize = 1;
  SpqrLayer L = quantize_layer(W, rows, cols, H, cfg, pool, nullptr);
  *W_deq = W;
  return L;
}

}  // namespace

TEST(SpqrKernels, ProductsAcrossBlockingBoundaries) {
  ThreadPool pool(2);
  const std::string best = cpu::kernel_name();
  for (auto [rows, cols, method, wbits] :
       {std::tuple<int64_t, int64_t, QuantMethod, int>{600, 300, QuantMethod::SpQR, 3},
        {300, 37, QuantMethod::SpQR, 4},
        {270, 48, QuantMethod::GPTQ, 3},
        {260, 40, QuantMethod::SpQR, 2}}) {
    std::vector<float> W;
    SpqrLayer L = make_layer(rows, cols, method, wbits, &W, pool);
    if (method == QuantMethod::SpQR) {
      EXPECT_GT(L.n_outliers, 0);
    }
    for (const char* fam : {"scalar", "avx2", "avx512"}) {
      if (!cpu::set_kernel_family(fam)) continue;  // not on this CPU
      for (int64_t n : {1, 3, 4, 5, 16, 200, 300}) {
        std::mt19937 rng((uint32_t)n);
        std::normal_distribution<float> N(0, 1);
        std::vector<float> x((size_t)(n * cols)), y((size_t)(n * rows)), dy((size_t)(n * rows));
        std::vector<float> dx((size_t)(n * cols));
        for (auto& v : x) v = N(rng);
        for (auto& v : dy) v = N(rng);
        cpu::spqr_matmul(L, x.data(), n, y.data(), pool);
        cpu::spqr_matmul_transposed(L, dy.data(), n, dx.data(), pool);
        int bad_y = 0, bad_dx = 0;
        for (int64_t t = 0; t < n; t++) {
          for (int64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            for (int64_t c = 0; c < cols; c++) {
              ref += (double)W[r * cols + c] * x[t * cols + c];
              mag += std::fabs((double)W[r * cols + c] * x[t * cols + c]);
            }
            bad_y += std::fabs(y[t * rows + r] - ref) > 1e-5 * mag + 1e-30;
          }
          for (int64_t c = 0; c < cols; c++) {
            double ref = 0, mag = 0;
            for (int64_t r = 0; r < rows; r++) {
              ref += (double)dy[t * rows + r] * W[r * cols + c];
              mag += std::fabs((double)dy[t * rows + r] * W[r * cols + c]);
            }
            bad_dx += std::fabs(dx[t * cols + c] - ref) > 1e-5 * mag + 1e-30;
          }
        }
        EXPECT_EQ(bad_y, 0) << fam << " " << rows << "x" << cols << " wbits " << wbits << " n=" << n;
        EXPECT_EQ(bad_dx, 0) << fam << " " << rows << "x" << cols << " wbits " << wbits << " n=" << n;
      }
    }
  }
  cpu::set_kernel_family(best.c_str());
}

// The format does not require a row's outliers in column order (quantize writes them
// so, and the GEMM kernels then walk them with a cursor): reversed, the products must
// not change (beyond the row kernel's summation order).
TEST(SpqrKernels, OutliersInAnyOrder) {
  ThreadPool pool(2);
  std::vector<float> W;
  SpqrLayer L = make_layer(300, 300, QuantMethod::SpQR, 3, &W, pool);
  SpqrLayer R = L;
  R.point_to_owned();
  int64_t reversed_rows = 0;
  for (int64_t r = 0; r < R.rows; r++) {
    auto b = R.outliers_buf.begin();
    std::reverse(b + R.rowptr_buf[r], b + R.rowptr_buf[r + 1]);
    reversed_rows += R.rowptr_buf[r + 1] - R.rowptr_buf[r] > 1;
  }
  R.derive_outlier_deltas();
  ASSERT_GT(reversed_rows, 10);
  for (int64_t n : {3, 40}) {
    std::mt19937 rng((uint32_t)n);
    std::normal_distribution<float> N(0, 1);
    std::vector<float> x((size_t)(n * 300)), a((size_t)(n * 300)), b((size_t)(n * 300));
    for (auto& v : x) v = N(rng);
    cpu::spqr_matmul(L, x.data(), n, a.data(), pool);
    cpu::spqr_matmul(R, x.data(), n, b.data(), pool);
    // Few tokens: the row kernel adds outliers sparsely, in list order (f32 rounding);
    // the GEMM writes them into the dequantized panel (no order at all).
    for (size_t i = 0; i < a.size(); i++) ASSERT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(a[i]))) << "forward, n=" << n;
    cpu::spqr_matmul_transposed(L, x.data(), n, a.data(), pool);
    cpu::spqr_matmul_transposed(R, x.data(), n, b.data(), pool);
    EXPECT_EQ(a, b) << "transposed, n=" << n;
  }
}
