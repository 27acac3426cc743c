// AVX2 group dot for SpQR codes. For groups whose 16 codes fit in 64 bits with
// wbits <= 4, each half of 8 codes sits in one 32-bit word: broadcast it, shift
// each lane by its code's offset, mask, convert, and FMA with the activations.
#include <immintrin.h>

#include <cstring>

#include "cpu/spqr_matmul.h"

namespace engine::cpu::detail {

float spqr_group_dot_avx2(const uint8_t* group, const float* xp, int wbits, int groupsize, int group_bytes) {
  if (groupsize != 16 || wbits > 4) return spqr_group_dot_scalar(group, xp, wbits, groupsize, group_bytes);
  uint64_t bits = 0;
  std::memcpy(&bits, group, (size_t)group_bytes);  // group_bytes <= 8 here
  const __m256i shifts = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(wbits));
  const __m256i mask = _mm256_set1_epi32((1 << wbits) - 1);
  const __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)bits), shifts), mask);
  const __m256i hi =
      _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)(uint32_t)(bits >> (8 * wbits))), shifts), mask);
  __m256 acc = _mm256_mul_ps(_mm256_cvtepi32_ps(lo), _mm256_loadu_ps(xp));
  acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_loadu_ps(xp + 8), acc);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

}  // namespace engine::cpu::detail
