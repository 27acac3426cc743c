// Matmul kernels of every family (scalar, avx2, avx512 — those this CPU runs)
// on every weight type, against double-precision references on random data.
//
// Bounds, per output element, with S = Σ_c |W[r][c]·X[t][c]| (dequantized weights):
//   F32/F16/BF16 weights, and Q8_0 through the GEMM path (f32 arithmetic):
//       |y − ref| ≤ 1e-5·S + 1e-6
//   Q8_0 and Q6_K through the matrix-vector path (activations rounded to int8 per block):
//       |y − ref| ≤ Σ_blocks (max|x_b|/127 / 2)·Σ_{c∈b}|W[r][c]|  + 1e-5·S   (rigorous)
//       and ≤ 1e-2·S (the stated accuracy of Q8_0 products).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "cpu/matmul.h"

using namespace engine;

namespace {

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> N(0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = N(rng);
  return v;
}

// A weight matrix stored in `type`, rows padded by `pad` bytes (to test row_bytes),
// and its exact f32 values.
struct TestWeight {
  std::vector<uint8_t> bytes;
  std::vector<float> deq;  // [rows][cols]
  cpu::WeightView view;
};

TestWeight make_weight(DType type, int64_t rows, int64_t cols, uint32_t seed, size_t pad = 0) {
  TestWeight w;
  const size_t rb = dtype_row_bytes(type, cols) + pad;
  w.bytes.assign(rb * rows + 64, 0xAB);
  w.deq.resize(rows * cols);
  auto src = randn(rows * cols, seed, 0.5f);
  for (int64_t r = 0; r < rows; r++) {
    quantize_row(type, src.data() + r * cols, w.bytes.data() + r * rb, cols);
    dequantize_row(type, w.bytes.data() + r * rb, w.deq.data() + r * cols, cols);
  }
  w.view = {type, rows, cols, w.bytes.data(), rb};
  return w;
}

std::vector<std::string> families() {
  std::vector<std::string> out;
  const std::string orig = cpu::kernel_name();
  for (const char* f : {"scalar", "avx2", "avx512"})
    if (cpu::set_kernel_family(f)) out.push_back(f);
  cpu::set_kernel_family(orig.c_str());
  return out;
}

// Restores the kernel family chosen at start-up when a test ends.
struct FamilyGuard {
  std::string orig = cpu::kernel_name();
  ~FamilyGuard() { cpu::set_kernel_family(orig.c_str()); }
};

const char* type_str(DType t) { return dtype_name(t); }

void check_matmul(DType type, int64_t rows, int64_t cols, int64_t n_tok, ThreadPool& pool, const std::string& fam,
                  bool add) {
  SCOPED_TRACE(fam + " " + type_str(type) + " rows=" + std::to_string(rows) + " cols=" + std::to_string(cols) +
               " n_tok=" + std::to_string(n_tok) + (add ? " add" : ""));
  TestWeight w = make_weight(type, rows, cols, (uint32_t)(rows * 131 + cols * 7 + n_tok), type == DType::F32 ? 12 : 0);
  auto x = randn(n_tok * cols, (uint32_t)(rows + n_tok * 977));
  auto y0 = randn(n_tok * rows, 99);
  std::vector<float> y = y0;
  if (add) {
    cpu::matmul_add(w.view, x.data(), n_tok, y.data(), pool);
  } else {
    cpu::matmul(w.view, x.data(), n_tok, y.data(), pool);
  }
  int bad = 0;
  for (int64_t t = 0; t < n_tok; t++) {
    for (int64_t r = 0; r < rows; r++) {
      // ref_h: with x rounded to f16, as the AVX2 F16/BF16 GEMM (from 8 tokens)
      // rounds it; either reference may be met.
      double ref = 0, ref_h = 0, S = 0, qbound = 0;
      for (int64_t c = 0; c < cols; c++) {
        const double p = (double)w.deq[r * cols + c] * x[t * cols + c];
        ref += p;
        ref_h += (double)w.deq[r * cols + c] * f16_to_f32(f32_to_f16(x[t * cols + c]));
        S += std::fabs(p);
      }
      const bool half_acts = type == DType::F16 || type == DType::BF16;
      const bool int8_acts = type == DType::Q8_0 || type == DType::Q6_K;
      if (int8_acts) {
        for (int64_t b = 0; b < cols / 32; b++) {
          double amax = 0, wsum = 0;
          for (int i = 0; i < 32; i++) {
            amax = std::max(amax, (double)std::fabs(x[t * cols + b * 32 + i]));
            wsum += std::fabs(w.deq[r * cols + b * 32 + i]);
          }
          qbound += amax / 127.0 / 2.0 * wsum;
        }
      }
      const double base = add ? y0[t * rows + r] : 0.0;
      double err = std::fabs((double)y[t * rows + r] - base - ref);
      if (half_acts) err = std::min(err, std::fabs((double)y[t * rows + r] - base - ref_h));
      const double tol = 1e-5 * S + 1e-6 + qbound + (add ? 1e-6 * std::fabs(base) : 0.0);
      if (err > tol || (int8_acts && err > 1e-2 * S + 1e-6) || !std::isfinite(y[t * rows + r])) {
        if (++bad <= 5)
          ADD_FAILURE() << "t=" << t << " r=" << r << " got " << y[t * rows + r] - base << " want " << ref
                        << " err " << err << " tol " << tol;
      }
    }
  }
  EXPECT_EQ(bad, 0);
}

const DType kTypes[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};

}  // namespace

TEST(Matmul, AllFamiliesTypesShapes) {
  FamilyGuard guard;
  ThreadPool pool(3);
  // (rows, cols): odd row counts (not multiples of the GEMM panels 6 / 14 or of the
  // thread split), cols beyond one k-block (256) and not a multiple of it.
  const int64_t shapes[][2] = {{1, 32}, {7, 64}, {33, 96}, {130, 288}, {29, 544}, {15, 2048}, {21, 2336}};
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    EXPECT_EQ(fam, cpu::kernel_name());
    for (DType type : kTypes)
      for (auto& s : shapes)
        for (int64_t n_tok : {1, 2, 7, 64}) check_matmul(type, s[0], s[1], n_tok, pool, fam, false);
  }
}

TEST(Matmul, TokenCountsAroundGemmTiles) {
  // Token counts around the GEMM threshold and its 8/16/32-token tiles.
  FamilyGuard guard;
  ThreadPool pool(2);
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (DType type : kTypes)
      for (int64_t n_tok : {3, 4, 5, 8, 9, 15, 16, 17, 31, 32, 33, 47, 65})
        check_matmul(type, 23, 320, n_tok, pool, fam, false);
  }
}

// Activations beyond f16's range must not become inf in the F16/BF16 GEMM, which
// otherwise rounds them to f16: the product falls back to f32 and stays exact.
TEST(Matmul, ActivationsBeyondHalfRangeStayFinite) {
  ThreadPool pool(2);
  FamilyGuard guard;
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (DType type : {DType::F16, DType::BF16}) {
      SCOPED_TRACE(fam + " " + type_str(type));
      const int64_t rows = 9, cols = 40, n_tok = 16;
      TestWeight w = make_weight(type, rows, cols, 5);
      auto x = randn(n_tok * cols, 6);
      x[3 * cols + 7] = 1.0e5f;  // token 3
      std::vector<float> y(n_tok * rows);
      cpu::matmul(w.view, x.data(), n_tok, y.data(), pool);
      for (int64_t t = 0; t < n_tok; t++)
        for (int64_t r = 0; r < rows; r++) {
          double ref = 0, S = 0;
          for (int64_t c = 0; c < cols; c++) {
            ref += (double)w.deq[r * cols + c] * x[t * cols + c];
            S += std::fabs((double)w.deq[r * cols + c] * x[t * cols + c]);
          }
          ASSERT_TRUE(std::isfinite(y[t * rows + r]));
          EXPECT_NEAR(y[t * rows + r], ref, 1e-5 * S + 1e-6) << "t=" << t << " r=" << r;
        }
    }
  }
}

TEST(Matmul, OddColumnsForPlainTypes) {
  // F32/F16/BF16 allow any column count: exercise the vector tails.
  FamilyGuard guard;
  ThreadPool pool(2);
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (DType type : {DType::F32, DType::F16, DType::BF16})
      for (int64_t cols : {1, 5, 17, 37, 263})
        for (int64_t n_tok : {1, 2, 7, 64}) check_matmul(type, 19, cols, n_tok, pool, fam, false);
  }
}

TEST(Matmul, AddAccumulates) {
  FamilyGuard guard;
  ThreadPool pool(2);
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (DType type : kTypes)
      for (int64_t n_tok : {1, 7, 64}) check_matmul(type, 45, 320, n_tok, pool, fam, true);
  }
}

TEST(Matmul, SingleThreadAndManyThreads) {
  FamilyGuard guard;
  for (int nth : {1, 4}) {
    ThreadPool pool(nth);
    for (DType type : kTypes)
      for (int64_t n_tok : {1, 64}) check_matmul(type, 101, 256, n_tok, pool, cpu::kernel_name(), false);
  }
}

TEST(Matmul, Transposed) {
  FamilyGuard guard;
  ThreadPool pool(3);
  const int64_t shapes[][2] = {{1, 32}, {7, 64}, {33, 96}, {130, 288}, {70, 608}};
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (DType type : kTypes) {
      for (auto& s : shapes) {
        for (int64_t n_tok : {1, 2, 7, 64}) {
          const int64_t rows = s[0], cols = s[1];
          SCOPED_TRACE(fam + " " + type_str(type) + " rows=" + std::to_string(rows) + " cols=" +
                       std::to_string(cols) + " n_tok=" + std::to_string(n_tok));
          TestWeight w = make_weight(type, rows, cols, (uint32_t)(rows + cols), 0);
          auto dy = randn(n_tok * rows, (uint32_t)(n_tok + 5));
          std::vector<float> dx(n_tok * cols, NAN);
          cpu::matmul_transposed(w.view, dy.data(), n_tok, dx.data(), pool);
          int bad = 0;
          for (int64_t t = 0; t < n_tok; t++) {
            for (int64_t c = 0; c < cols; c++) {
              double ref = 0, S = 0;
              for (int64_t r = 0; r < rows; r++) {
                const double p = (double)dy[t * rows + r] * w.deq[r * cols + c];
                ref += p;
                S += std::fabs(p);
              }
              const double err = std::fabs(dx[t * cols + c] - ref);
              if (!(err <= 1e-5 * S + 1e-6) && ++bad <= 5)
                ADD_FAILURE() << "t=" << t << " c=" << c << " got " << dx[t * cols + c] << " want " << ref;
            }
          }
          EXPECT_EQ(bad, 0);
        }
      }
    }
  }
}

TEST(Matmul, OddColumnsTransposed) {
  FamilyGuard guard;
  ThreadPool pool(2);
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (int64_t cols : {1, 5, 37, 300}) {
      TestWeight w = make_weight(DType::F16, 9, cols, 3, 0);
      auto dy = randn(2 * 9, 4);
      std::vector<float> dx(2 * cols);
      cpu::matmul_transposed(w.view, dy.data(), 2, dx.data(), pool);
      for (int64_t t = 0; t < 2; t++)
        for (int64_t c = 0; c < cols; c++) {
          double ref = 0;
          for (int64_t r = 0; r < 9; r++) ref += (double)dy[t * 9 + r] * w.deq[r * cols + c];
          EXPECT_NEAR(dx[t * cols + c], ref, 1e-5) << fam << " cols=" << cols;
        }
    }
  }
}

// Q6_K (the default output head of quantized files): rows of whole 256-value blocks.
TEST(Matmul, Q6KAllFamiliesShapesAndTokens) {
  FamilyGuard guard;
  ThreadPool pool(3);
  const int64_t shapes[][2] = {{1, 256}, {7, 512}, {33, 768}, {130, 2048}};
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (auto& s : shapes)
      for (int64_t n_tok : {1, 2, 3, 4, 5, 9, 16, 64}) check_matmul(DType::Q6_K, s[0], s[1], n_tok, pool, fam, false);
    for (int64_t n_tok : {1, 7, 64}) check_matmul(DType::Q6_K, 45, 512, n_tok, pool, fam, true);
  }
}

TEST(Matmul, Q6KTransposed) {
  FamilyGuard guard;
  ThreadPool pool(3);
  for (const std::string& fam : families()) {
    ASSERT_TRUE(cpu::set_kernel_family(fam.c_str()));
    for (int64_t n_tok : {1, 7, 20}) {
      const int64_t rows = 37, cols = 768;
      TestWeight w = make_weight(DType::Q6_K, rows, cols, 11, 0);
      auto dy = randn(n_tok * rows, (uint32_t)(n_tok + 5));
      std::vector<float> dx(n_tok * cols, NAN);
      cpu::matmul_transposed(w.view, dy.data(), n_tok, dx.data(), pool);
      int bad = 0;
      for (int64_t t = 0; t < n_tok; t++)
        for (int64_t c = 0; c < cols; c++) {
          double ref = 0, S = 0;
          for (int64_t r = 0; r < rows; r++) {
            ref += (double)dy[t * rows + r] * w.deq[r * cols + c];
            S += std::fabs((double)dy[t * rows + r] * w.deq[r * cols + c]);
          }
          if (!(std::fabs(dx[t * cols + c] - ref) <= 1e-5 * S + 1e-6) && ++bad <= 5)
            ADD_FAILURE() << fam << " t=" << t << " c=" << c << " got " << dx[t * cols + c] << " want " << ref;
        }
      EXPECT_EQ(bad, 0);
    }
  }
}

TEST(Matmul, EmptyShapes) {
  ThreadPool pool(2);
  TestWeight w = make_weight(DType::F16, 4, 32, 1);
  std::vector<float> x(32, 1.0f), y(4, 7.0f);
  cpu::matmul(w.view, x.data(), 0, y.data(), pool);  // no tokens: nothing written
  for (float v : y) EXPECT_EQ(v, 7.0f);
  cpu::WeightView none{DType::F32, 0, 32, nullptr, 128};
  cpu::matmul(none, x.data(), 1, y.data(), pool);
  for (float v : y) EXPECT_EQ(v, 7.0f);
}

TEST(Matmul, RejectsMalformedViews) {
  ThreadPool pool(1);
  std::vector<uint8_t> buf(1024);
  std::vector<float> x(64), y(4);
  cpu::WeightView bad_cols{DType::Q8_0, 2, 40, buf.data(), 64};  // 40 is not a multiple of 32
  EXPECT_THROW(cpu::matmul(bad_cols, x.data(), 1, y.data(), pool), std::exception);
  cpu::WeightView bad_q6{DType::Q6_K, 1, 128, buf.data(), 210};  // Q6_K rows are whole 256-value blocks
  EXPECT_THROW(cpu::matmul(bad_q6, x.data(), 1, y.data(), pool), std::exception);
  cpu::WeightView short_rows{DType::F32, 2, 32, buf.data(), 64};  // 32 floats need 128 bytes
  EXPECT_THROW(cpu::matmul(short_rows, x.data(), 1, y.data(), pool), std::exception);
}

TEST(Matmul, FamiliesAgreeAndNamesAreKnown) {
  const std::string n = cpu::kernel_name();
  EXPECT_TRUE(n == "scalar" || n == "avx2" || n == "avx512") << n;
  FamilyGuard guard;
  EXPECT_FALSE(cpu::set_kernel_family("nonsense"));
  EXPECT_EQ(n, cpu::kernel_name());
  EXPECT_TRUE(cpu::set_kernel_family("scalar"));
  EXPECT_STREQ("scalar", cpu::kernel_name());
}
