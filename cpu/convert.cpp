#include "cpu/convert.h"

#include "core/cpu_features.h"
#include "core/dtype.h"

namespace engine::cpu {

void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
  static const bool f16c = cpu_features().avx2;  // the AVX2 set includes F16C
  if (f16c) return detail::f16_to_f32_row_avx2(src, dst, n);
  for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(src[i]);
}

void round_to_f16_row(const float* src, float* dst, int64_t n) {
  static const bool f16c = cpu_features().avx2;
  if (f16c) return detail::round_to_f16_row_avx2(src, dst, n);
  for (int64_t i = 0; i < n; i++) dst[i] = f16_to_f32(f32_to_f16(src[i]));
}

}  // namespace engine::cpu
