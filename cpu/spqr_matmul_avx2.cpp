// AVX2 row kernel for SpQR with groupsize 16 and wbits <= 4. A group's 16 codes
// span at most 64 bits; each half of 8 codes sits in one 32-bit word, so a
// broadcast, a per-lane variable shift and a mask unpack 8 codes at once. The
// statistics of 8 groups are decoded together in vector registers. Per row the
// scaled products accumulate in one vector (no horizontal sum per group):
//   acc += scale_g · (codes_lo·x_lo + codes_hi·x_hi),   zacc += scale_g·zero_g·Σx_g
#include <immintrin.h>

#include <cstring>

#include "cpu/spqr_matmul.h"

namespace engine::cpu::detail {

namespace {
inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
}  // namespace

void spqr_rows_avx2(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  const int wbits = w.p.wbits;
  if (w.p.groupsize != 16 || wbits > 4 || w.p.stat_bits == 16) return spqr_rows_scalar(job);
  const int64_t G = w.n_groups, padded = G * 16, gb = w.group_bytes;
  const __m256i shifts = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(wbits));
  const __m256i mask = _mm256_set1_epi32((1 << wbits) - 1);
  alignas(32) float scale8[8];

  for (int64_t r = job.r0; r < job.r1; r++) {
    const uint8_t* codes = w.codes + (size_t)r * G * gb;
    const uint8_t* stats = w.stats + (size_t)r * G;
    for (int64_t t = 0; t < job.n_tok; t++) {
      const float* xt = job.xp + t * padded;
      const float* gs = job.gsum + t * G;
      __m256 acc = _mm256_setzero_ps(), zacc = _mm256_setzero_ps();
      float zacc_tail = 0;
      for (int64_t g0 = 0; g0 < G; g0 += 8) {
        const int n = (int)std::min<int64_t>(8, G - g0);
        if (n == 8) {
          // Statistics of 8 groups: codes → f32 → scale = ss·(c − sz), zero = zs·(c − zz).
          __m128i b8 = _mm_loadl_epi64((const __m128i*)(stats + g0));
          __m256i b = _mm256_cvtepu8_epi32(b8);
          __m256 sc = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
          __m256 zc = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
          __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(job.ss + g0), _mm256_sub_ps(sc, _mm256_loadu_ps(job.sz + g0)));
          __m256 zero = _mm256_mul_ps(_mm256_loadu_ps(job.zs + g0), _mm256_sub_ps(zc, _mm256_loadu_ps(job.zz + g0)));
          zacc = _mm256_fmadd_ps(_mm256_mul_ps(scale, zero), _mm256_loadu_ps(gs + g0), zacc);
          _mm256_store_ps(scale8, scale);
        } else {
          for (int j = 0; j < n; j++) {
            const int64_t g = g0 + j;
            const float s = job.ss[g] * ((float)(stats[g] & 15) - job.sz[g]);
            const float z = job.zs[g] * ((float)(stats[g] >> 4) - job.zz[g]);
            scale8[j] = s;
            zacc_tail += s * z * gs[g];
          }
        }
        for (int j = 0; j < n; j++) {
          const int64_t g = g0 + j;
          uint64_t bits = 0;
          std::memcpy(&bits, codes + g * gb, (size_t)gb);
          const __m256i lo =
              _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)bits), shifts), mask);
          const __m256i hi =
              _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)(bits >> (8 * wbits))), shifts), mask);
          __m256 p = _mm256_mul_ps(_mm256_cvtepi32_ps(lo), _mm256_loadu_ps(xt + g * 16));
          p = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_loadu_ps(xt + g * 16 + 8), p);
          acc = _mm256_fmadd_ps(_mm256_set1_ps(scale8[j]), p, acc);
        }
      }
      job.y[t * w.rows + r] = hsum(acc) - hsum(zacc) - zacc_tail;
    }
  }
}

}  // namespace engine::cpu::detail
