// Row conversions on the hot path (f16 KV cache rows → f32), vectorised with
// F16C where the CPU has it.
#pragma once
#include <cstdint>

namespace engine::cpu {

void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n);
// dst[i] = src[i] rounded to f16 and back (nearest even), as llama.cpp's F16 cache
// attention rounds its queries; dst may be src.
void round_to_f16_row(const float* src, float* dst, int64_t n);

namespace detail {
void f16_to_f32_row_avx2(const uint16_t* src, float* dst, int64_t n);
void round_to_f16_row_avx2(const float* src, float* dst, int64_t n);
}

}  // namespace engine::cpu
