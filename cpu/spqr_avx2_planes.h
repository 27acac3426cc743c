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
// bytes: bits 0-1 from L (L0 for K < 4, else L1) at bits 2(K % 4), bit 2 from H at bit K.
template <int K>
inline __m256i chunk_codes(__m256i L, __m256i H) {
  const __m256i lo = _mm256_and_si256(K % 4 ? _mm256_srli_epi16(L, 2 * (K % 4)) : L, _mm256_set1_epi8(3));
  __m256i h = H;
  if constexpr (K < 2) h = _mm256_slli_epi16(H, 2 - K);
  else if constexpr (K > 2) h = _mm256_srli_epi16(H, K - 2);
  return _mm256_or_si256(lo, _mm256_and_si256(h, _mm256_set1_epi8(4)));
}

}  // namespace
}  // namespace engine::cpu::detail
