// CenteredClip and the weighted mean against a plain double-precision reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "core/error.h"
#include "train/centered_clip.h"

using namespace engine::train;

namespace {

using Vecs = std::vector<std::vector<float>>;

std::vector<const float*> ptrs(const Vecs& v) {
  std::vector<const float*> p;
  for (auto& x : v) p.push_back(x.data());
  return p;
}

std::vector<double> ref_mean(const Vecs& g, const std::vector<double>& w) {
  std::vector<double> m(g[0].size(), 0.0);
  double W = 0;
  for (size_t i = 0; i < g.size(); i++) {
    W += w[i];
    for (size_t k = 0; k < m.size(); k++) m[k] += w[i] * g[i][k];
  }
  for (auto& x : m) x /= W;
  return m;
}

// The textbook algorithm, everything in double: lower weighted median, then
// x += Σ wᵢ·min(1, τ/‖gᵢ−x‖)·(gᵢ−x) / Σ wᵢ until the step is small.
std::vector<double> ref_clip(const Vecs& g, const std::vector<double>& w, double tau, int iters, double tol) {
  const size_t n = g.size(), d = g[0].size();
  double W = 0;
  for (double x : w) W += x;
  std::vector<double> x(d);
  for (size_t k = 0; k < d; k++) {
    std::vector<std::pair<double, double>> col;
    for (size_t i = 0; i < n; i++) col.push_back({g[i][k], w[i]});
    std::sort(col.begin(), col.end());
    double cum = 0;
    for (auto& [v, wt] : col) {
      cum += wt;
      if (cum >= W / 2) {
        x[k] = v;
        break;
      }
    }
  }
  for (int it = 0; it < iters; it++) {
    std::vector<double> c(n);
    for (size_t i = 0; i < n; i++) {
      double s = 0;
      for (size_t k = 0; k < d; k++) s += (g[i][k] - x[k]) * (g[i][k] - x[k]);
      c[i] = std::min(1.0, tau / std::sqrt(s));
    }
    double step = 0, norm = 0;
    for (size_t k = 0; k < d; k++) {
      double s = 0;
      for (size_t i = 0; i < n; i++) s += w[i] * c[i] * (g[i][k] - x[k]);
      x[k] += s / W;
      step += (s / W) * (s / W);
      norm += x[k] * x[k];
    }
    if (std::sqrt(step) <= tol * (1 + std::sqrt(norm))) break;
  }
  return x;
}

double dist(const std::vector<float>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); k++) s += (a[k] - b[k]) * (a[k] - b[k]);
  return std::sqrt(s);
}

Vecs random_vecs(std::mt19937& rng, int n, int d, float scale = 1.0f) {
  std::normal_distribution<float> N(0.0f, scale);
  Vecs v(n, std::vector<float>(d));
  for (auto& x : v)
    for (auto& e : x) e = N(rng);
  return v;
}

}  // namespace

TEST(CenteredClip, AggregatorNames) {
  Aggregator a;
  ASSERT_TRUE(aggregator_from_name("mean", &a));
  EXPECT_EQ(a, Aggregator::Mean);
  ASSERT_TRUE(aggregator_from_name("centered-clip", &a));
  EXPECT_EQ(a, Aggregator::CenteredClip);
  EXPECT_FALSE(aggregator_from_name("median", &a));
}

TEST(CenteredClip, WeightedMeanToF32Rounding) {
  std::mt19937 rng(1);
  Vecs g = random_vecs(rng, 5, 333);
  std::vector<double> w = {1, 2.5, 0.25, 7, 3};
  std::vector<float> out(333);
  aggregate(Aggregator::Mean, ptrs(g), w, 333, {}, out.data());
  auto ref = ref_mean(g, w);
  for (size_t k = 0; k < out.size(); k++) EXPECT_EQ(out[k], (float)ref[k]) << k;
}

TEST(CenteredClip, MatchesDoubleReference) {
  std::mt19937 rng(2);
  for (int trial = 0; trial < 5; trial++) {
    const int n = 3 + trial, d = 200;
    Vecs g = random_vecs(rng, n, d);
    std::uniform_real_distribution<double> U(0.5, 2.0);
    std::vector<double> w(n);
    for (auto& x : w) x = U(rng);
    // Inputs are ~sqrt(2d) = 20 apart; tau = 5 clips most of them in most steps.
    ClipConfig c{5.0f, 200, 1e-9f};
    ClipStats st;
    std::vector<float> out(d);
    aggregate(Aggregator::CenteredClip, ptrs(g), w, d, c, out.data(), &st);
    auto ref = ref_clip(g, w, 5.0, 200, 1e-9);
    EXPECT_GT(st.clipped, 0);
    for (int k = 0; k < d; k++) EXPECT_NEAR(out[k], ref[k], 2e-5) << "trial " << trial << " k " << k;
  }
}

TEST(CenteredClip, InfiniteTauIsTheWeightedMean) {
  std::mt19937 rng(3);
  Vecs g = random_vecs(rng, 4, 500, 3.0f);
  std::vector<double> w = {1, 2, 3, 4};
  ClipConfig c;
  c.tau = std::numeric_limits<float>::infinity();
  ClipStats st;
  std::vector<float> out(500);
  aggregate(Aggregator::CenteredClip, ptrs(g), w, 500, c, out.data(), &st);
  auto ref = ref_mean(g, w);
  EXPECT_EQ(st.clipped, 0);
  EXPECT_LE(st.iterations, 2);  // the mean after one step; the second step is ~0
  for (size_t k = 0; k < out.size(); k++) EXPECT_NEAR(out[k], ref[k], 4e-7 * (1 + std::fabs(ref[k]))) << k;
}

TEST(CenteredClip, OneLiarAtThousandTimesScale) {
  // Honest inputs: a common vector (entries ~N(0,1)) plus noise with σ = 0.01 per
  // coordinate over 1000 coordinates, so each lies ~0.01·√1000 ≈ 0.32 from the
  // honest mean: well inside τ = 1, never clipped. The liar sends 1000× the common
  // vector (~30 000 away) and is always clipped to a pull of τ; at the fixed point
  // 3·(h̄ − x) + τ·u = 0, so x sits τ/3 from the honest mean h̄: within τ/2.
  std::mt19937 rng(4);
  const int d = 1000;
  Vecs base = random_vecs(rng, 1, d);
  Vecs noise = random_vecs(rng, 3, d, 0.01f);
  Vecs g(4, std::vector<float>(d));
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < d; k++) g[i][k] = base[0][k] + noise[i][k];
  for (int k = 0; k < d; k++) g[3][k] = 1000.0f * base[0][k];
  std::vector<double> w(4, 1.0);
  const float tau = 1.0f;
  auto honest = ref_mean(Vecs(g.begin(), g.begin() + 3), {1, 1, 1});
  for (int i = 0; i < 3; i++) ASSERT_LT(dist(g[i], honest), tau);

  std::vector<float> out(d);
  ClipStats st;
  aggregate(Aggregator::CenteredClip, ptrs(g), w, d, ClipConfig{tau, 50, 1e-7f}, out.data(), &st);
  EXPECT_LT(dist(out, honest), tau / 2);
  EXPECT_EQ(st.clipped, 1);
  // The plain mean would be ~250× the vector away.
  std::vector<float> mean(d);
  aggregate(Aggregator::Mean, ptrs(g), w, d, {}, mean.data());
  EXPECT_GT(dist(mean, honest), 1000.0);
}

TEST(CenteredClip, RelativeTauFollowsTheHonestSpreadAndCapsWeights) {
  // Honest inputs at any scale s: common vector·s plus noise σ·s. With τ relative
  // (1 × the median distance from the coordinate-wise median, ~ the honest spread),
  // one liar sending -1000× the common vector moves the result by ~τ/3 at every
  // scale; claiming a million times the weight buys it at most the 2× cap (~2τ/3),
  // where uncapped it would drag the result many spreads away.
  for (float scale : {1e-4f, 1.0f, 1e3f}) {
    std::mt19937 rng(9);
    const int d = 1000;
    Vecs base = random_vecs(rng, 1, d, scale);
    Vecs noise = random_vecs(rng, 3, d, 0.01f * scale);
    Vecs g(4, std::vector<float>(d));
    for (int i = 0; i < 3; i++)
      for (int k = 0; k < d; k++) g[i][k] = base[0][k] + noise[i][k];
    for (int k = 0; k < d; k++) g[3][k] = -1000.0f * base[0][k];
    auto honest = ref_mean(Vecs(g.begin(), g.begin() + 3), {1, 1, 1});
    double spread = 0;
    for (int i = 0; i < 3; i++) spread = std::max(spread, dist(g[i], honest));
    ClipConfig c{1.0f, 50, 1e-7f};
    c.relative = true;
    c.max_weight_ratio = 2;
    std::vector<float> out(d);
    ClipStats st;
    aggregate(Aggregator::CenteredClip, ptrs(g), {1, 1, 1, 1}, d, c, out.data(), &st);
    EXPECT_LT(dist(out, honest), 0.5 * spread) << "scale " << scale;
    EXPECT_GT(st.tau, 0.5 * spread) << "scale " << scale;
    EXPECT_LT(st.tau, 4 * spread) << "scale " << scale;
    aggregate(Aggregator::CenteredClip, ptrs(g), {1, 1, 1, 1e6}, d, c, out.data(), &st);
    EXPECT_LT(dist(out, honest), 1.5 * spread) << "scale " << scale;
    c.max_weight_ratio = 0;
    aggregate(Aggregator::CenteredClip, ptrs(g), {1, 1, 1, 1e6}, d, c, out.data(), &st);
    EXPECT_GT(dist(out, honest), 3 * spread) << "scale " << scale << ": uncapped, the weight should win";
  }
}

TEST(CenteredClip, RejectsBadWeights) {
  std::vector<float> a = {1, 2}, out(2);
  EXPECT_THROW(aggregate(Aggregator::Mean, {a.data()}, {0.0}, 2, {}, out.data()), engine::Error);
  EXPECT_THROW(aggregate(Aggregator::Mean, {}, {}, 2, {}, out.data()), engine::Error);
  EXPECT_THROW(aggregate(Aggregator::CenteredClip, {a.data()}, {std::nan("")}, 2, {}, out.data()), engine::Error);
}
