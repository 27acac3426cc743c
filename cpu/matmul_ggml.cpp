// llama.cpp's arithmetic in scalar code: every FMA is std::fma, every sum is
// associated as ggml's vector code associates it (see matmul_ggml.h), so the
// results are those of matmul_ggml_avx2.cpp on any CPU.
#include "cpu/matmul_ggml.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu_features.h"
#include "core/dtype.h"

namespace engine::cpu::ggml {
namespace {

// A product rounded to float on its own: the barrier keeps a compiler that fuses
// a·b + c (-ffp-contract=fast) from turning the add that follows into an FMA.
inline float mul_rounded(float a, float b) {
  float p = a * b;
  __asm__("" : "+m"(p));
  return p;
}

inline float half_to_float(uint16_t h) { return f16_to_f32(h); }

inline float hsum8(const float* a) {
  const float x0 = a[4] + a[0], x1 = a[5] + a[1], x2 = a[6] + a[2], x3 = a[7] + a[3];
  return (x0 + x2) + (x1 + x3);
}

inline float reduce8(const float* a) {
  const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
  return (t0 + t1) + (t2 + t3);
}

// ggml_v_expf (AVX2 variant), one lane.
float v_expf(float x) {
  auto bits = [](float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; };
  auto from = [](uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; };
  const float r = 0x1.8p23f;
  const float z = std::fma(x, 0x1.715476p+0f, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20f, std::fma(-n, 0x1.62e4p-1f, x));
  const uint32_t e = bits(z) << 23;
  const float k = from(e + bits(1.0f));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u,
                                    std::fma(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
                           u, 0x1.ffffecp-1f * b);
  if (!(std::fabs(n) > 126)) return std::fma(j, k, k);
  const uint32_t g = n <= 0 ? 0x82000000u : 0u;
  const float s1 = from(g + 0x7f000000u), s2 = from(e - g);
  if (std::fabs(n) > 192) return s1 * s1;
  return std::fma(s2, j, s2) * s1;
}

// ggml_vec_dot_f32
float vec_dot_f32(const float* x, const float* y, int64_t n) {
  const int64_t np = n & ~int64_t(31);
  float acc[4][8] = {};
  for (int64_t i = 0; i < np; i += 32)
    for (int a = 0; a < 4; a++)
      for (int l = 0; l < 8; l++) acc[a][l] = std::fma(x[i + 8 * a + l], y[i + 8 * a + l], acc[a][l]);
  float s[8];
  for (int l = 0; l < 8; l++) s[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  float sum = reduce8(s);
  for (int64_t i = np; i < n; i++) sum += mul_rounded(x[i], y[i]);
  return sum;
}

// tinyBLAS<8>: one 8-lane accumulator, k % 8 == 0
float dot_lanes(const float* x, const float* y, int64_t k) {
  float acc[8] = {};
  for (int64_t i = 0; i < k; i += 8)
    for (int l = 0; l < 8; l++) acc[l] = std::fma(x[i + l], y[i + l], acc[l]);
  return hsum8(acc);
}

void f32_rows(const WeightView& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok, float* y, bool add) {
  const bool tiny = n_tok >= 2 && w.cols % 8 == 0;
  for (int64_t r = r0; r < r1; r++) {
    const float* wr = (const float*)((const char*)w.data + (size_t)r * w.row_bytes);
    for (int64_t t = 0; t < n_tok; t++) {
      const float* xt = x + t * w.cols;
      const float s = tiny ? dot_lanes(wr, xt, w.cols) : vec_dot_f32(wr, xt, w.cols);
      float& out = y[t * w.rows + r];
      out = add ? out + s : s;
    }
  }
}

void attend_f16(const float* q, const uint16_t* k, const uint16_t* v, int64_t kv_stride, int64_t n_keys, int64_t hd,
                float scale, bool batch, float* out, float* scratch) {
  float* e = scratch;  // n_keys scores, then weights; zero-padded to whole groups of 8
  float* acc = scratch + n_keys + 8;
  // kq
  for (int64_t j = 0; j < n_keys; j++) {
    const uint16_t* kr = k + j * kv_stride;
    float dot;
    if (batch && hd % 8 == 0) {
      float a[8] = {};
      for (int64_t i = 0; i < hd; i += 8)
        for (int l = 0; l < 8; l++) a[l] = std::fma(half_to_float(kr[i + l]), q[i + l], a[l]);
      dot = hsum8(a);
    } else {  // ggml_vec_dot_f16
      const int64_t np = hd & ~int64_t(31);
      float a[4][8] = {};
      for (int64_t i = 0; i < np; i += 32)
        for (int b = 0; b < 4; b++)
          for (int l = 0; l < 8; l++) a[b][l] = std::fma(half_to_float(kr[i + 8 * b + l]), q[i + 8 * b + l], a[b][l]);
      float s[8];
      for (int l = 0; l < 8; l++) s[l] = (a[0][l] + a[2][l]) + (a[1][l] + a[3][l]);
      double sum = reduce8(s);
      for (int64_t i = np; i < hd; i++) sum += (double)(half_to_float(kr[i]) * q[i]);  // exact product
      dot = (float)sum;
    }
    e[j] = dot * scale;
  }
  // soft_max
  float mx = -INFINITY;
  for (int64_t j = 0; j < n_keys; j++) mx = std::max(mx, e[j]);
  const int64_t n8 = (n_keys + 7) / 8 * 8;
  for (int64_t j = 0; j < n_keys; j++) e[j] = v_expf(e[j] - mx);
  for (int64_t j = n_keys; j < n8; j++) e[j] = 0.0f;
  double sum = 0;
  for (int64_t j = 0; j < n8; j += 8) sum += (double)hsum8(e + j);
  const float inv = (float)(1.0 / sum);
  for (int64_t j = 0; j < n_keys; j++) e[j] = half_to_float(f32_to_f16(e[j] * inv));
  // kqv
  if (batch) {  // tinyBLAS<8> over the keys: lane l takes keys j ≡ l (mod 8)
    std::fill(acc, acc + 8 * hd, 0.0f);
    for (int64_t j = 0; j < n_keys; j++) {
      float* a = acc + (j & 7) * hd;
      const uint16_t* vr = v + j * kv_stride;
      for (int64_t i = 0; i < hd; i++) a[i] = std::fma(half_to_float(vr[i]), e[j], a[i]);
    }
    float lanes[8];
    for (int64_t i = 0; i < hd; i++) {
      for (int l = 0; l < 8; l++) lanes[l] = acc[l * hd + i];
      out[i] = hsum8(lanes);
    }
  } else {  // ggml_vec_dot_f16 over the (padded) keys: key j → accumulator (j/8)%4, lane j%8
    std::fill(acc, acc + 32 * hd, 0.0f);
    for (int64_t j = 0; j < n_keys; j++) {
      float* a = acc + (((j >> 3) & 3) * 8 + (j & 7)) * hd;
      const uint16_t* vr = v + j * kv_stride;
      for (int64_t i = 0; i < hd; i++) a[i] = std::fma(half_to_float(vr[i]), e[j], a[i]);
    }
    float s[8];
    for (int64_t i = 0; i < hd; i++) {
      for (int l = 0; l < 8; l++)
        s[l] = (acc[(0 * 8 + l) * hd + i] + acc[(2 * 8 + l) * hd + i]) +
               (acc[(1 * 8 + l) * hd + i] + acc[(3 * 8 + l) * hd + i]);
      out[i] = reduce8(s);
    }
  }
}

void swiglu_row(const float* g, const float* u, float* a, int64_t n) {
  int64_t i = 0;
  for (; i + 7 < n; i += 8)  // whole vectors
    for (int64_t l = i; l < i + 8; l++) a[l] = g[l] / (1.0f + v_expf(0.0f - g[l])) * u[l];
  for (; i < n; i++) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace

const Kernels kScalar = {f32_rows, attend_f16, swiglu_row};

const Kernels& kernels() {
  if (!cpu_features().avx2 || std::strcmp(kernel_name(), "scalar") == 0) return kScalar;
  return kAvx2;
}

}  // namespace engine::cpu::ggml
