#include "train/wire_dtype.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/cpu_features.h"
#include "core/dtype.h"
#include "core/error.h"
#include "cpu/convert.h"

namespace engine::train {

bool wire_dtype_from_name(const std::string& s, WireDType* out) {
  if (s == "f32") *out = WireDType::F32;
  else if (s == "f16") *out = WireDType::F16;
  else if (s == "int8") *out = WireDType::Q8;
  else return false;
  return true;
}

const char* wire_dtype_name(WireDType t) {
  switch (t) {
    case WireDType::F32: return "f32";
    case WireDType::F16: return "f16";
    case WireDType::Q8: return "int8";
  }
  return "?";
}

size_t wire_bytes(WireDType t, int64_t n) {
  switch (t) {
    case WireDType::F32: return (size_t)n * 4;
    case WireDType::F16: return (size_t)n * 2;
    case WireDType::Q8: return (size_t)((n + kWireQ8Block - 1) / kWireQ8Block) * kWireQ8BlockBytes;
  }
  return 0;
}

int64_t wire_chunk_values(WireDType t, size_t chunk_bytes) {
  switch (t) {
    case WireDType::F32: return std::max<int64_t>(1, (int64_t)(chunk_bytes / 4));
    case WireDType::F16: return std::max<int64_t>(1, (int64_t)(chunk_bytes / 2));
    case WireDType::Q8: return std::max<int64_t>(1, (int64_t)(chunk_bytes / kWireQ8BlockBytes)) * kWireQ8Block;
  }
  return 1;
}

namespace detail {
void f32_to_f16_saturating_avx2(const float* src, uint16_t* dst, int64_t n);
}

namespace {

constexpr float kF16Max = 65504.0f;

void f16_encode(const float* x, uint16_t* h, int64_t n) {
  static const bool f16c = cpu_features().avx2;
  if (f16c) return detail::f32_to_f16_saturating_avx2(x, h, n);
  for (int64_t i = 0; i < n; i++) h[i] = f32_to_f16(x[i] != x[i] ? x[i] : std::clamp(x[i], -kF16Max, kF16Max));
}

void q8_encode_block(const float* x, int64_t n, char* dst) {
  float amax = 0;
  for (int64_t j = 0; j < n; j++) amax = std::max(amax, std::fabs(x[j]));
  float d = amax / 127.0f;
  float id = d > 0 ? 1.0f / d : 0.0f;
  std::memcpy(dst, &d, 4);
  auto* q = (int8_t*)(dst + 4);
  for (int64_t j = 0; j < kWireQ8Block; j++) {
    // A NaN compares false and clamps to 0; the sender's NaN is its own business.
    float v = j < n ? std::clamp(std::nearbyint(x[j] * id), -127.0f, 127.0f) : 0.0f;
    q[j] = (int8_t)(v == v ? v : 0.0f);
  }
}

void q8_decode_block(const char* src, float* out, int64_t n) {
  float d;
  std::memcpy(&d, src, 4);
  auto* q = (const int8_t*)(src + 4);
  for (int64_t j = 0; j < n; j++) out[j] = d * (float)q[j];
}

}  // namespace

std::string wire_encode(WireDType t, const float* x, int64_t n) {
  std::string out(wire_bytes(t, n), '\0');
  switch (t) {
    case WireDType::F32:
      std::memcpy(out.data(), x, (size_t)n * 4);
      break;
    case WireDType::F16:
      f16_encode(x, (uint16_t*)out.data(), n);
      break;
    case WireDType::Q8:
      for (int64_t b = 0; b * kWireQ8Block < n; b++)
        q8_encode_block(x + b * kWireQ8Block, std::min(kWireQ8Block, n - b * kWireQ8Block),
                        out.data() + b * kWireQ8BlockBytes);
      break;
  }
  return out;
}

void wire_decode(WireDType t, std::string_view bytes, float* out, int64_t n) {
  if (n < 0 || bytes.size() != wire_bytes(t, n))
    throw Error(std::string("wire data of ") + std::to_string(bytes.size()) + " bytes is not " +
                std::to_string(n) + " values of " + wire_dtype_name(t));
  switch (t) {
    case WireDType::F32:
      std::memcpy(out, bytes.data(), (size_t)n * 4);
      return;
    case WireDType::F16: {
      // A view into a msgpack body may be oddly aligned: go through an aligned
      // buffer (cheap next to the conversion) rather than read uint16_t from it.
      uint16_t buf[4096];
      for (int64_t i = 0; i < n; i += 4096) {
        int64_t m = std::min<int64_t>(4096, n - i);
        std::memcpy(buf, bytes.data() + 2 * i, (size_t)m * 2);
        cpu::f16_to_f32_row(buf, out + i, m);
      }
      return;
    }
    case WireDType::Q8:
      for (int64_t b = 0; b * kWireQ8Block < n; b++)
        q8_decode_block(bytes.data() + b * kWireQ8BlockBytes, out + b * kWireQ8Block,
                        std::min(kWireQ8Block, n - b * kWireQ8Block));
      return;
  }
}

bool all_finite(const float* x, int64_t n) {
  // Branch-free accumulation vectorizes; x - x is NaN exactly for NaN and ±inf.
  float acc = 0;
  for (int64_t i = 0; i < n; i++) acc += x[i] - x[i];
  return acc == 0;
}

}  // namespace engine::train
