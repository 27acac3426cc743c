// SpQR: the quantizer's invariants and the kernels against the dequantized
// dense matrix, on random shapes including ragged ones.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "cpu/spqr_matmul.h"
#include "quant/gptq.h"

using namespace engine;

namespace {

struct Problem {
  int64_t rows, cols;
  std::vector<float> W, X;  // X: [n][cols] calibration inputs
  std::vector<double> H;
};

// Correlated inputs with a few heavy columns, and weights with a few outliers: the
// situation SpQR is built for.
Problem make_problem(int64_t rows, int64_t cols, int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> N(0, 1);
  Problem p{rows, cols, std::vector<float>(rows * cols), std::vector<float>(n * cols), std::vector<double>(cols * cols)};
  for (auto& w : p.W) w = N(rng) * 0.05f;
  for (int k = 0; k < (int)(rows * cols / 200); k++) p.W[rng() % p.W.size()] *= 25.0f;
  std::vector<float> col_scale(cols);
  for (auto& s : col_scale) s = std::exp(N(rng));
  for (int64_t t = 0; t < n; t++) {
    float common = N(rng);
    for (int64_t c = 0; c < cols; c++) p.X[t * cols + c] = (N(rng) + 0.5f * common) * col_scale[c];
  }
  for (int64_t i = 0; i < cols; i++)
    for (int64_t j = 0; j < cols; j++) {
      double s = 0;
      for (int64_t t = 0; t < n; t++) s += (double)p.X[t * cols + i] * p.X[t * cols + j];
      p.H[i * cols + j] = 2.0 * s / (double)n;
    }
  return p;
}

QuantConfig config(QuantMethod m, int wbits) {
  QuantConfig c;
  c.method = m;
  c.p.wbits = wbits;
  if (m == QuantMethod::GPTQ) {
    c.p.stat_bits = 16;
    c.p.stat_groupsize = 1;
  }
  return c;
}

}  // namespace

TEST(Spqr, DequantizedWeightsMatchTheFormatExactly) {
  ThreadPool pool(2);
  for (auto [rows, cols] : {std::pair<int64_t, int64_t>{48, 64}, {37, 172}, {16, 20}}) {
    Problem pr = make_problem(rows, cols, 256, (uint32_t)(rows * cols));
    for (QuantMethod m : {QuantMethod::SpQR, QuantMethod::GPTQ, QuantMethod::RTN}) {
      std::vector<float> W = pr.W;
      LayerReport rep;
      SpqrLayer L = quantize_layer(W, rows, cols, pr.H, config(m, 3), pool, &rep);
      std::vector<float> row(cols);
      for (int64_t r = 0; r < rows; r++) {
        L.dequantize_row(r, row.data());
        for (int64_t c = 0; c < cols; c++) ASSERT_EQ(row[c], W[r * cols + c]) << quant_method_name(m) << " " << r << "," << c;
      }
      // Outliers hold their fp16 value exactly in the dequantized weight.
      for (int64_t r = 0; r < rows; r++) {
        for (int32_t k = L.outlier_rowptr[r]; k < L.outlier_rowptr[r + 1]; k++) {
          EXPECT_EQ(W[r * cols + L.perm[L.outliers[k] >> 16]], f16_to_f32((uint16_t)(L.outliers[k] & 0xffff)));
        }
      }
      if (m != QuantMethod::SpQR) {
        EXPECT_EQ(L.n_outliers, 0);
      }
    }
  }
}

TEST(Spqr, ErrorFeedbackAndOutliersHelp) {
  ThreadPool pool(2);
  Problem pr = make_problem(64, 128, 512, 7);
  double err[3];
  int i = 0;
  for (QuantMethod m : {QuantMethod::RTN, QuantMethod::GPTQ, QuantMethod::SpQR}) {
    std::vector<float> W = pr.W;
    QuantConfig c = config(m, 3);
    LayerReport rep;
    quantize_layer(W, pr.rows, pr.cols, pr.H, c, pool, &rep);
    err[i++] = rep.rel_error;
    std::printf("%s: %.3f bits, relative error %.5f, %lld outliers\n", quant_method_name(m), rep.bits, rep.rel_error,
                (long long)rep.outliers);
  }
  EXPECT_LT(err[1], err[0]);  // GPTQ beats RTN
  EXPECT_LT(err[2], err[0]);  // SpQR beats RTN
}

// With H = I there is no error feedback between columns, so each group's error is
// its own: the statistics-code search, whose candidates include the rounded codes,
// can only lower it. With a real Hessian it should still help.
TEST(Spqr, StatisticsCodeSearchLowersTheError) {
  ThreadPool pool(2);
  Problem pr = make_problem(64, 128, 512, 11);
  std::vector<double> I((size_t)(pr.cols * pr.cols), 0.0);
  for (int64_t c = 0; c < pr.cols; c++) I[c * pr.cols + c] = 1.0;
  for (const std::vector<double>* H : {&I, &pr.H}) {
    double err[2];
    for (int search = 0; search < 2; search++) {
      std::vector<float> W = pr.W;
      QuantConfig c = config(QuantMethod::SpQR, 3);
      c.stat_search = search;
      if (H == &I) c.outlier_threshold = 1e30f;  // no outliers: groups independent
      LayerReport rep;
      SpqrLayer L = quantize_layer(W, pr.rows, pr.cols, *H, c, pool, &rep);
      err[search] = rep.rel_error;
      std::vector<float> row((size_t)pr.cols);  // the format still reproduces W exactly
      for (int64_t r = 0; r < pr.rows; r++) {
        L.dequantize_row(r, row.data());
        for (int64_t k = 0; k < pr.cols; k++) ASSERT_EQ(row[k], W[r * pr.cols + k]);
      }
    }
    std::printf("%s: relative error %.5f plain, %.5f with the search\n", H == &I ? "H = I" : "H", err[0], err[1]);
    if (H == &I) EXPECT_LE(err[1], err[0]);
    else EXPECT_LT(err[1], err[0]);
  }
}

TEST(Spqr, BitsAreCountedAsInThePaper) {
  ThreadPool pool(1);
  Problem pr = make_problem(256, 256, 64, 3);
  std::vector<float> W = pr.W;
  QuantConfig c = config(QuantMethod::RTN, 3);
  SpqrLayer L = quantize_layer(W, 256, 256, pr.H, c, pool, nullptr);
  // 3 + 2·3/16 + 64/(16·16) + perm (8 bits per column over 256 rows) = 3.65625
  EXPECT_NEAR(L.bits_per_param(), 3.0 + 6.0 / 16 + 64.0 / 256 + 8.0 / 256, 1e-9);
}

TEST(Spqr, KernelsEqualTheDenseProduct) {
  ThreadPool pool(2);
  for (auto [rows, cols, wbits] : {std::tuple<int64_t, int64_t, int>{48, 64, 3}, {37, 172, 3}, {33, 100, 4}, {8, 40, 2}}) {
    Problem pr = make_problem(rows, cols, 128, (uint32_t)(rows + cols));
    std::vector<float> W = pr.W;
    SpqrLayer L = quantize_layer(W, rows, cols, pr.H, config(QuantMethod::SpQR, wbits), pool, nullptr);
    for (int64_t n : {1, 3, 17}) {
      std::mt19937 rng((uint32_t)n);
      std::normal_distribution<float> N(0, 1);
      std::vector<float> x(n * cols), y(n * rows), dy(n * rows), dx(n * cols);
      for (auto& v : x) v = N(rng);
      for (auto& v : dy) v = N(rng);
      cpu::spqr_matmul(L, x.data(), n, y.data(), pool);
      cpu::spqr_matmul_transposed(L, dy.data(), n, dx.data(), pool);
      // The product may run an int8-activation kernel: its exact result is the
      // dequantized codes times x rounded as it rounds it, plus the outliers' deltas
      // (rounded to f16) times the exact x (test_spqr_kernels.cpp bounds its distance to W·x).
      std::vector<float> xr = x;
      const bool int8 = cpu::spqr_matmul_int8_active(L, n);
      if (int8)
        for (int64_t t = 0; t < n; t++) cpu::spqr_decode_round_activations(L, x.data() + t * cols, xr.data() + t * cols);
      for (int64_t t = 0; t < n; t++) {
        for (int64_t r = 0; r < rows; r++) {
          double ref = 0, mag = 0;
          for (int64_t c = 0; c < cols; c++) {
            ref += (double)W[r * cols + c] * xr[t * cols + c];
            mag += std::fabs((double)W[r * cols + c] * xr[t * cols + c]);
          }
          if (int8)
            for (int32_t k = L.outlier_rowptr[r]; k < L.outlier_rowptr[r + 1]; k++) {
              const int64_t c = L.perm[L.outliers[k] >> 16];
              const double dh = f16_to_f32((uint16_t)(L.outlier_col_delta16[k] >> 16));
              ref += dh * x[t * cols + c] - (double)L.outlier_delta[k] * xr[t * cols + c];
            }
          EXPECT_NEAR(y[t * rows + r], ref, 1e-5 * mag + 1e-30) << rows << "x" << cols << " n=" << n;
        }
        for (int64_t c = 0; c < cols; c++) {
          double ref = 0, mag = 0;
          for (int64_t r = 0; r < rows; r++) {
            ref += (double)dy[t * rows + r] * W[r * cols + c];
            mag += std::fabs((double)dy[t * rows + r] * W[r * cols + c]);
          }
          EXPECT_NEAR(dx[t * cols + c], ref, 1e-5 * mag + 1e-30);
        }
      }
    }
  }
}

TEST(Spqr, ImpossibleSettingsAreRefused) {
  SpqrParams p;
  p.wbits = 1;
  EXPECT_THROW(p.validate(), Error);
  p = SpqrParams();
  p.groupsize = 0;
  EXPECT_THROW(p.validate(), Error);
  p = SpqrParams();
  p.stat_bits = 7;
  EXPECT_THROW(p.validate(), Error);
}
