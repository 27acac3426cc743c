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
                     ThreadPool& pool, int stat_bits = 3) {
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
  cfg.p.stat_bits = stat_bits;
  if (method == QuantMethod::GPTQ) cfg.p.stat_bits = 16, cfg.p.stat_groupsize = 1;
  SpqrLayer L = quantize_layer(W, rows, cols, H, cfg, pool, nullptr);
  *W_deq = W;
  return L;
}

// Row r of the int8 decode kernel's exact result: the dequantized codes times x
// rounded as the kernel rounds it, plus each outlier's delta (rounded to f16, as the
// kernel reads it) times the exact x.
void int8_reference(const SpqrLayer& L, const std::vector<float>& W, const float* x, int64_t r, double* ref,
                    double* mag) {
  const int64_t cols = L.cols;
  std::vector<float> xr((size_t)cols);
  cpu::spqr_decode_round_activations(L, x, xr.data());
  *ref = 0, *mag = 0;
  for (int64_t c = 0; c < cols; c++) {
    *ref += (double)W[r * cols + c] * xr[c];
    *mag += std::fabs((double)W[r * cols + c] * xr[c]);
  }
  for (int32_t k = L.outlier_rowptr[r]; k < L.outlier_rowptr[r + 1]; k++) {
    const int64_t c = L.perm[L.outliers[k] >> 16];
    const double dh = f16_to_f32((uint16_t)(L.outlier_col_delta16[k] >> 16));
    *ref += dh * x[c] - (double)L.outlier_delta[k] * xr[c];
  }
}

}  // namespace

TEST(SpqrKernels, ProductsAcrossBlockingBoundaries) {
  ThreadPool pool(2);
  const std::string best = cpu::kernel_name();
  int decode_kernels_seen = 0;
  for (auto [rows, cols, method, wbits] :
       {std::tuple<int64_t, int64_t, QuantMethod, int>{600, 300, QuantMethod::SpQR, 3},
        {300, 37, QuantMethod::SpQR, 4},
        {37, 512, QuantMethod::SpQR, 3},   // whole blocks of 16 column groups, ragged row group
        {40, 272, QuantMethod::SpQR, 4},   // 17 column groups: a block of 16 and one
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
        // One token on AVX2 (w3) or AVX-512 VBMI+VNNI: the int8-activation kernel, exactly
        // int8_reference's product (its distance to W·x: Int8DecodeNearTheExactProduct).
        const bool int8 = cpu::spqr_matmul_int8_active(L, n);
        if (int8 && n == 1) decode_kernels_seen++;
        int bad_y = 0, bad_dx = 0;
        for (int64_t t = 0; t < n; t++) {
          for (int64_t r = 0; r < rows; r++) {
            double ref = 0, mag = 0;
            if (int8) {
              int8_reference(L, W, x.data() + t * cols, r, &ref, &mag);
            } else {
              for (int64_t c = 0; c < cols; c++) {
                ref += (double)W[r * cols + c] * x[t * cols + c];
                mag += std::fabs((double)W[r * cols + c] * x[t * cols + c]);
              }
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
  // The int8 1-token kernels ran where they exist: AVX2 on the two w3 SpQR layers, and
  // AVX-512 VBMI (where the CPU has it) on all four SpQR layers.
  if (cpu::set_kernel_family("avx2")) {
    EXPECT_GE(decode_kernels_seen, 2);
  }
  cpu::set_kernel_family(best.c_str());
}

// The int8-activation decode kernel against the exact product W·x. Rounding x to
// int8 per column group moves each x_c by at most d_g/2 (d_g = max|x_g|/127), so
//   |y − W·x| ≤ Σ_c |W_codes[r][c]|·|x_c − xr_c| + Σ_outliers |δ − f16(δ)|·|x_c|
//              (+ f32 rounding, 1e-5·Σ|w·x|),
// the bound checked per row; and, stated for Gaussian activations in
// docs/spqr-format.md, the mean |y − W·x| over rows is below 1e-3 of Σ|w·x|.
TEST(SpqrKernels, Int8DecodeNearTheExactProduct) {
  ThreadPool pool(2);
  const std::string best = cpu::kernel_name();
  int checked = 0;
  for (const char* fam : {"avx2", "avx512"}) {
    if (!cpu::set_kernel_family(fam)) continue;
    // 4-bit statistics: the AVX2 kernel's other way to read them (no table lookup).
    for (auto [rows, cols, wbits, stat_bits] : {std::tuple<int64_t, int64_t, int, int>{600, 300, 3, 3},
                                                {64, 2048, 3, 3}, {40, 272, 4, 3}, {48, 400, 3, 4}}) {
      std::vector<float> W;
      SpqrLayer L = make_layer(rows, cols, QuantMethod::SpQR, wbits, &W, pool, stat_bits);
      if (!cpu::spqr_decode_int8_active(L)) continue;  // AVX2: w3 only; AVX-512: needs VBMI + VNNI
      checked++;
      std::mt19937 rng(5);
      std::normal_distribution<float> N(0, 1);
      std::vector<float> x((size_t)cols), xr((size_t)cols), y((size_t)rows);
      for (auto& v : x) v = N(rng);
      cpu::spqr_matmul(L, x.data(), 1, y.data(), pool);
      cpu::spqr_decode_round_activations(L, x.data(), xr.data());
      double err_sum = 0, mag_sum = 0;
      int over = 0;
      for (int64_t r = 0; r < rows; r++) {
        std::vector<double> wc(W.begin() + r * cols, W.begin() + (r + 1) * cols);  // the codes, outliers not applied
        double ref = 0, mag = 0, bound = 0;
        for (int32_t k = L.outlier_rowptr[r]; k < L.outlier_rowptr[r + 1]; k++) {
          const int64_t c = L.perm[L.outliers[k] >> 16];
          wc[c] -= L.outlier_delta[k];
          bound += std::fabs(L.outlier_delta[k] - f16_to_f32((uint16_t)(L.outlier_col_delta16[k] >> 16))) *
                   std::fabs((double)x[c]);
        }
        for (int64_t c = 0; c < cols; c++) {
          ref += (double)W[r * cols + c] * x[c];
          mag += std::fabs((double)W[r * cols + c] * x[c]);
          bound += std::fabs(wc[c]) * std::fabs((double)x[c] - xr[c]);
        }
        over += std::fabs(y[r] - ref) > bound + 1e-5 * mag;
        err_sum += std::fabs(y[r] - ref);
        mag_sum += mag;
      }
      EXPECT_EQ(over, 0) << fam << " " << rows << "x" << cols;
      EXPECT_LT(err_sum / mag_sum, 1e-3) << fam << " " << rows << "x" << cols;
      std::printf("%s int8 decode %lldx%lld w%d s%d: mean |y - Wx| / mean sum|w x| = %.2e\n", fam, (long long)rows,
                  (long long)cols, wbits, stat_bits, err_sum / mag_sum);
    }
  }
  cpu::set_kernel_family(best.c_str());
  if (checked == 0) GTEST_SKIP() << "no AVX2 or AVX-512 int8 decode kernel on this CPU";
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

// q, k and v (gate and up) in one parallel region give what three calls give, bit for
// bit: the same kernel on the same rounded activations, only the scheduling differs.
TEST(SpqrKernels, SharedInputProductsEqualSeparateOnes) {
  ThreadPool pool(2);
  const std::string best = cpu::kernel_name();
  int checked = 0;
  for (const char* fam : {"avx2", "avx512"}) {
    if (!cpu::set_kernel_family(fam)) continue;
    std::vector<float> W;
    const SpqrLayer a = make_layer(96, 272, QuantMethod::SpQR, 3, &W, pool);
    const SpqrLayer b = make_layer(16, 272, QuantMethod::SpQR, 3, &W, pool);
    SpqrLayer c = make_layer(40, 272, QuantMethod::SpQR, 4, &W, pool);
    if (!cpu::spqr_decode_int8_active(a)) continue;
    if (!cpu::spqr_decode_int8_active(c)) c = make_layer(40, 272, QuantMethod::SpQR, 3, &W, pool);  // AVX2: w3 only
    checked++;
    std::mt19937 rng(9);
    std::normal_distribution<float> N(0, 1);
    std::vector<float> x(272);
    for (auto& v : x) v = N(rng);
    std::vector<float> ya(96), yb(16), yc(40), fa(96, NAN), fb(16, NAN), fc(40, NAN);
    cpu::spqr_matmul(a, x.data(), 1, ya.data(), pool);
    cpu::spqr_matmul(b, x.data(), 1, yb.data(), pool);
    cpu::spqr_matmul(c, x.data(), 1, yc.data(), pool);
    const SpqrLayer* layers[] = {&a, &b, &c};
    float* ys[] = {fa.data(), fb.data(), fc.data()};
    cpu::spqr_decode_int8_many(layers, 3, x.data(), ys, pool);
    EXPECT_EQ(ya, fa) << fam;
    EXPECT_EQ(yb, fb) << fam;
    EXPECT_EQ(yc, fc) << fam;
  }
  cpu::set_kernel_family(best.c_str());
  if (checked == 0) GTEST_SKIP() << "no AVX2 or AVX-512 int8 decode kernel on this CPU";
}
