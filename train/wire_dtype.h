// How the averager puts float vectors on the wire: F32 (exact), F16 (half the
// bytes), Q8 (8-bit blockwise, ~0.28 of the bytes). Errors, per element x of a
// 32-value block whose largest magnitude is m:
//   F32: none.
//   F16: round to nearest even, |err| <= |x|·2^-11 for |x| >= 2^-14, <= 2^-25
//        below (subnormals); |x| > 65504 saturates to ±65504 (not inf), so an
//        honest but large value is clipped instead of poisoning the contribution.
//   Q8:  one f32 scale d = m/127 per block, q = round(x/d) in [-127, 127]:
//        |err| <= m/254 (half a step) plus f32 rounding, i.e. <= 0.4% of the
//        block's largest value. An f32 scale (36 bytes per block, not Q8_0's 34
//        with an f16 scale) because gradients are small: an f16 scale turns
//        subnormal below m = 2^-14·127 ≈ 0.0078 and loses precision exactly there.
// A partial last block is padded with zeros on the wire; the decoder ignores the pad.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace engine::train {

enum class WireDType { F32, F16, Q8 };
bool wire_dtype_from_name(const std::string& s, WireDType* out);  // "f32", "f16", "int8"
const char* wire_dtype_name(WireDType t);                          // the same names

constexpr int64_t kWireQ8Block = 32;
constexpr size_t kWireQ8BlockBytes = 4 + kWireQ8Block;  // f32 scale + 32 int8 codes

// Bytes that n values take on the wire.
size_t wire_bytes(WireDType t, int64_t n);
// Values per avg.part / avg.result chunk so that a chunk is at most chunk_bytes
// (a multiple of the Q8 block, so chunks of a part slice its encoding; >= 1 block).
int64_t wire_chunk_values(WireDType t, size_t chunk_bytes);

// Encodes n floats. Decoding checks the byte count (Error on mismatch) and does
// not check values: callers reject non-finite results (see all_finite).
std::string wire_encode(WireDType t, const float* x, int64_t n);
void wire_decode(WireDType t, std::string_view bytes, float* out, int64_t n);
bool all_finite(const float* x, int64_t n);

}  // namespace engine::train
