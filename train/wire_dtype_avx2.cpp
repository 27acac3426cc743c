// F16 wire encoding with F16C (compiled with -mf16c; called only after the CPU check).
#include <immintrin.h>

#include <cstdint>

#include "core/dtype.h"

namespace engine::train::detail {

// dst[i] = f16(clamp(src[i], ±65504)), round to nearest even; a NaN stays a NaN
// (min/max return their second operand when either is NaN).
void f32_to_f16_saturating_avx2(const float* src, uint16_t* dst, int64_t n) {
  const __m256 hi = _mm256_set1_ps(65504.0f), lo = _mm256_set1_ps(-65504.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 v = _mm256_loadu_ps(src + i);
    v = _mm256_max_ps(lo, _mm256_min_ps(hi, v));
    _mm_storeu_si128((__m128i*)(dst + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; i++) {
    float x = src[i];
    dst[i] = f32_to_f16(x != x ? x : (x > 65504.0f ? 65504.0f : (x < -65504.0f ? -65504.0f : x)));
  }
}

}  // namespace engine::train::detail
