// AVX2 row kernel for SpQR with groupsize 16 and wbits 3 or 4. A group's 16 codes
// span 48 or 64 bits; each half of 8 codes sits in one 32-bit word, so a
// broadcast, a per-lane variable shift and a mask unpack 8 codes at once. The
// statistics of 8 groups are decoded together in vector registers. A group is
// unpacked once and applied to every token; per (row, token) the scaled
// products accumulate in one vector (no horizontal sum per group):
//   acc_t += scale_g · (codes_lo·x_t,lo + codes_hi·x_t,hi),   zacc_t += scale_g·zero_g·Σx_t,g
#include <immintrin.h>

#include <cstring>
#include <vector>

#include "cpu/spqr_matmul.h"

namespace engine::cpu::detail {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The two 32-bit words holding codes 0-7 and 8-15 of a group, read with one
// fixed-size 8-byte load (a variable or odd-size copy into a stack word stalls on
// store forwarding in this loop). For 3-bit codes that reads 2 bytes past the
// group, so the tensor's very last group takes the exact-size path.
template <int WBITS>
inline void load_group(const uint8_t* p, bool last, uint32_t* lo, uint32_t* hi) {
  uint64_t v = 0;
  if (WBITS == 4 || !last) std::memcpy(&v, p, 8);
  else std::memcpy(&v, p, 6);
  if constexpr (WBITS == 4) {
    *lo = (uint32_t)v;
    *hi = (uint32_t)(v >> 32);
  } else {  // codes 0-7 in bits 0-23, codes 8-15 in bits 24-47
    *lo = (uint32_t)v & 0xffffff;
    *hi = (uint32_t)(v >> 24) & 0xffffff;
  }
}

template <int WBITS>
void rows_kernel(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t G = w.n_groups, padded = G * 16, T = job.n_tok;
  constexpr int64_t gb = WBITS * 2;
  const __m256i shifts = _mm256_setr_epi32(0, WBITS, 2 * WBITS, 3 * WBITS, 4 * WBITS, 5 * WBITS, 6 * WBITS, 7 * WBITS);
  const __m256i mask = _mm256_set1_epi32((1 << WBITS) - 1);
  alignas(32) float scale8[8];
  // Accumulators per token (vectors of __m256 lose their alignment attribute as a
  // template argument, so they live in a float buffer, 8 floats each).
  std::vector<float> acc_buf((size_t)(T * 8)), zacc_buf((size_t)(T * 8));
  std::vector<float> ztail((size_t)T);

  for (int64_t r = job.r0; r < job.r1; r++) {
    const uint8_t* codes = w.codes + (size_t)r * G * gb;
    const uint8_t* stats = w.stats + (size_t)r * G;
    std::fill(acc_buf.begin(), acc_buf.end(), 0.0f);
    std::fill(zacc_buf.begin(), zacc_buf.end(), 0.0f);
    std::fill(ztail.begin(), ztail.end(), 0.0f);
    __m256 acc0 = _mm256_setzero_ps(), zacc0 = _mm256_setzero_ps();  // token 0 stays in registers
    for (int64_t g0 = 0; g0 < G; g0 += 8) {
      const int n = (int)std::min<int64_t>(8, G - g0);
      if (n == 8) {
        // Statistics of 8 groups: codes → f32 → scale = ss·(c − sz), zero = zs·(c − zz).
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(stats + g0)));
        const __m256 sc = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
        const __m256 zc = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
        const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(job.ss + g0), _mm256_sub_ps(sc, _mm256_loadu_ps(job.sz + g0)));
        const __m256 zero = _mm256_mul_ps(_mm256_loadu_ps(job.zs + g0), _mm256_sub_ps(zc, _mm256_loadu_ps(job.zz + g0)));
        const __m256 sz = _mm256_mul_ps(scale, zero);
        zacc0 = _mm256_fmadd_ps(sz, _mm256_loadu_ps(job.gsum + g0), zacc0);
        for (int64_t t = 1; t < T; t++)
          _mm256_storeu_ps(&zacc_buf[t * 8], _mm256_fmadd_ps(sz, _mm256_loadu_ps(job.gsum + t * G + g0),
                                                             _mm256_loadu_ps(&zacc_buf[t * 8])));
        _mm256_store_ps(scale8, scale);
      } else {
        for (int j = 0; j < n; j++) {
          const int64_t g = g0 + j;
          const float s = job.ss[g] * ((float)(stats[g] & 15) - job.sz[g]);
          const float z = job.zs[g] * ((float)(stats[g] >> 4) - job.zz[g]);
          scale8[j] = s;
          for (int64_t t = 0; t < T; t++) ztail[t] += s * z * job.gsum[t * G + g];
        }
      }
      for (int j = 0; j < n; j++) {
        const int64_t g = g0 + j;
        uint32_t lo_bits, hi_bits;
        load_group<WBITS>(codes + g * gb, r == w.rows - 1 && g == G - 1, &lo_bits, &hi_bits);
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)lo_bits), shifts), mask));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)hi_bits), shifts), mask));
        const __m256 s = _mm256_set1_ps(scale8[j]);
        const float* x = job.xp + g * 16;
        __m256 p0 = _mm256_mul_ps(lo, _mm256_loadu_ps(x));
        p0 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 8), p0);
        acc0 = _mm256_fmadd_ps(s, p0, acc0);
        x += padded;
        for (int64_t t = 1; t < T; t++, x += padded) {
          __m256 p = _mm256_mul_ps(lo, _mm256_loadu_ps(x));
          p = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 8), p);
          _mm256_storeu_ps(&acc_buf[t * 8], _mm256_fmadd_ps(s, p, _mm256_loadu_ps(&acc_buf[t * 8])));
        }
      }
    }
    job.y[r] = hsum(acc0) - hsum(zacc0) - ztail[0];
    for (int64_t t = 1; t < T; t++)
      job.y[t * w.rows + r] = hsum(_mm256_loadu_ps(&acc_buf[t * 8])) - hsum(_mm256_loadu_ps(&zacc_buf[t * 8])) - ztail[t];
  }
}

}  // namespace

void spqr_rows_avx2(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  if (w.p.groupsize != 16 || w.p.stat_bits == 16) return spqr_rows_scalar(job);
  if (w.p.wbits == 3) return rows_kernel<3>(job);
  if (w.p.wbits == 4) return rows_kernel<4>(job);
  spqr_rows_scalar(job);
}

}  // namespace engine::cpu::detail
