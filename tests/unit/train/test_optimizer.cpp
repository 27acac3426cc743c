// AdamW, the schedule and clipping against hand-computed values.
#include <gtest/gtest.h>

#include <cmath>

#include "train/optimizer.h"

using namespace engine::train;

TEST(Optimizer, AdamWMatchesTheFormula) {
  AdamWConfig c;
  c.weight_decay = 0.1f;
  AdamWState s;
  std::vector<float> p = {1.0f, -2.0f, 0.5f}, g1 = {0.5f, -1.0f, 0.0f}, g2 = {0.1f, 0.2f, -0.3f};
  std::vector<double> pd(p.begin(), p.end()), m(3, 0), v(3, 0);
  const float lr = 0.01f;
  for (int t = 1; t <= 2; t++) {
    const auto& g = t == 1 ? g1 : g2;
    adamw_step(p.data(), g.data(), 3, s, c, lr);
    for (int i = 0; i < 3; i++) {
      m[i] = 0.9 * m[i] + 0.1 * g[i];
      v[i] = 0.999 * v[i] + 0.001 * g[i] * g[i];
      double mh = m[i] / (1 - std::pow(0.9, t)), vh = v[i] / (1 - std::pow(0.999, t));
      pd[i] -= lr * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * pd[i]);
      EXPECT_NEAR(p[i], pd[i], 1e-6) << "t=" << t << " i=" << i;
    }
  }
  EXPECT_EQ(s.t, 2);
  // First step moves every coordinate with a gradient by ~lr (Adam's sign-like start).
  AdamWState s2;
  std::vector<float> q = {0.0f};
  float gq = 123.0f;
  adamw_step(q.data(), &gq, 1, s2, AdamWConfig{}, 0.01f);
  EXPECT_NEAR(q[0], -0.01f, 1e-6);
}

TEST(Optimizer, WarmupThenCosine) {
  const float lr = 1e-2f;
  EXPECT_FLOAT_EQ(lr_schedule(0, 100, 10, lr, 0.1f), lr / 10);
  EXPECT_FLOAT_EQ(lr_schedule(9, 100, 10, lr, 0.1f), lr);
  EXPECT_FLOAT_EQ(lr_schedule(10, 100, 10, lr, 0.1f), lr);
  EXPECT_NEAR(lr_schedule(99, 100, 10, lr, 0.1f), lr * 0.1f, 1e-9);
  float prev = lr;
  for (int s = 10; s < 100; s++) {
    float x = lr_schedule(s, 100, 10, lr, 0.1f);
    EXPECT_LE(x, prev + 1e-9f);
    prev = x;
  }
  EXPECT_FLOAT_EQ(lr_schedule(0, 1, 0, lr, 0.0f), lr);  // a one-step run
}

TEST(Optimizer, ClipGradNorm) {
  std::vector<float> g = {3.0f, 4.0f};
  EXPECT_FLOAT_EQ(clip_grad_norm(g.data(), 2, 10.0f), 5.0f);
  EXPECT_FLOAT_EQ(g[0], 3.0f);
  EXPECT_FLOAT_EQ(clip_grad_norm(g.data(), 2, 1.0f), 5.0f);
  EXPECT_NEAR(g[0], 0.6f, 1e-6);
  EXPECT_NEAR(g[1], 0.8f, 1e-6);
  EXPECT_FLOAT_EQ(clip_grad_norm(g.data(), 2, 0.0f), 1.0f);  // disabled
}
