// Element-wise, norm, rope, embedding and dense-linear kernels against the CPU ops
// (cpu/ops.h, cpu/matmul.h), on random inputs drawn fresh each run, outputs
// poisoned with NaN first; backward kernels against the CPU backward (itself
// checked against finite differences in tests/unit/cpu) and against central
// differences of a double-precision forward for small shapes.
//
// Bounds (max |gpu − cpu| / max |cpu|): f32 element-wise 1e-6 (only expf/rounding
// differs); reductions over a row 1e-5 (f32 tree vs double sums); accumulated
// atomics 1e-5; rope 1e-5 (θ in double on both); dense F32 1e-5 of Σ|w·x| per
// element; F16 2e-3 and BF16 1.6e-2 of Σ|w·x| (cuBLAS takes the activations
// rounded to the weight type: 2^-11 / 2^-8 relative per term).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "cpu/matmul.h"
#include "cpu/ops.h"
#include "gpu_test_util.h"

using namespace engine;
using namespace engine::testing_gpu;

namespace {

using Vec = std::vector<double>;

Vec numeric_grad(const std::function<double()>& loss, Vec& x, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); i++) {
    const double x0 = x[i];
    x[i] = x0 + h;
    const double lp = loss();
    x[i] = x0 - h;
    const double lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}
Vec to_d(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }

}  // namespace

TEST(CudaOps, Embedding) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int64_t n_vocab = 97, d = 160, n = 23;
  std::vector<float> tab = randn((size_t)(n_vocab * d), rng);
  std::vector<int32_t> tok((size_t)n);
  for (auto& t : tok) t = (int32_t)(rng() % n_vocab);
  tok[3] = tok[7];  // a repeat
  cuda::DeviceBuffer dtok = dev_i32(tok);
  for (DType type : {DType::F32, DType::F16, DType::BF16, DType::Q8_0}) {
    SCOPED_TRACE(dtype_name(type));
    const size_t rb = dtype_row_bytes(type, d);
    std::vector<uint8_t> q(rb * n_vocab);
    for (int64_t r = 0; r < n_vocab; r++) quantize_row(type, tab.data() + r * d, q.data() + r * rb, d);
    std::vector<float> want((size_t)(n * d));
    for (int64_t t = 0; t < n; t++) dequantize_row(type, q.data() + tok[t] * rb, want.data() + t * d, d);
    cuda::DeviceBuffer dq = cuda::upload(q), out = poisoned((size_t)(n * d));
    cuda::embedding(dq.get(), type, dtok.as<int32_t>(), out.as<float>(), n, d, ctx().stream());
    EXPECT_CLOSE(host(out, want.size()), want, 0.0, "embedding");
  }
  // Backward: rows of repeated tokens sum.
  std::vector<float> dh = randn((size_t)(n * d), rng), dtab = randn((size_t)(n_vocab * d), rng);
  cuda::DeviceBuffer ddh = dev(dh), ddtab = dev(dtab);
  cpu::embedding_backward(tok.data(), dh.data(), dtab.data(), n, d);
  cuda::embedding_backward(dtok.as<int32_t>(), ddh.as<float>(), ddtab.as<float>(), n, d, ctx().stream());
  EXPECT_CLOSE(host(ddtab, dtab.size()), dtab, 1e-6, "embedding_backward");
}

TEST(CudaOps, RmsNormForwardBackward) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  for (auto [n, d] : {std::pair<int64_t, int64_t>{5, 4096}, {3, 100}, {17, 2048}, {1, 33}}) {
    SCOPED_TRACE("n=" + std::to_string(n) + " d=" + std::to_string(d));
    const float eps = 1e-5f;
    std::vector<float> x = randn((size_t)(n * d), rng, 2.0f), w = randn((size_t)d, rng), y((size_t)(n * d));
    cpu::rmsnorm(x.data(), w.data(), y.data(), n, d, eps);
    cuda::DeviceBuffer dx_ = dev(x), dw_ = dev(w), dy_ = poisoned(y.size());
    cuda::rmsnorm(dx_.as<float>(), dw_.as<float>(), dy_.as<float>(), n, d, eps, ctx().stream());
    EXPECT_CLOSE(host(dy_, y.size()), y, 1e-5, "rmsnorm");
    // Backward, accumulating into random gradients.
    std::vector<float> g = randn(y.size(), rng), gx = randn(x.size(), rng), gw = randn(w.size(), rng);
    cuda::DeviceBuffer dg = dev(g), dgx = dev(gx), dgw = dev(gw);
    cpu::rmsnorm_backward(g.data(), x.data(), w.data(), gx.data(), gw.data(), n, d, eps);
    cuda::rmsnorm_backward(dg.as<float>(), dx_.as<float>(), dw_.as<float>(), dgx.as<float>(), dgw.as<float>(), n, d,
                           eps, ctx().stream());
    EXPECT_CLOSE(host(dgx, gx.size()), gx, 1e-5, "rmsnorm_backward dx");
    EXPECT_CLOSE(host(dgw, gw.size()), gw, 1e-5, "rmsnorm_backward dw");
  }
}

TEST(CudaOps, RmsNormBackwardFiniteDifferences) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int64_t n = 3, d = 24;
  const double eps = 1e-5;
  std::vector<float> x = randn((size_t)(n * d), rng), w = randn((size_t)d, rng), r = randn((size_t)(n * d), rng);
  Vec xd = to_d(x), wd = to_d(w);
  auto loss = [&] {
    double L = 0;
    for (int64_t t = 0; t < n; t++) {
      double ss = 0;
      for (int64_t i = 0; i < d; i++) ss += xd[t * d + i] * xd[t * d + i];
      const double s = 1 / std::sqrt(ss / d + eps);
      for (int64_t i = 0; i < d; i++) L += r[t * d + i] * xd[t * d + i] * s * wd[i];
    }
    return L;
  };
  const Vec gx = numeric_grad(loss, xd), gw = numeric_grad(loss, wd);
  cuda::DeviceBuffer dx_ = dev(x), dw_ = dev(w), dr = dev(r), ogx = dev(std::vector<float>(x.size(), 0.0f)),
                     ogw = dev(std::vector<float>(w.size(), 0.0f));
  cuda::rmsnorm_backward(dr.as<float>(), dx_.as<float>(), dw_.as<float>(), ogx.as<float>(), ogw.as<float>(), n, d,
                         (float)eps, ctx().stream());
  EXPECT_CLOSE(host(ogx, x.size()), gx, 2e-4, "rmsnorm dx vs finite differences");
  EXPECT_CLOSE(host(ogw, w.size()), gw, 2e-4, "rmsnorm dw vs finite differences");
}

TEST(CudaOps, RopeBothLayoutsForwardBackward) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (auto layout : {cpu::RopeLayout::Adjacent, cpu::RopeLayout::NeoX})
    for (auto [heads, hd, n_rot] : {std::tuple<int64_t, int64_t, int64_t>{4, 64, 64}, {3, 64, 32}, {2, 128, 128},
                                    {5, 80, 40}}) {
      SCOPED_TRACE(std::string(layout == cpu::RopeLayout::NeoX ? "neox" : "adjacent") + " heads=" +
                   std::to_string(heads) + " hd=" + std::to_string(hd) + " n_rot=" + std::to_string(n_rot));
      const int64_t n = 9;
      std::vector<int32_t> pos((size_t)n);
      for (auto& p : pos) p = (int32_t)(rng() % 8192);
      std::vector<float> x = randn((size_t)(n * heads * hd), rng), want = x;
      cpu::rope(want.data(), n, heads, hd, n_rot, pos.data(), 10000.0f, layout);
      cuda::DeviceBuffer dx_ = dev(x), dpos = dev_i32(pos);
      cuda::rope(dx_.as<float>(), n, heads, hd, n_rot, dpos.as<int32_t>(), 10000.0f, layout, ctx().stream());
      EXPECT_CLOSE(host(dx_, x.size()), want, 1e-5, "rope");
      std::vector<float> g = randn(x.size(), rng), gwant = g;
      cpu::rope_backward(gwant.data(), n, heads, hd, n_rot, pos.data(), 10000.0f, layout);
      cuda::DeviceBuffer dg = dev(g);
      cuda::rope_backward(dg.as<float>(), n, heads, hd, n_rot, dpos.as<int32_t>(), 10000.0f, layout, ctx().stream());
      EXPECT_CLOSE(host(dg, g.size()), gwant, 1e-5, "rope_backward");
      // rope_backward ∘ rope = identity.
      cuda::rope(dg.as<float>(), n, heads, hd, n_rot, dpos.as<int32_t>(), 10000.0f, layout, ctx().stream());
      EXPECT_CLOSE(host(dg, g.size()), g, 1e-5, "rope after rope_backward");
    }
}

TEST(CudaOps, SwigluAndAdd) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  const int64_t n = 100003;
  std::vector<float> g = randn((size_t)n, rng, 3.0f), u = randn((size_t)n, rng), a((size_t)n);
  cpu::swiglu(g.data(), u.data(), a.data(), n);
  cuda::DeviceBuffer dg = dev(g), du = dev(u), da = poisoned((size_t)n);
  cuda::swiglu(dg.as<float>(), du.as<float>(), da.as<float>(), n, ctx().stream());
  EXPECT_CLOSE(host(da, a.size()), a, 1e-6, "swiglu");
  std::vector<float> d = randn((size_t)n, rng), gg = randn((size_t)n, rng), gu = randn((size_t)n, rng);
  cuda::DeviceBuffer dd = dev(d), dgg = dev(gg), dgu = dev(gu);
  cpu::swiglu_backward(d.data(), g.data(), u.data(), gg.data(), gu.data(), n);
  cuda::swiglu_backward(dd.as<float>(), dg.as<float>(), du.as<float>(), dgg.as<float>(), dgu.as<float>(), n,
                        ctx().stream());
  EXPECT_CLOSE(host(dgg, gg.size()), gg, 1e-6, "swiglu_backward dg");
  EXPECT_CLOSE(host(dgu, gu.size()), gu, 1e-6, "swiglu_backward du");
  std::vector<float> x = randn((size_t)n, rng), y = randn((size_t)n, rng);
  cuda::DeviceBuffer dx_ = dev(x), dy_ = dev(y);
  cpu::add_inplace(x.data(), y.data(), n);
  cuda::add_inplace(dx_.as<float>(), dy_.as<float>(), n, ctx().stream());
  EXPECT_CLOSE(host(dx_, x.size()), x, 0.0, "add_inplace");
  // swiglu backward against central differences (small).
  const int64_t m = 40;
  std::vector<float> g2 = randn((size_t)m, rng, 2.0f), u2 = randn((size_t)m, rng), r = randn((size_t)m, rng);
  Vec gd = to_d(g2), ud = to_d(u2);
  auto loss = [&] {
    double L = 0;
    for (int64_t i = 0; i < m; i++) L += r[i] * gd[i] / (1 + std::exp(-gd[i])) * ud[i];
    return L;
  };
  const Vec ng = numeric_grad(loss, gd), nu = numeric_grad(loss, ud);
  cuda::DeviceBuffer a2 = dev(g2), b2 = dev(u2), c2 = dev(r), og = dev(std::vector<float>(m, 0.0f)),
                     ou = dev(std::vector<float>(m, 0.0f));
  cuda::swiglu_backward(c2.as<float>(), a2.as<float>(), b2.as<float>(), og.as<float>(), ou.as<float>(), m,
                        ctx().stream());
  EXPECT_CLOSE(host(og, m), ng, 2e-4, "swiglu dg vs finite differences");
  EXPECT_CLOSE(host(ou, m), nu, 2e-4, "swiglu du vs finite differences");
}

TEST(CudaOps, RopeBackwardFiniteDifferences) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (auto layout : {cpu::RopeLayout::Adjacent, cpu::RopeLayout::NeoX}) {
    const int64_t n = 3, heads = 2, hd = 8, n_rot = 6;
    std::vector<int32_t> pos = {0, 7, 1000};
    std::vector<float> x = randn((size_t)(n * heads * hd), rng), r = randn(x.size(), rng);
    Vec xd = to_d(x);
    auto loss = [&] {
      double L = 0;
      for (int64_t t = 0; t < n; t++)
        for (int64_t h = 0; h < heads; h++) {
          const double* v = xd.data() + (t * heads + h) * hd;
          const float* rr = r.data() + (t * heads + h) * hd;
          std::vector<double> o(v, v + hd);
          for (int64_t i = 0; i < n_rot / 2; i++) {
            const double th = pos[t] * std::pow(10000.0, -2.0 * i / n_rot);
            const int64_t a = layout == cpu::RopeLayout::NeoX ? i : 2 * i;
            const int64_t b = layout == cpu::RopeLayout::NeoX ? i + n_rot / 2 : 2 * i + 1;
            o[a] = v[a] * std::cos(th) - v[b] * std::sin(th);
            o[b] = v[a] * std::sin(th) + v[b] * std::cos(th);
          }
          for (int64_t i = 0; i < hd; i++) L += rr[i] * o[i];
        }
      return L;
    };
    const Vec gx = numeric_grad(loss, xd);
    cuda::DeviceBuffer dr = dev(r), dpos = dev_i32(pos);
    cuda::rope_backward(dr.as<float>(), n, heads, hd, n_rot, dpos.as<int32_t>(), 10000.0f, layout, ctx().stream());
    EXPECT_CLOSE(host(dr, r.size()), gx, 2e-4, "rope_backward vs finite differences");
  }
}

TEST(CudaOps, DenseLinearsAllTypes) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  const int64_t rows = 300, cols = 256;
  std::vector<float> wf = randn((size_t)(rows * cols), rng, 0.05f);
  for (DType type : {DType::F32, DType::F16, DType::BF16}) {
    const std::vector<uint8_t> wq = convert_rows(DType::F32, wf.data(), type, cols, rows);
    std::vector<float> wdq((size_t)(rows * cols));
    const size_t rb = dtype_row_bytes(type, cols);
    for (int64_t r = 0; r < rows; r++) dequantize_row(type, wq.data() + r * rb, wdq.data() + r * cols, cols);
    cuda::DeviceBuffer dw = cuda::upload(wq);
    const cuda::DenseWeight W{type, rows, cols, dw.get()};
    const cpu::WeightView V{type, rows, cols, wq.data(), rb};
    const double tol = type == DType::F32 ? 1e-5 : type == DType::F16 ? 2e-3 : 1.6e-2;
    for (int64_t n : {1, 3, 37}) {
      SCOPED_TRACE(std::string(dtype_name(type)) + " n=" + std::to_string(n));
      std::vector<float> x = randn((size_t)(n * cols), rng), y((size_t)(n * rows));
      cpu::matmul(V, x.data(), n, y.data(), pool);
      cuda::DeviceBuffer dx_ = dev(x), dy_ = poisoned(y.size());
      cuda::linear(ctx(), W, dx_.as<float>(), n, dy_.as<float>());
      const std::vector<float> got = host(dy_, y.size());
      // Per element, relative to Σ|w·x| (the product's natural scale).
      int bad = 0;
      for (int64_t t = 0; t < n; t++)
        for (int64_t r = 0; r < rows; r++) {
          double mag = 0;
          for (int64_t c = 0; c < cols; c++) mag += std::fabs((double)wdq[r * cols + c] * x[t * cols + c]);
          const float g = got[t * rows + r];
          bad += !(std::fabs(g - y[t * rows + r]) <= tol * mag + 1e-30);
        }
      EXPECT_EQ(bad, 0) << "linear forward";
      // dX = dY·W.
      std::vector<float> gy = randn((size_t)(n * rows), rng), gx((size_t)(n * cols));
      cpu::matmul_transposed(V, gy.data(), n, gx.data(), pool);
      cuda::DeviceBuffer dgy = dev(gy), dgx = poisoned(gx.size());
      cuda::linear_backward_input(ctx(), W, dgy.as<float>(), n, dgx.as<float>());
      const std::vector<float> gotx = host(dgx, gx.size());
      bad = 0;
      for (int64_t t = 0; t < n; t++)
        for (int64_t c = 0; c < cols; c++) {
          double mag = 0;
          for (int64_t r = 0; r < rows; r++) mag += std::fabs((double)wdq[r * cols + c] * gy[t * rows + r]);
          bad += !(std::fabs(gotx[t * cols + c] - gx[t * cols + c]) <= tol * mag + 1e-30);
        }
      EXPECT_EQ(bad, 0) << "linear backward input";
    }
  }
  // dW += scale·dYᵀX (LoRA weights, f32).
  const int64_t n = 19, r2 = 8, c2 = 96;
  std::vector<float> dy = randn((size_t)(n * r2), rng), x = randn((size_t)(n * c2), rng),
                     dw = randn((size_t)(r2 * c2), rng);
  cuda::DeviceBuffer ddy = dev(dy), dx_ = dev(x), ddw = dev(dw);
  cpu::linear_backward_weight(dy.data(), x.data(), dw.data(), n, r2, c2, 0.5f, pool);
  cuda::linear_backward_weight(ctx(), ddy.as<float>(), dx_.as<float>(), ddw.as<float>(), n, r2, c2, 0.5f);
  EXPECT_CLOSE(host(ddw, dw.size()), dw, 1e-5, "linear_backward_weight");
}
