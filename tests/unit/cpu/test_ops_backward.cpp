// Each op's backward against central finite differences of a double-precision
// reference forward. The loss is L = Σ r ⊙ op(x) for a random r, so dL/dx is the
// op's vector-Jacobian product with dy = r, which is what backward computes.
//
// Error bounds (max |analytic − numeric| / max |numeric|): the backward runs in
// f32 against an exact (double) reference, so ~1e-6 is typical; we allow 2e-4 —
// loose enough for f32 rounding in long sums, tight enough that a wrong term
// (a missing factor, a sign) fails by orders of magnitude. Frozen weights in
// F16/BF16/Q8_0: dX must equal dY·W_dequantized to f32 accuracy (1e-5 rel).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "core/dtype.h"
#include "cpu/linear.h"
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

using Vec = std::vector<double>;

// Central differences of L(x) = Σ r ⊙ f(x) w.r.t. every element of x (in double).
Vec numeric_grad(const std::function<double()>& loss, Vec& x, double h = 1e-5) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); i++) {
    double x0 = x[i];
    x[i] = x0 + h;
    double lp = loss();
    x[i] = x0 - h;
    double lm = loss();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

double rel_err(const std::vector<float>& a, const Vec& b) {
  double num = 0, den = 1e-12;
  for (size_t i = 0; i < b.size(); i++) {
    num = std::max(num, std::abs((double)a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return num / den;
}

Vec to_d(const std::vector<float>& v) { return Vec(v.begin(), v.end()); }
double dot(const Vec& a, const Vec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// ---- double-precision references -------------------------------------------------

Vec ref_rmsnorm(const Vec& x, const Vec& w, int64_t n, int64_t d, double eps) {
  Vec y(x.size());
  for (int64_t t = 0; t < n; t++) {
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += x[t * d + i] * x[t * d + i];
    double s = 1 / std::sqrt(ss / d + eps);
    for (int64_t i = 0; i < d; i++) y[t * d + i] = x[t * d + i] * s * w[i];
  }
  return y;
}

Vec ref_rope(Vec x, int64_t n, int64_t heads, int64_t hd, int64_t n_rot, const int32_t* pos, double base,
             cpu::RopeLayout layout) {
  for (int64_t t = 0; t < n; t++)
    for (int64_t h = 0; h < heads; h++)
      for (int64_t i = 0; i < n_rot / 2; i++) {
        int64_t a = layout == cpu::RopeLayout::Adjacent ? 2 * i : i;
        int64_t b = layout == cpu::RopeLayout::Adjacent ? 2 * i + 1 : i + n_rot / 2;
        double th = pos[t] * std::pow(base, -2.0 * i / n_rot);
        double* v = &x[(t * heads + h) * hd];
        double x0 = v[a], x1 = v[b];
        v[a] = x0 * std::cos(th) - x1 * std::sin(th);
        v[b] = x0 * std::sin(th) + x1 * std::cos(th);
      }
  return x;
}

Vec ref_attention(const Vec& q, const Vec& k, const Vec& v, int64_t n, int64_t pos0, int64_t H, int64_t Hkv,
                  int64_t hd) {
  Vec out(n * H * hd, 0.0);
  const int64_t group = H / Hkv;
  for (int64_t t = 0; t < n; t++)
    for (int64_t h = 0; h < H; h++) {
      const int64_t kvh = h / group, nk = pos0 + t + 1;
      Vec s(nk);
      double mx = -1e300;
      for (int64_t j = 0; j < nk; j++) {
        double d = 0;
        for (int64_t i = 0; i < hd; i++) d += q[(t * H + h) * hd + i] * k[(j * Hkv + kvh) * hd + i];
        s[j] = d / std::sqrt((double)hd);
        mx = std::max(mx, s[j]);
      }
      double sum = 0;
      for (auto& e : s) sum += (e = std::exp(e - mx));
      for (int64_t j = 0; j < nk; j++)
        for (int64_t i = 0; i < hd; i++) out[(t * H + h) * hd + i] += s[j] / sum * v[(j * Hkv + kvh) * hd + i];
    }
  return out;
}

}  // namespace

TEST(OpsBackward, Embedding) {
  const int64_t d = 5, V = 7;
  const int32_t tok[4] = {3, 1, 3, 6};
  auto dh = randn(4 * d, 1);
  std::vector<float> dt(V * d, 0.0f);
  cpu::embedding_backward(tok, dh.data(), dt.data(), 4, d);
  for (int64_t r = 0; r < V; r++)
    for (int64_t i = 0; i < d; i++) {
      double want = 0;
      for (int t = 0; t < 4; t++)
        if (tok[t] == r) want += dh[t * d + i];
      EXPECT_NEAR(dt[r * d + i], want, 1e-6) << r;
    }
}

TEST(OpsBackward, RmsNormInputAndWeight) {
  for (auto [n, d] : {std::pair<int64_t, int64_t>{3, 37}, {1, 8}, {4, 64}}) {
    auto xf = randn(n * d, 10 + d), wf = randn(d, 20 + d), r = randn(n * d, 30 + d);
    const float eps = 1e-5f;
    std::vector<float> dx(n * d, 0.0f), dw(d, 0.0f);
    cpu::rmsnorm_backward(r.data(), xf.data(), wf.data(), dx.data(), dw.data(), n, d, eps);
    Vec x = to_d(xf), w = to_d(wf), rd = to_d(r);
    auto L = [&] { return dot(rd, ref_rmsnorm(x, w, n, d, eps)); };
    EXPECT_LT(rel_err(dx, numeric_grad(L, x)), 2e-4) << n << "x" << d;
    EXPECT_LT(rel_err(dw, numeric_grad(L, w)), 2e-4) << n << "x" << d;
  }
}

TEST(OpsBackward, RopeBothLayouts) {
  const int64_t n = 3, heads = 3, hd = 10, n_rot = 6;
  const int32_t pos[3] = {0, 5, 11};
  for (auto layout : {cpu::RopeLayout::Adjacent, cpu::RopeLayout::NeoX}) {
    auto r = randn(n * heads * hd, 4);
    std::vector<float> dx = r;
    cpu::rope_backward(dx.data(), n, heads, hd, n_rot, pos, 1000.0f, layout);
    Vec x = to_d(randn(n * heads * hd, 5)), rd = to_d(r);
    auto L = [&] { return dot(rd, ref_rope(x, n, heads, hd, n_rot, pos, 1000.0, layout)); };
    EXPECT_LT(rel_err(dx, numeric_grad(L, x)), 2e-4);
  }
}

TEST(OpsBackward, AttentionGqaAndMha) {
  ThreadPool pool(2);
  struct Shape {
    int64_t n, pos0, H, Hkv, hd;
  };
  for (Shape s : {Shape{5, 0, 4, 2, 6}, Shape{4, 3, 4, 1, 5}, Shape{3, 0, 2, 2, 8}, Shape{1, 4, 6, 3, 4}}) {
    const int64_t nk = s.pos0 + s.n;
    auto qf = randn(s.n * s.H * s.hd, 1), kf = randn(nk * s.Hkv * s.hd, 2), vf = randn(nk * s.Hkv * s.hd, 3);
    auto r = randn(s.n * s.H * s.hd, 4);
    // The backward must be of the forward we actually run: check the f32 forward too.
    std::vector<float> out(s.n * s.H * s.hd);
    cpu::attention(qf.data(), kf.data(), vf.data(), DType::F32, out.data(), s.n, s.pos0, s.H, s.Hkv, s.hd, pool);
    Vec q = to_d(qf), k = to_d(kf), v = to_d(vf), rd = to_d(r);
    EXPECT_LT(rel_err(out, ref_attention(q, k, v, s.n, s.pos0, s.H, s.Hkv, s.hd)), 1e-5);

    std::vector<float> dq(qf.size(), 0.0f), dk(kf.size(), 0.0f), dv(vf.size(), 0.0f);
    cpu::attention_backward(r.data(), qf.data(), kf.data(), vf.data(), dq.data(), dk.data(), dv.data(), s.n, s.pos0,
                            s.H, s.Hkv, s.hd, pool);
    auto L = [&] { return dot(rd, ref_attention(q, k, v, s.n, s.pos0, s.H, s.Hkv, s.hd)); };
    EXPECT_LT(rel_err(dq, numeric_grad(L, q)), 2e-4) << "dq H=" << s.H << " Hkv=" << s.Hkv;
    EXPECT_LT(rel_err(dk, numeric_grad(L, k)), 2e-4) << "dk H=" << s.H << " Hkv=" << s.Hkv;
    EXPECT_LT(rel_err(dv, numeric_grad(L, v)), 2e-4) << "dv H=" << s.H << " Hkv=" << s.Hkv;
  }
}

TEST(OpsBackward, SwiGlu) {
  const int64_t n = 41;
  auto gf = randn(n, 1, 2.0f), uf = randn(n, 2), r = randn(n, 3);
  std::vector<float> dg(n, 0.0f), du(n, 0.0f);
  cpu::swiglu_backward(r.data(), gf.data(), uf.data(), dg.data(), du.data(), n);
  Vec g = to_d(gf), u = to_d(uf), rd = to_d(r);
  auto L = [&] {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += rd[i] * g[i] / (1 + std::exp(-g[i])) * u[i];
    return s;
  };
  EXPECT_LT(rel_err(dg, numeric_grad(L, g)), 2e-4);
  EXPECT_LT(rel_err(du, numeric_grad(L, u)), 2e-4);
}

// Frozen dense weights: dX = dY·W straight from F32/F16/BF16/Q8_0 storage equals
// dY·W_dequantized, and equals the finite-difference gradient of x ↦ Σ r⊙(W_deq x).
TEST(OpsBackward, LinearInputEveryDenseFormat) {
  ThreadPool pool(2);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0})
    for (auto [rows, cols, n] : {std::tuple<int64_t, int64_t, int64_t>{37, 64, 1}, {19, 96, 7}, {64, 32, 33}}) {
      auto wf = randn(rows * cols, 7);
      const size_t rb = dtype_row_bytes(t, cols);
      std::vector<uint8_t> store(rows * rb);
      std::vector<float> wd(rows * cols);
      for (int64_t r = 0; r < rows; r++) {
        quantize_row(t, &wf[r * cols], store.data() + r * rb, cols);
        dequantize_row(t, store.data() + r * rb, &wd[r * cols], cols);
      }
      cpu::Linear lin;
      lin.dense = cpu::WeightView{t, rows, cols, store.data(), rb};
      auto dy = randn(n * rows, 8);
      std::vector<float> dx(n * cols);
      cpu::linear_backward_input(lin, dy.data(), n, dx.data(), pool);
      Vec want(n * cols, 0.0);
      for (int64_t s = 0; s < n; s++)
        for (int64_t r = 0; r < rows; r++)
          for (int64_t c = 0; c < cols; c++) want[s * cols + c] += (double)dy[s * rows + r] * wd[r * cols + c];
      EXPECT_LT(rel_err(dx, want), 1e-5) << dtype_name(t) << " " << rows << "x" << cols << " n=" << n;
      if (n == 1) {  // and it is the gradient of the dequantized product
        Vec x(cols, 0.5), rd = to_d(dy);
        auto L = [&] {
          double s = 0;
          for (int64_t r = 0; r < rows; r++) {
            double y = 0;
            for (int64_t c = 0; c < cols; c++) y += (double)wd[r * cols + c] * x[c];
            s += rd[r] * y;
          }
          return s;
        };
        EXPECT_LT(rel_err(dx, numeric_grad(L, x)), 2e-4);
      }
    }
}

TEST(OpsBackward, LinearWeightF32) {
  ThreadPool pool(2);
  const int64_t n = 5, rows = 7, cols = 9;
  auto xf = randn(n * cols, 1), r = randn(n * rows, 2), wf = randn(rows * cols, 3);
  std::vector<float> dw(rows * cols, 0.0f);
  cpu::linear_backward_weight(r.data(), xf.data(), dw.data(), n, rows, cols, 0.5f, pool);
  Vec w = to_d(wf);
  auto L = [&] {
    double s = 0;
    for (int64_t t = 0; t < n; t++)
      for (int64_t i = 0; i < rows; i++) {
        double y = 0;
        for (int64_t c = 0; c < cols; c++) y += w[i * cols + c] * xf[t * cols + c];
        s += 0.5 * r[t * rows + i] * y;
      }
    return s;
  };
  EXPECT_LT(rel_err(dw, numeric_grad(L, w)), 2e-4);
}
