#include "core/dtype.h"

#include <algorithm>
#include <cmath>

namespace engine {

bool dtype_known(uint32_t id) {
  switch ((DType)id) {
    case DType::F32: case DType::F16: case DType::Q4_0: case DType::Q8_0: case DType::BF16:
    case DType::I8: case DType::I16: case DType::I32:
      return true;
  }
  return false;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::Q4_0: return "Q4_0";
    case DType::Q8_0: return "Q8_0";
    case DType::BF16: return "BF16";
    case DType::I8: return "I8";
    case DType::I16: return "I16";
    case DType::I32: return "I32";
  }
  return "?";
}

bool dtype_from_name(const std::string& name, DType* out) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  if (n == "f32") *out = DType::F32;
  else if (n == "f16") *out = DType::F16;
  else if (n == "bf16") *out = DType::BF16;
  else if (n == "q8_0") *out = DType::Q8_0;
  else return false;
  return true;
}

bool dtype_from_name_storage(const std::string& name, DType* out) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  if (n == "q4_0") {
    *out = DType::Q4_0;
    return true;
  }
  return dtype_from_name(name, out);
}

int64_t dtype_block_size(DType t) { return t == DType::Q8_0 ? kQ8Block : t == DType::Q4_0 ? kQ4Block : 1; }

size_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: return 1;
    case DType::Q8_0: return sizeof(BlockQ8_0);
    case DType::Q4_0: return sizeof(BlockQ4_0);
  }
  return 0;
}

float f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f;
  uint32_t mant = h & 0x3ff;
  uint32_t u;
  if (exp == 0) {
    if (mant == 0) {
      u = sign;
    } else {  // subnormal: renormalise
      int e = -1;
      do {
        e++;
        mant <<= 1;
      } while (!(mant & 0x400));
      mant &= 0x3ff;
      u = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
    }
  } else if (exp == 31) {
    u = sign | 0x7f800000u | (mant << 13);
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
  uint32_t abs = u & 0x7fffffffu;
  if (abs >= 0x7f800000u) {  // inf or nan
    return sign | 0x7c00 | (abs > 0x7f800000u ? 0x200 : 0);
  }
  if (abs >= 0x477ff000u) return sign | 0x7c00;  // rounds to >= 65520: overflow to inf
  if (abs < 0x38800000u) {                        // below the smallest normal half: subnormal or zero
    if (abs < 0x33000000u) return sign;           // < 2^-25 rounds to zero
    uint32_t e = abs >> 23;
    uint32_t m = (abs & 0x7fffff) | 0x800000;
    uint32_t shift = 126 - e;  // 14 + (113 - e)
    uint32_t half = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1);
    uint32_t mid = 1u << (shift - 1);
    if (rem > mid || (rem == mid && (half & 1))) half++;
    return sign | (uint16_t)half;
  }
  uint32_t h = ((abs >> 13) - ((127 - 15) << 10));
  uint32_t rem = abs & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) h++;
  return sign | (uint16_t)h;
}

uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);  // keep NaN a NaN
  u += 0x7fff + ((u >> 16) & 1);
  return (uint16_t)(u >> 16);
}

void dequantize_row(DType t, const void* src, float* dst, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, (size_t)n * 4);
      return;
    // A GGUF may align its data to 1 byte: read each half through memcpy, not a uint16_t*.
    case DType::F16: {
      auto* s = (const uint8_t*)src;
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      return;
    }
    case DType::BF16: {
      auto* s = (const uint8_t*)src;
      for (int64_t i = 0; i < n; i++) {
        uint16_t h;
        std::memcpy(&h, s + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      return;
    }
    case DType::Q8_0: {
      auto* b = (const BlockQ8_0*)src;
      for (int64_t k = 0; k < n / kQ8Block; k++) {
        float d = f16_to_f32(b[k].d);
        for (int j = 0; j < kQ8Block; j++) dst[k * kQ8Block + j] = d * b[k].qs[j];
      }
      return;
    }
    case DType::Q4_0: {
      auto* b = (const BlockQ4_0*)src;
      for (int64_t k = 0; k < n / kQ4Block; k++) {
        const float d = f16_to_f32(b[k].d);
        float* y = dst + k * kQ4Block;
        for (int j = 0; j < kQ4Block / 2; j++) {
          y[j] = d * (float)((b[k].qs[j] & 15) - 8);
          y[j + kQ4Block / 2] = d * (float)((b[k].qs[j] >> 4) - 8);
        }
      }
      return;
    }
    default:
      break;
  }
  std::memset(dst, 0, (size_t)n * 4);
}

void quantize_row(DType t, const float* src, void* dst, int64_t n) {
  switch (t) {
    case DType::F32:
      std::memcpy(dst, src, (size_t)n * 4);
      return;
    case DType::F16: {
      auto* d = (uint16_t*)dst;
      for (int64_t i = 0; i < n; i++) d[i] = f32_to_f16(src[i]);
      return;
    }
    case DType::BF16: {
      auto* d = (uint16_t*)dst;
      for (int64_t i = 0; i < n; i++) d[i] = f32_to_bf16(src[i]);
      return;
    }
    case DType::Q8_0: {
      // Same rule as llama.cpp's reference quantizer: d = max|x| / 127, q = round(x / d).
      auto* b = (BlockQ8_0*)dst;
      for (int64_t k = 0; k < n / kQ8Block; k++) {
        const float* x = src + k * kQ8Block;
        float amax = 0;
        for (int j = 0; j < kQ8Block; j++) amax = std::max(amax, std::fabs(x[j]));
        float d = amax / 127.0f;
        float id = d != 0 ? 1.0f / d : 0.0f;
        b[k].d = f32_to_f16(d);
        for (int j = 0; j < kQ8Block; j++) b[k].qs[j] = (int8_t)std::lround(x[j] * id);
      }
      return;
    }
    case DType::Q4_0: {
      // llama.cpp's reference rule (quantize_row_q4_0_ref), so files match its bytes: the
      // value of largest magnitude maps to code 0 (d = max / -8, sign kept), codes are
      // x/d + 8 truncated after adding 0.5 and capped at 15.
      auto* b = (BlockQ4_0*)dst;
      for (int64_t k = 0; k < n / kQ4Block; k++) {
        const float* x = src + k * kQ4Block;
        float amax = 0, max = 0;
        for (int j = 0; j < kQ4Block; j++)
          if (amax < std::fabs(x[j])) {
            amax = std::fabs(x[j]);
            max = x[j];
          }
        const float d = max / -8.0f;
        const float id = d != 0 ? 1.0f / d : 0.0f;
        b[k].d = f32_to_f16(d);
        for (int j = 0; j < kQ4Block / 2; j++) {
          const int q0 = std::min(15, (int)(int8_t)(x[j] * id + 8.5f));
          const int q1 = std::min(15, (int)(int8_t)(x[j + kQ4Block / 2] * id + 8.5f));
          b[k].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
      }
      return;
    }
    default:
      break;
  }
}

std::vector<uint8_t> convert_rows(DType from, const void* src, DType to, int64_t cols, int64_t rows) {
  const size_t in_rb = dtype_row_bytes(from, cols), out_rb = dtype_row_bytes(to, cols);
  std::vector<uint8_t> out(out_rb * (size_t)rows);
  std::vector<float> row((size_t)cols);
  for (int64_t r = 0; r < rows; r++) {
    dequantize_row(from, (const uint8_t*)src + (size_t)r * in_rb, row.data(), cols);
    quantize_row(to, row.data(), out.data() + (size_t)r * out_rb, cols);
  }
  return out;
}

}  // namespace engine
