// Block ops against straightforward double-precision references.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "cpu/ops.h"

using namespace engine;

namespace {
std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> N(0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = N(rng);
  return v;
}
}  // namespace

TEST(Ops, RmsNorm) {
  const int64_t n = 3, d = 37;
  auto x = randn(n * d, 1), w = randn(d, 2);
  std::vector<float> y(n * d);
  cpu::rmsnorm(x.data(), w.data(), y.data(), n, d, 1e-5f);
  for (int64_t t = 0; t < n; t++) {
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += (double)x[t * d + i] * x[t * d + i];
    double s = 1 / std::sqrt(ss / d + 1e-5);
    for (int64_t i = 0; i < d; i++) EXPECT_NEAR(y[t * d + i], x[t * d + i] * s * w[i], 1e-5);
  }
  cpu::rmsnorm(x.data(), w.data(), x.data(), n, d, 1e-5f);  // in place
  for (size_t i = 0; i < x.size(); i++) EXPECT_FLOAT_EQ(x[i], y[i]);
}

TEST(Ops, RopeBothLayouts) {
  const int64_t n = 2, heads = 3, hd = 8, n_rot = 6;
  const float base = 500.0f;
  const int32_t pos[2] = {0, 7};
  for (auto layout : {cpu::RopeLayout::Adjacent, cpu::RopeLayout::NeoX}) {
    auto x = randn(n * heads * hd, 3), y = x;
    cpu::rope(y.data(), n, heads, hd, n_rot, pos, base, layout);
    for (int64_t t = 0; t < n; t++)
      for (int64_t h = 0; h < heads; h++) {
        const float* a = &x[(t * heads + h) * hd];
        const float* b = &y[(t * heads + h) * hd];
        for (int64_t i = 0; i < n_rot / 2; i++) {
          int64_t i0 = layout == cpu::RopeLayout::Adjacent ? 2 * i : i;
          int64_t i1 = layout == cpu::RopeLayout::Adjacent ? 2 * i + 1 : i + n_rot / 2;
          double th = pos[t] * std::pow((double)base, -2.0 * i / n_rot);
          EXPECT_NEAR(b[i0], a[i0] * std::cos(th) - a[i1] * std::sin(th), 1e-5);
          EXPECT_NEAR(b[i1], a[i0] * std::sin(th) + a[i1] * std::cos(th), 1e-5);
        }
        for (int64_t i = n_rot; i < hd; i++) EXPECT_EQ(b[i], a[i]);  // past n_rot: untouched
      }
  }
}

// Causal GQA attention: a prefill of n tokens after pos0 cached ones, against the textbook formula.
TEST(Ops, AttentionGqaCausal) {
  const int64_t n = 5, pos0 = 3, n_head = 6, n_kv = 2, hd = 16, ctx = pos0 + n;
  auto q = randn(n * n_head * hd, 4), k = randn(ctx * n_kv * hd, 5), v = randn(ctx * n_kv * hd, 6);
  ThreadPool pool(2);
  for (DType kt : {DType::F32, DType::F16}) {
    std::vector<uint8_t> kc(k.size() * dtype_block_bytes(kt)), vc(v.size() * dtype_block_bytes(kt));
    quantize_row(kt, k.data(), kc.data(), (int64_t)k.size());
    quantize_row(kt, v.data(), vc.data(), (int64_t)v.size());
    std::vector<float> out(n * n_head * hd);
    cpu::attention(q.data(), kc.data(), vc.data(), kt, out.data(), n, pos0, n_head, n_kv, hd, pool);
    const double tol = kt == DType::F32 ? 1e-5 : 5e-3;
    for (int64_t t = 0; t < n; t++)
      for (int64_t h = 0; h < n_head; h++) {
        int64_t g = h / (n_head / n_kv);
        std::vector<double> s(pos0 + t + 1);
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= pos0 + t; j++) {
          double dot = 0;
          for (int64_t i = 0; i < hd; i++) dot += (double)q[(t * n_head + h) * hd + i] * k[(j * n_kv + g) * hd + i];
          s[j] = dot / std::sqrt((double)hd);
          mx = std::max(mx, s[j]);
        }
        for (auto& x : s) sum += x = std::exp(x - mx);
        for (int64_t i = 0; i < hd; i++) {
          double o = 0;
          for (int64_t j = 0; j <= pos0 + t; j++) o += s[j] / sum * v[(j * n_kv + g) * hd + i];
          EXPECT_NEAR(out[(t * n_head + h) * hd + i], o, tol) << dtype_name(kt) << " t" << t << " h" << h;
        }
      }
  }
}

TEST(Ops, SwigluAndAdd) {
  auto g = randn(100, 7, 3), u = randn(100, 8), a = g;
  cpu::swiglu(g.data(), u.data(), a.data(), 100);
  for (int i = 0; i < 100; i++) EXPECT_NEAR(a[i], g[i] / (1 + std::exp(-(double)g[i])) * u[i], 1e-5);
  cpu::add_inplace(a.data(), u.data(), 100);
  for (int i = 0; i < 100; i++) EXPECT_NEAR(a[i], g[i] / (1 + std::exp(-(double)g[i])) * u[i] + u[i], 1e-5);
}
