// Sampling chain: greedy, truncations, penalties and seeded reproducibility.
#include <gtest/gtest.h>

#include <map>

#include "models/sampling.h"

using namespace engine;

static SamplingParams plain(float temp) {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = 0;
  p.top_p = 1;
  p.min_p = 0;
  p.seed = 1;
  return p;
}

TEST(Sampling, GreedyTakesTheFirstMaximum) {
  Sampler s(plain(0));
  std::vector<float> l = {0.1f, 3.0f, -1.0f, 3.0f};
  EXPECT_EQ(s.sample(l.data(), 4), 1);
}

TEST(Sampling, TopKOneIsGreedy) {
  auto p = plain(1.5f);
  p.top_k = 1;
  Sampler s(p);
  std::vector<float> l = {0.1f, 0.2f, 2.0f, 0.3f};
  for (int i = 0; i < 50; i++) EXPECT_EQ(s.sample(l.data(), 4), 2);
}

TEST(Sampling, TopPAndMinPTruncate) {
  std::vector<float> l = {5.0f, 4.9f, 0.0f, -1.0f};  // p ≈ 0.52, 0.47, 0.003, 0.001
  auto p = plain(1.0f);
  p.top_p = 0.9f;
  Sampler a(p);
  for (int i = 0; i < 200; i++) EXPECT_LT(a.sample(l.data(), 4), 2);
  auto q = plain(1.0f);
  q.min_p = 0.5f;
  Sampler b(q);
  for (int i = 0; i < 200; i++) EXPECT_LT(b.sample(l.data(), 4), 2);
}

TEST(Sampling, DistributionFollowsSoftmax) {
  std::vector<float> l = {std::log(0.2f), std::log(0.3f), std::log(0.5f)};
  Sampler s(plain(1.0f));
  std::map<int, int> c;
  const int N = 20000;
  for (int i = 0; i < N; i++) c[s.sample(l.data(), 3)]++;
  EXPECT_NEAR(c[0] / (double)N, 0.2, 0.02);
  EXPECT_NEAR(c[1] / (double)N, 0.3, 0.02);
  EXPECT_NEAR(c[2] / (double)N, 0.5, 0.02);
}

TEST(Sampling, SeedReproduces) {
  std::vector<float> l(50);
  for (int i = 0; i < 50; i++) l[i] = (float)(i % 7) * 0.3f;
  auto p = plain(1.0f);
  p.seed = 1234;
  Sampler a(p), b(p);
  for (int i = 0; i < 100; i++) EXPECT_EQ(a.sample(l.data(), 50), b.sample(l.data(), 50));
}

TEST(Sampling, RepetitionPenaltyDemotesSeenTokens) {
  auto p = plain(0);
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> l = {1.0f, 1.5f, -3.0f};
  EXPECT_EQ(s.sample(l.data(), 3), 1);
  s.accept(1);
  s.accept(1);  // seen twice, penalised once: 1.5 / 2 = 0.75 < 1.0
  EXPECT_EQ(s.sample(l.data(), 3), 0);
}
