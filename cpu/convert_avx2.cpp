#include <immintrin.h>

#include "core/dtype.h"
#include "cpu/convert.h"

namespace engine::cpu::detail {

void f16_to_f32_row_avx2(const uint16_t* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(src + i))));
  for (; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

void round_to_f16_row_avx2(const float* src, float* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT)));
  for (; i < n; i++) dst[i] = f16_to_f32(f32_to_f16(src[i]));
}

}  // namespace engine::cpu::detail
