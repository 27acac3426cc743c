// SpQR products of many tokens with int8 activations on AVX2 (prefill; groupsize 16,
// wbits 3): the 1-token kernel's arithmetic (spqr_decode_avx2.cpp) with each row's
// codes unpacked once per call instead of once per token.
//
// Per chunk of 16 rows: every row's codes are unpacked from the bit planes into bytes
// (nb·256 bytes a row, the chunk ~90 KiB for 5632 columns: L2), and its statistics into
//   scale8 = ss·(sc − sz),  sz8 = scale8 · zs·(zc − zz)        (8 groups per vector).
// Then for every row and 4 tokens at a time, per half super-block (128 weights):
//   dot_t  = Σ_i vpmaddubsw(codes_i, xq_t,i)   → vpmaddwd: one exact int32 per group
//   acc_t += scale8 · (d_t · dot_t) − sz8 · e_t           (e_t = d_t · Σq_t, per group)
// which is ~12 instructions per token and 128 weights (the f32 GEMM over dequantized
// panels: 16 FMAs plus its share of broadcasts and dequantization). Outliers add
// delta · x exactly, 8 tokens per FMA from the transposed activations.
#include <immintrin.h>

#include <algorithm>

#include "cpu/spqr_avx2_planes.h"
#include "cpu/spqr_matmul.h"

namespace engine::cpu::detail {

namespace {

template <int... K>
inline void unpack_super(const uint8_t* b, __m256i* out, std::integer_sequence<int, K...>) {
  const __m256i P0 = _mm256_loadu_si256((const __m256i*)b), P1 = _mm256_loadu_si256((const __m256i*)(b + 32));
  const __m256i P2 = _mm256_loadu_si256((const __m256i*)(b + 64));
  ((_mm256_store_si256(out + K, chunk_codes<K>(P0, P1, P2))), ...);
}

// Rows of one chunk against N tokens: acc_n over the row, then y and the outliers.
template <int N>
inline void row_tokens(const __m256i* codes, const float* sc, int64_t nh, const int8_t* xq, int64_t xq_stride,
                       const float* d, const float* e, int64_t de_stride, float* out) {
  __m256 acc[N];
  for (int n = 0; n < N; n++) acc[n] = _mm256_setzero_ps();
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t h = 0; h < nh; h++) {
    const __m256i c0 = _mm256_load_si256(codes + h * 4), c1 = _mm256_load_si256(codes + h * 4 + 1);
    const __m256i c2 = _mm256_load_si256(codes + h * 4 + 2), c3 = _mm256_load_si256(codes + h * 4 + 3);
    const __m256 scale8 = _mm256_load_ps(sc + h * 16), sz8 = _mm256_load_ps(sc + h * 16 + 8);
    for (int n = 0; n < N; n++) {
      const int8_t* xb = xq + n * xq_stride + h * 128;
      // |each vpmaddubsw lane| ≤ 2·7·127; the sum of four ≤ 7112: no wrap.
      const __m256i s = _mm256_add_epi16(
          _mm256_add_epi16(_mm256_maddubs_epi16(c0, _mm256_load_si256((const __m256i*)xb)),
                           _mm256_maddubs_epi16(c1, _mm256_load_si256((const __m256i*)(xb + 32)))),
          _mm256_add_epi16(_mm256_maddubs_epi16(c2, _mm256_load_si256((const __m256i*)(xb + 64))),
                           _mm256_maddubs_epi16(c3, _mm256_load_si256((const __m256i*)(xb + 96)))));
      const __m256 dot = _mm256_cvtepi32_ps(_mm256_madd_epi16(s, ones));
      const __m256 dd = _mm256_mul_ps(dot, _mm256_loadu_ps(d + n * de_stride + h * 8));
      acc[n] = _mm256_fmadd_ps(scale8, dd, acc[n]);
      acc[n] = _mm256_fnmadd_ps(sz8, _mm256_loadu_ps(e + n * de_stride + h * 8), acc[n]);
    }
  }
  for (int n = 0; n < N; n++) out[n] += hsum_avx2(acc[n]);
}

}  // namespace

void spqr_prefill_avx2(const SpqrPrefillJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t G = w.n_groups, R = w.rows, nsb = (G + 15) / 16, nh = nsb * 2, sg = w.p.stat_groupsize;
  const int64_t T = job.n_tok, ld = job.ld, row_bytes = nsb * kSpqrAvx2SuperBytes;
  const int64_t xq_stride = nsb * 256, de_stride = nsb * 16;
  const uint8_t* const pk = job.packed;
  const uint16_t* const s2base = (const uint16_t*)(pk + R * row_bytes);
  const int32_t* const rowptr = w.outlier_rowptr;
  const uint32_t* const outl = w.outlier_col_delta16.data();
  constexpr int64_t kRows = 16;
  thread_local AlignedFloats codes_buf, stat_buf, out_buf;
  __m256i* codes = (__m256i*)codes_buf.get((size_t)(kRows * nsb * 64));  // [kRows][nh][4] chunks of 32 bytes
  float* stat = stat_buf.get((size_t)(kRows * nh * 16));                  // [kRows][nh]: scale8[8], sz8[8]
  const int64_t Tp = (T + 7) / 8 * 8;
  float* out = out_buf.get((size_t)(kRows * Tp));                         // [kRows][Tp]: outliers, then the sums
  for (int64_t rc = job.r0; rc < job.r1; rc += kRows) {
    const int64_t rn = std::min(kRows, job.r1 - rc);
    // Unpack the chunk's rows and statistics; outliers into out (8 tokens per FMA).
    for (int64_t i = 0; i < rn; i++) {
      const int64_t r = rc + i;
      const uint8_t* row = pk + r * row_bytes;
      for (int64_t sb = 0; sb < nsb; sb++)
        unpack_super(row + sb * kSpqrAvx2SuperBytes, codes + (i * nh + sb * 2) * 4, std::make_integer_sequence<int, 8>{});
      const uint16_t* st = s2base + (r / sg) * nsb * 64;
      for (int64_t h = 0; h < nh; h++, st += 32) {
        const __m256i s = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(row + (h / 2) * kSpqrAvx2SuperBytes + 96 + (h % 2) * 8)));
        const __m256 scode = _mm256_cvtepi32_ps(_mm256_and_si256(s, _mm256_set1_epi32(15)));
        const __m256 zcode = _mm256_cvtepi32_ps(_mm256_srli_epi32(s, 4));
        const __m256 ss = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)st));
        const __m256 sz = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(st + 8)));
        const __m256 zs = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(st + 16)));
        const __m256 zz = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(st + 24)));
        const __m256 scale = _mm256_mul_ps(ss, _mm256_sub_ps(scode, sz));
        _mm256_store_ps(stat + (i * nh + h) * 16, scale);
        _mm256_store_ps(stat + (i * nh + h) * 16 + 8, _mm256_mul_ps(scale, _mm256_mul_ps(zs, _mm256_sub_ps(zcode, zz))));
      }
      float* o = out + i * Tp;
      std::fill(o, o + Tp, 0.0f);
      for (int32_t k = rowptr[r]; k < rowptr[r + 1]; k++) {
        const __m256 delta = _mm256_set1_ps(_cvtsh_ss((uint16_t)(outl[k] >> 16)));
        const float* x = job.xt + (int64_t)(outl[k] & 0xffff) * ld;
        for (int64_t t = 0; t < Tp; t += 8)
          _mm256_store_ps(o + t, _mm256_fmadd_ps(delta, _mm256_loadu_ps(x + t), _mm256_load_ps(o + t)));
      }
    }
    // Every row of the chunk against 4 tokens at a time (their activations stay in L1
    // while the chunk's rows pass).
    const int8_t* xq = (const int8_t*)job.xq;
    for (int64_t t = 0; t < T; t += 4) {
      const int tn = (int)std::min<int64_t>(4, T - t);
      for (int64_t i = 0; i < rn; i++) {
        const __m256i* c = codes + i * nh * 4;
        const float* sc = stat + i * nh * 16;
        const int8_t* x = xq + t * xq_stride;
        const float *dt = job.d + t * de_stride, *et = job.e + t * de_stride;
        float* o = out + i * Tp + t;
        switch (tn) {
          case 4: row_tokens<4>(c, sc, nh, x, xq_stride, dt, et, de_stride, o); break;
          case 3: row_tokens<3>(c, sc, nh, x, xq_stride, dt, et, de_stride, o); break;
          case 2: row_tokens<2>(c, sc, nh, x, xq_stride, dt, et, de_stride, o); break;
          default: row_tokens<1>(c, sc, nh, x, xq_stride, dt, et, de_stride, o); break;
        }
      }
    }
    for (int64_t t = 0; t < T; t++)
      for (int64_t i = 0; i < rn; i++) job.y[t * R + rc + i] = out[i * Tp + t];
  }
}

}  // namespace engine::cpu::detail
