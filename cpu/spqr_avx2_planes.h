// What the AVX2 SpQR kernels share (include only from files compiled with AVX2, the
// *_avx2.cpp ones): the bit-plane layout's code extraction and a horizontal sum. In an
// anonymous namespace, so that each file keeps its own copy, compiled with its flags.
#pragma once
#include <immintrin.h>

namespace engine::cpu::detail {
namespace {

inline float hsum_avx2(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The codes of chunk K (0..7) of a re-laid super-block (spqr_decode_avx2.cpp), as 32
// bytes, from its three planes: chunks 0-5 are whole 3-bit fields (one mask, or a shift
// and a mask); chunks 6 and 7 keep their low two bits in P0 / P1 bits 6-7 and their high
// bit in P2 bit 6 / 7. The 16-bit shifts carry bits across the byte boundary only into
// bits the mask clears.
template <int K>
inline __m256i chunk_codes(__m256i P0, __m256i P1, __m256i P2) {
  const __m256i m3 = _mm256_set1_epi8(7);
  if constexpr (K < 6) {
    const __m256i P = K < 2 ? P0 : K < 4 ? P1 : P2;
    return _mm256_and_si256(K % 2 ? _mm256_srli_epi16(P, 3) : P, m3);
  } else {
    const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(K == 6 ? P0 : P1, 6), _mm256_set1_epi8(3));
    return _mm256_or_si256(lo, _mm256_and_si256(_mm256_srli_epi16(P2, K == 6 ? 4 : 5), _mm256_set1_epi8(4)));
  }
}

}  // namespace
}  // namespace engine::cpu::detail
