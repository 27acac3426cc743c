// Spot checks: the comparison and tolerance rules, arbitration, the history
// and token bookkeeping of a rollback, and the test-only byzantine modes.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/error.h"
#include "net/byzantine.h"
#include "net/spot_check.h"

using namespace engine;
using namespace engine::net;

namespace {

std::vector<float> rows(int64_t n, int64_t e, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0, 1);
  std::vector<float> v((size_t)(n * e));
  for (auto& x : v) x = g(rng);
  return v;
}

}  // namespace

TEST(SpotCheck, RowErrorIsRelativeL2) {
  std::vector<float> b = {3, 4}, a = {3, 4.5};
  EXPECT_NEAR(row_error(a.data(), b.data(), 2), 0.5 / 5.0, 1e-12);
  std::vector<float> z = {0, 0};
  EXPECT_EQ(row_error(z.data(), z.data(), 2), 0.0);
  EXPECT_TRUE(std::isinf(row_error(a.data(), z.data(), 2)));
  std::vector<float> nan = {NAN, 4};
  EXPECT_TRUE(std::isinf(row_error(nan.data(), b.data(), 2)));
}

TEST(SpotCheck, FirstMismatchFindsTheFirstBadRow) {
  const int64_t N = 6, E = 16;
  auto ref = rows(N, E, 1);
  auto got = ref;
  EXPECT_EQ(first_mismatch(got.data(), ref.data(), N, E, 1e-2), -1);
  // Rounding to f16 (~1e-3 relative) is within the f16 tolerance.
  for (auto& x : got) x *= 1.0f + 1e-3f;
  EXPECT_EQ(first_mismatch(got.data(), ref.data(), N, E, spot_check_tolerance(DType::F16)), -1);
  // Noise of a tenth of the RMS on rows 3 and 5 is caught at row 3.
  auto noise = rows(N, E, 2);
  for (int64_t p : {3, 5})
    for (int64_t i = 0; i < E; i++) got[p * E + i] += 0.1f * noise[p * E + i];
  EXPECT_EQ(first_mismatch(got.data(), ref.data(), N, E, spot_check_tolerance(DType::F32)), 3);
  got[E] = NAN;
  EXPECT_EQ(first_mismatch(got.data(), ref.data(), N, E, 1e9), 1);
}

TEST(SpotCheck, ToleranceGrowsWithCoarserWireTypes) {
  EXPECT_LT(spot_check_tolerance(DType::F32), spot_check_tolerance(DType::F16));
  EXPECT_LT(spot_check_tolerance(DType::F16), spot_check_tolerance(DType::BF16));
  // Each is far below what a lie of a tenth of the signal gives.
  EXPECT_LT(spot_check_tolerance(DType::BF16), 0.2);
}

TEST(SpotCheck, ArbitrationNeedsAThirdServer) {
  EXPECT_EQ(arbitrate(-1, -2, -2), Verdict::kAgree);
  EXPECT_EQ(arbitrate(4, -2, -2), Verdict::kUnresolved);  // two servers: no majority
  EXPECT_EQ(arbitrate(4, 4, -1), Verdict::kPrimaryLies);  // W sides with V
  EXPECT_EQ(arbitrate(4, -1, 0), Verdict::kVerifierLies); // W sides with P
  EXPECT_EQ(arbitrate(4, 2, 3), Verdict::kUnresolved);    // W agrees with nobody
}

TEST(SpotCheck, TruncateHistoryCutsRowsAndSteps) {
  const int64_t E = 2;
  std::vector<float> r(7 * E);
  for (size_t i = 0; i < r.size(); i++) r[i] = (float)i;
  std::vector<int64_t> steps = {4, 1, 1, 1};  // a 4-token prompt, then 3 single tokens
  auto r1 = r;
  auto s1 = steps;
  truncate_history(r1, s1, E, 5);
  EXPECT_EQ(s1, (std::vector<int64_t>{4, 1}));
  EXPECT_EQ(r1.size(), 5u * E);
  EXPECT_EQ(r1.back(), 9.0f);
  auto r2 = r;
  auto s2 = steps;
  truncate_history(r2, s2, E, 2);  // inside the prompt's step: it is shortened
  EXPECT_EQ(s2, (std::vector<int64_t>{2}));
  EXPECT_EQ(r2.size(), 2u * E);
  auto r3 = r;
  auto s3 = steps;
  truncate_history(r3, s3, E, 0);
  EXPECT_TRUE(s3.empty() && r3.empty());
  auto r4 = r;
  auto s4 = steps;
  truncate_history(r4, s4, E, 100);  // nothing to cut
  EXPECT_EQ(s4, steps);
  EXPECT_EQ(r4, r);
}

TEST(SpotCheck, TokensToKeepAfterRollback) {
  // Prompt of 4 tokens, 6 generated (10 in all), session rolled back to k positions.
  EXPECT_EQ(tokens_to_keep(10, 4, 7), 8u);   // tokens 0..7 right; 8, 9 came from bad logits
  EXPECT_EQ(tokens_to_keep(10, 4, 2), 4u);   // rollback into the prompt: the prompt stays
  EXPECT_EQ(tokens_to_keep(10, 4, 0), 4u);
  EXPECT_EQ(tokens_to_keep(10, 4, 9), 10u);  // only the last position was bad
  EXPECT_EQ(tokens_to_keep(1, 1, 0), 1u);
}

TEST(Byzantine, ParsesModes) {
  auto m = parse_byzantine_mode("noise:0.5@10");
  EXPECT_EQ(m.kind, ByzantineMode::Kind::kNoise);
  EXPECT_DOUBLE_EQ(m.scale, 0.5);
  EXPECT_EQ(m.after_steps, 10u);
  EXPECT_EQ(parse_byzantine_mode("sign").kind, ByzantineMode::Kind::kSign);
  EXPECT_EQ(parse_byzantine_mode("sign@3").after_steps, 3u);
  for (const char* bad : {"", "noise", "noise:", "noise:-1", "noise:x", "sign@", "sign@-2", "flip", "noise:1@2x"})
    EXPECT_THROW(parse_byzantine_mode(bad), Error) << bad;
}

TEST(Byzantine, LiesOnlyAfterItsHonestSteps) {
  const int64_t N = 3, E = 32;
  auto ref = rows(N, E, 3);
  std::mt19937_64 rng(1);
  auto m = parse_byzantine_mode("noise:0.5@2");
  auto h = ref;
  byzantine_perturb(m, 1, h.data(), N, E, rng);
  EXPECT_EQ(h, ref);
  byzantine_perturb(m, 2, h.data(), N, E, rng);
  for (int64_t p = 0; p < N; p++) {
    double err = row_error(h.data() + p * E, ref.data() + p * E, E);
    EXPECT_GT(err, 0.2);  // noise of half the RMS over 32 values
    EXPECT_LT(err, 1.0);
  }
  h = ref;
  byzantine_perturb(parse_byzantine_mode("sign"), 0, h.data(), N, E, rng);
  EXPECT_NEAR(row_error(h.data(), ref.data(), E), 2.0, 1e-6);
}
