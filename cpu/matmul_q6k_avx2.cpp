// Q6_K matrix-vector products on AVX2 (also called by the AVX-512 family): the output
// head llama.cpp-style quantized files carry. Each row streams once; activations are
// the Q8 blocks of 32 the Q8_0 path uses (matmul.cpp quantizes them), so a chunk of 32
// codes meets exactly one activation block:
//   dot = Σ_chunks d_x · d · Σ_{s = 2 sub-blocks} scale_s · Σ_{16} (q − 32) · x_q
// with vpmaddubsw (codes 0..63 unsigned × int8; the −32 as a second vpmaddubsw of
// 32s, pair sums ≤ 2·63·127) and vpmaddwd against the two sub-block scales; exact in
// int32 up to the per-chunk float scale, like the Q8_0 kernel. (Precomputing the −32
// term per activation block and the d·d_x vector per block measured no faster: at two
// threads this kernel reads ~27 GB/s of a measured 32.)
#include <immintrin.h>

#include <cstring>

#include "cpu/matmul_internal.h"

namespace engine::cpu::detail {

namespace {

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <int NT>
void rows_q6k(const WeightView& w, int64_t r0, int64_t r1, const int8_t* xq, const float* xd, float* y, bool add) {
  const int64_t K = w.cols, N = w.rows, nb = K / kQ6KBlock, nx = K / kQ8Block;
  const __m256i m4 = _mm256_set1_epi8(15), m3 = _mm256_set1_epi8(3), m30 = _mm256_set1_epi8(0x30);
  const __m256i k32 = _mm256_set1_epi8(32);
  // vpshufb masks: for chunk c, the i16 scale of sub-block 2c in the low 128 bits and of
  // 2c + 1 in the high 128 bits, from 8 i16 scales repeated in both halves.
  __m256i pick[4];
  for (int c = 0; c < 4; c++) {
    const char lo = (char)(4 * c), hi = (char)(4 * c + 2);
    pick[c] = _mm256_setr_epi8(lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo, lo + 1, lo,
                               lo + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1, hi, hi + 1,
                               hi, hi + 1);
  }
  for (int64_t r = r0; r < r1; r++) {
    const BlockQ6_K* b = (const BlockQ6_K*)((const char*)w.data + (size_t)r * w.row_bytes);
    __m256 acc[NT];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nb; j++) {
      _mm_prefetch((const char*)(b + j) + 4096, _MM_HINT_T1);
      _mm_prefetch((const char*)(b + j) + 4096 + 64, _MM_HINT_T1);
      _mm_prefetch((const char*)(b + j) + 4096 + 128, _MM_HINT_T1);
      const float d = _cvtsh_ss(b[j].d);
      for (int h = 0; h < 2; h++) {
        const __m256i ql0 = _mm256_loadu_si256((const __m256i*)(b[j].ql + 64 * h));
        const __m256i ql1 = _mm256_loadu_si256((const __m256i*)(b[j].ql + 64 * h + 32));
        const __m256i qh = _mm256_loadu_si256((const __m256i*)(b[j].qh + 32 * h));
        __m256i q[4];
        q[0] = _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4));
        q[1] = _mm256_or_si256(_mm256_and_si256(ql1, m4), _mm256_slli_epi16(_mm256_and_si256(qh, _mm256_slli_epi16(m3, 2)), 2));
        q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4), _mm256_and_si256(qh, m30));
        q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
        int64_t sc8;
        std::memcpy(&sc8, b[j].scales + 8 * h, 8);
        const __m256i sdup = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_cvtsi64_si128(sc8)));
        for (int c = 0; c < 4; c++) {
          const __m256i sc = _mm256_shuffle_epi8(sdup, pick[c]);
          const int64_t xb = j * 8 + h * 4 + c;  // the activation block
          for (int t = 0; t < NT; t++) {
            const __m256i x = _mm256_loadu_si256((const __m256i*)(xq + t * K + xb * kQ8Block));
            const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[c], x), _mm256_maddubs_epi16(k32, x));
            const __m256 s = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, sc));
            acc[t] = _mm256_fmadd_ps(s, _mm256_set1_ps(d * xd[t * nx + xb]), acc[t]);
          }
        }
      }
    }
    for (int t = 0; t < NT; t++) {
      const float v = hsum8(acc[t]);
      y[t * N + r] = add ? y[t * N + r] + v : v;
    }
  }
}

}  // namespace

void gemv_q6k_avx2(const WeightView& w, int64_t r0, int64_t r1, const QuantAct& xq, int64_t n_tok, float* y, bool add) {
  const int64_t K = w.cols, N = w.rows, nx = K / kQ8Block;
  for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
    const int8_t* q = xq.q + t0 * K;
    const float* d = xq.d + t0 * nx;
    float* yt = y + t0 * N;
    switch (n_tok - t0 >= 4 ? 4 : n_tok - t0) {
      case 1: rows_q6k<1>(w, r0, r1, q, d, yt, add); break;
      case 2: rows_q6k<2>(w, r0, r1, q, d, yt, add); break;
      case 3: rows_q6k<3>(w, r0, r1, q, d, yt, add); break;
      default: rows_q6k<4>(w, r0, r1, q, d, yt, add); break;
    }
  }
}

}  // namespace engine::cpu::detail
