// Q6_K rows: our dequantizer against ggml's reference loop (written here in its own
// form, so a layout slip in either shows), and the quantizer's round-trip error.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/dtype.h"

using namespace engine;

namespace {

// ggml's dequantize_row_q6_K, as its reference implementation walks a block: two halves
// of 128 values, 32 positions l, four values per position.
void ggml_form_dequant(const BlockQ6_K& b, float* y) {
  const float d = f16_to_f32(b.d);
  const uint8_t* ql = b.ql;
  const uint8_t* qh = b.qh;
  const int8_t* sc = b.scales;
  for (int n = 0; n < 256; n += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = (int8_t)((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = (int8_t)((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * sc[is + 0] * q1;
      y[l + 32] = d * sc[is + 2] * q2;
      y[l + 64] = d * sc[is + 4] * q3;
      y[l + 96] = d * sc[is + 6] * q4;
    }
    y += 128;
    ql += 64;
    qh += 32;
    sc += 8;
  }
}

}  // namespace

TEST(Q6K, TypeIsKnownWithGgmlSizes) {
  EXPECT_TRUE(dtype_known(14));
  EXPECT_STREQ(dtype_name(DType::Q6_K), "Q6_K");
  EXPECT_EQ(dtype_block_size(DType::Q6_K), 256);
  EXPECT_EQ(dtype_row_bytes(DType::Q6_K, 2048), 8u * 210u);
  DType t;
  EXPECT_TRUE(dtype_from_name_head("q6_k", &t));
  EXPECT_EQ(t, DType::Q6_K);
  EXPECT_FALSE(dtype_from_name("q6_k", &t));  // not a type every weight path takes
}

TEST(Q6K, DequantizeMatchesGgmlLayoutOnRandomBytes) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; trial++) {
    BlockQ6_K b;
    auto* bytes = (uint8_t*)&b;
    for (size_t i = 0; i < sizeof(b); i++) bytes[i] = (uint8_t)rng();
    b.d = f32_to_f16(std::ldexp(1.0f, (int)(rng() % 10) - 12));
    float ours[256], ref[256];
    dequantize_row(DType::Q6_K, &b, ours, 256);
    ggml_form_dequant(b, ref);
    for (int i = 0; i < 256; i++) ASSERT_EQ(ours[i], ref[i]) << "trial " << trial << " value " << i;
  }
}

TEST(Q6K, RoundTripErrorIsSmall) {
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0, 1);
  const int n = 256 * 64;
  std::vector<float> x(n), y(n);
  for (auto& v : x) v = N(rng);
  x[5] = 9.0f, x[300] = -11.0f;  // outliers set their sub-block's scale
  std::vector<uint8_t> q(dtype_row_bytes(DType::Q6_K, n));
  quantize_row(DType::Q6_K, x.data(), q.data(), n);
  dequantize_row(DType::Q6_K, q.data(), y.data(), n);
  double se = 0, sx = 0;
  for (int i = 0; i < n; i++) {
    se += (double)(x[i] - y[i]) * (x[i] - y[i]);
    sx += (double)x[i] * x[i];
    // Each value within half a step of its sub-block's grid (plus the int8 scale's rounding).
  }
  // 6 bits over ~4 standard deviations: a relative RMS error near 1.5%.
  EXPECT_LT(std::sqrt(se / sx), 0.03);
  EXPECT_NEAR(y[5], 9.0f, 0.2f);
  EXPECT_NEAR(y[300], -11.0f, 0.25f);
}

TEST(Q6K, ZeroAndConstantBlocks) {
  std::vector<float> zero(256, 0.0f), one(256, 0.5f), y(256);
  std::vector<uint8_t> q(210);
  quantize_row(DType::Q6_K, zero.data(), q.data(), 256);
  dequantize_row(DType::Q6_K, q.data(), y.data(), 256);
  for (float v : y) EXPECT_EQ(v, 0.0f);
  quantize_row(DType::Q6_K, one.data(), q.data(), 256);
  dequantize_row(DType::Q6_K, q.data(), y.data(), 256);
  for (float v : y) EXPECT_NEAR(v, 0.5f, 0.5f / 64);
}
