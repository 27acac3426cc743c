// llama.cpp's arithmetic with AVX2 + FMA + F16C intrinsics: the same vector
// operations, in the same order, as ggml's x86 AVX2 kernels (matmul_ggml.h).
// Called only when cpu_features().avx2.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "cpu/matmul_ggml.h"

namespace engine::cpu::ggml {
namespace {

// tinyBLAS hsum(__m256), also soft_max's per-vector sum.
inline float hsum8(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// GGML_F32x8_REDUCE's last step.
inline float reduce8(__m256 v) {
  const __m128 t0 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t1 = _mm_hadd_ps(t0, t0);
  return _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
}

// A product rounded on its own (see matmul_ggml.cpp): this file is built with -mfma.
inline float mul_rounded(float a, float b) {
  float p = a * b;
  __asm__("" : "+x"(p));
  return p;
}

inline __m256 load_half(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }

// ggml_v_expf, AVX2 variant (ARM's optimized-routines expf: max error 1.45 ulp + 0.5).
inline __m256 v_expf(__m256 x) {
  const __m256 r = _mm256_set1_ps(0x1.8p23f);
  const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), r);
  const __m256 n = _mm256_sub_ps(z, r);
  const __m256 b = _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                    _mm256_fnmadd_ps(n, _mm256_set1_ps(0x1.62e4p-1f), x));
  const __m256i e = _mm256_slli_epi32(_mm256_castps_si256(z), 23);
  const __m256 k = _mm256_castsi256_ps(_mm256_add_epi32(e, _mm256_castps_si256(_mm256_set1_ps(1))));
  const __m256i c =
      _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(126), _CMP_GT_OQ));
  const __m256 u = _mm256_mul_ps(b, b);
  const __m256 j = _mm256_fmadd_ps(
      _mm256_fmadd_ps(_mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
                      _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
      u, _mm256_mul_ps(_mm256_set1_ps(0x1.ffffecp-1f), b));
  if (!_mm256_movemask_ps(_mm256_castsi256_ps(c))) return _mm256_fmadd_ps(j, k, k);
  const __m256i g = _mm256_and_si256(_mm256_castps_si256(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_LE_OQ)),
                                     _mm256_set1_epi32((int)0x82000000u));
  const __m256 s1 = _mm256_castsi256_ps(_mm256_add_epi32(g, _mm256_set1_epi32(0x7f000000)));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_sub_epi32(e, g));
  const __m256i d =
      _mm256_castps_si256(_mm256_cmp_ps(_mm256_andnot_ps(_mm256_set1_ps(-0.f), n), _mm256_set1_ps(192), _CMP_GT_OQ));
  return _mm256_or_ps(
      _mm256_and_ps(_mm256_castsi256_ps(d), _mm256_mul_ps(s1, s1)),
      _mm256_andnot_ps(_mm256_castsi256_ps(d),
                       _mm256_or_ps(_mm256_and_ps(_mm256_castsi256_ps(c), _mm256_mul_ps(_mm256_fmadd_ps(s2, j, s2), s1)),
                                    _mm256_andnot_ps(_mm256_castsi256_ps(c), _mm256_fmadd_ps(k, j, k)))));
}

// ggml_vec_dot_f32
float vec_dot_f32(const float* x, const float* y, int64_t n) {
  const int64_t np = n & ~int64_t(31);
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < np; i += 32) {
    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i), a0);
    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8), _mm256_loadu_ps(y + i + 8), a1);
    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 16), _mm256_loadu_ps(y + i + 16), a2);
    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 24), _mm256_loadu_ps(y + i + 24), a3);
  }
  float sum = reduce8(_mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3)));
  for (int64_t i = np; i < n; i++) sum += mul_rounded(x[i], y[i]);
  return sum;
}

// tinyBLAS<8, __m256>: a tile of RM rows × RN tokens, one accumulator per output.
template <int RM, int RN>
void tile(const float* const* w, const float* const* x, int64_t k, float out[4][3]) {
  __m256 c[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) c[i][j] = _mm256_setzero_ps();
  for (int64_t l = 0; l < k; l += 8) {
    __m256 xv[RN];
    for (int j = 0; j < RN; j++) xv[j] = _mm256_loadu_ps(x[j] + l);
    for (int i = 0; i < RM; i++) {
      const __m256 wv = _mm256_loadu_ps(w[i] + l);
      for (int j = 0; j < RN; j++) c[i][j] = _mm256_fmadd_ps(wv, xv[j], c[i][j]);
    }
  }
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) out[i][j] = hsum8(c[i][j]);
}

void f32_rows(const WeightView& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok, float* y, bool add) {
  auto row = [&](int64_t r) { return (const float*)((const char*)w.data + (size_t)r * w.row_bytes); };
  auto put = [&](int64_t r, int64_t t, float s) {
    float& o = y[t * w.rows + r];
    o = add ? o + s : s;
  };
  if (!(n_tok >= 2 && w.cols % 8 == 0)) {
    for (int64_t r = r0; r < r1; r++)
      for (int64_t t = 0; t < n_tok; t++) put(r, t, vec_dot_f32(row(r), x + t * w.cols, w.cols));
    return;
  }
  float out[4][3];
  for (int64_t r = r0; r < r1; r += 4) {
    const int rm = (int)std::min<int64_t>(4, r1 - r);
    const float* wr[4];
    for (int i = 0; i < rm; i++) wr[i] = row(r + i);
    for (int64_t t = 0; t < n_tok; t += 3) {
      const int rn = (int)std::min<int64_t>(3, n_tok - t);
      const float* xr[3];
      for (int j = 0; j < rn; j++) xr[j] = x + (t + j) * w.cols;
      if (rm == 4 && rn == 3) {
        tile<4, 3>(wr, xr, w.cols, out);
      } else {
        for (int i = 0; i < rm; i++)
          for (int j = 0; j < rn; j++) {
            float o[4][3];
            tile<1, 1>(wr + i, xr + j, w.cols, o);
            out[i][j] = o[0][0];
          }
      }
      for (int i = 0; i < rm; i++)
        for (int j = 0; j < rn; j++) put(r + i, t + j, out[i][j]);
    }
  }
}

void attend_f16(const float* q, const uint16_t* k, const uint16_t* v, int64_t kv_stride, int64_t n_keys, int64_t hd,
                float scale, bool batch, float* out, float* scratch) {
  float* e = scratch;  // n_keys scores, then weights; zero-padded to whole groups of 8
  float* acc = scratch + n_keys + 8;
  // kq
  const int64_t np = hd & ~int64_t(31);
  for (int64_t j = 0; j < n_keys; j++) {
    const uint16_t* kr = k + j * kv_stride;
    float dot;
    if (batch && hd % 8 == 0) {  // tinyBLAS<8> F16
      __m256 a = _mm256_setzero_ps();
      for (int64_t i = 0; i < hd; i += 8) a = _mm256_fmadd_ps(load_half(kr + i), _mm256_loadu_ps(q + i), a);
      dot = hsum8(a);
    } else {  // ggml_vec_dot_f16
      __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
      for (int64_t i = 0; i < np; i += 32) {
        a0 = _mm256_fmadd_ps(load_half(kr + i), _mm256_loadu_ps(q + i), a0);
        a1 = _mm256_fmadd_ps(load_half(kr + i + 8), _mm256_loadu_ps(q + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_half(kr + i + 16), _mm256_loadu_ps(q + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_half(kr + i + 24), _mm256_loadu_ps(q + i + 24), a3);
      }
      double sum = reduce8(_mm256_add_ps(_mm256_add_ps(a0, a2), _mm256_add_ps(a1, a3)));
      for (int64_t i = np; i < hd; i++) sum += (double)(_cvtsh_ss(kr[i]) * q[i]);  // exact product
      dot = (float)sum;
    }
    e[j] = mul_rounded(dot, scale);
  }
  // soft_max: e^(s − max) per whole vector of 8 keys; padded keys weigh 0.
  float mx = -INFINITY;
  for (int64_t j = 0; j < n_keys; j++) mx = std::max(mx, e[j]);
  const int64_t n8 = (n_keys + 7) / 8 * 8;
  for (int64_t j = n_keys; j < n8; j++) e[j] = mx;
  const __m256 vmx = _mm256_set1_ps(mx);
  double sum = 0;
  for (int64_t j = 0; j < n8; j += 8) {
    __m256 ev = v_expf(_mm256_sub_ps(_mm256_loadu_ps(e + j), vmx));
    if (j + 8 > n_keys) {
      const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
      const __m256i live = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n_keys - j)), lane);
      ev = _mm256_and_ps(ev, _mm256_castsi256_ps(live));
    }
    _mm256_storeu_ps(e + j, ev);
    sum += (double)hsum8(ev);
  }
  const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
  for (int64_t j = 0; j < n8; j += 8)  // × 1/Σ, then rounded to f16 (the kqv product's vec_dot_type)
    _mm256_storeu_ps(e + j, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_mul_ps(_mm256_loadu_ps(e + j), inv),
                                                            _MM_FROUND_TO_NEAREST_INT)));
  // kqv
  const int64_t hv = hd & ~int64_t(7);
  const int n_acc = batch ? 8 : 32;
  std::fill(acc, acc + n_acc * hd, 0.0f);
  for (int64_t j = 0; j < n_keys; j++) {
    // tinyBLAS<8>: lane j % 8.  ggml_vec_dot_f16: accumulator (j/8) % 4, lane j % 8.
    float* a = acc + (batch ? (j & 7) : ((j >> 3) & 3) * 8 + (j & 7)) * hd;
    const uint16_t* vr = v + j * kv_stride;
    const __m256 p = _mm256_set1_ps(e[j]);
    int64_t i = 0;
    for (; i < hv; i += 8) _mm256_storeu_ps(a + i, _mm256_fmadd_ps(load_half(vr + i), p, _mm256_loadu_ps(a + i)));
    for (; i < hd; i++) a[i] = std::fma(_cvtsh_ss(vr[i]), e[j], a[i]);
  }
  auto L = [&](int l, int64_t i) { return acc[l * hd + i]; };
  if (batch) {
    for (int64_t i = 0; i < hd; i++)  // hsum8 over the lanes
      out[i] = ((L(4, i) + L(0, i)) + (L(6, i) + L(2, i))) + ((L(5, i) + L(1, i)) + (L(7, i) + L(3, i)));
  } else {
    for (int64_t i = 0; i < hd; i++) {
      float s[8];
      for (int l = 0; l < 8; l++) s[l] = (L(l, i) + L(16 + l, i)) + (L(8 + l, i) + L(24 + l, i));
      out[i] = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));  // reduce8
    }
  }
}

void swiglu_row(const float* g, const float* u, float* a, int64_t n) {
  int64_t i = 0;
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  for (; i + 7 < n; i += 8) {
    const __m256 x = _mm256_loadu_ps(g + i);
    const __m256 silu = _mm256_div_ps(x, _mm256_add_ps(one, v_expf(_mm256_sub_ps(zero, x))));
    _mm256_storeu_ps(a + i, _mm256_mul_ps(silu, _mm256_loadu_ps(u + i)));
  }
  for (; i < n; i++) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

}  // namespace

const Kernels kAvx2 = {f32_rows, attend_f16, swiglu_row};

}  // namespace engine::cpu::ggml
