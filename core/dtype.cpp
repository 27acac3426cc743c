#include "core/dtype.h"

#include <algorithm>
#include <cmath>

namespace engine {

bool dtype_known(uint32_t id) {
  switch ((DType)id) {
    case DType::F32: case DType::F16: case DType::Q4_0: case DType::Q8_0: case DType::Q6_K: case DType::BF16:
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
    case DType::Q6_K: return "Q6_K";
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

bool dtype_from_name_head(const std::string& name, DType* out) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), ::tolower);
  if (n == "q6_k") {
    *out = DType::Q6_K;
    return true;
  }
  return dtype_from_name(name, out);
}

int64_t dtype_block_size(DType t) {
  return t == DType::Q8_0 ? kQ8Block : t == DType::Q4_0 ? kQ4Block : t == DType::Q6_K ? kQ6KBlock : 1;
}

size_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::F32: case DType::I32: return 4;
    case DType::F16: case DType::BF16: case DType::I16: return 2;
    case DType::I8: return 1;
    case DType::Q8_0: return sizeof(BlockQ8_0);
    case DType::Q4_0: return sizeof(BlockQ4_0);
    case DType::Q6_K: return sizeof(BlockQ6_K);
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
    case DType::Q6_K: {
      auto* b = (const BlockQ6_K*)src;
      for (int64_t k = 0; k < n / kQ6KBlock; k++) {
        const float d = f16_to_f32(b[k].d);
        float* y = dst + k * kQ6KBlock;
        for (int e = 0; e < kQ6KBlock; e++) y[e] = d * (float)b[k].scales[e / 16] * (float)(q6k_code(b[k], e) - 32);
      }
      return;
    }
    default:
      break;
  }
  std::memset(dst, 0, (size_t)n * 4);
}

namespace {

// The scale s of 16 values x (codes clamp(round(x / s), -32, 31)) with the least squared
// error: for 19 trial scales around max / -32 (the value of largest magnitude at code
// -32, the wider side), the codes, then the least-squares s for those codes.
float q6_subblock_scale(const float* x) {
  float max = 0, amax = 0;
  for (int i = 0; i < 16; i++)
    if (std::fabs(x[i]) > amax) amax = std::fabs(x[i]), max = x[i];
  if (amax == 0) return 0;
  float best_s = max / -32.0f, best_err = INFINITY;
  for (int step = -9; step <= 9; step++) {
    const float is = (-32.0f + 0.1f * (float)step) / max;
    float xq = 0, qq = 0;
    for (int i = 0; i < 16; i++) {
      const float q = (float)std::clamp((int)std::lround(is * x[i]), -32, 31);
      xq += x[i] * q, qq += q * q;
    }
    if (qq == 0) continue;
    const float s = xq / qq;
    float err = 0;
    for (int i = 0; i < 16; i++) {
      const float q = (float)std::clamp((int)std::lround(x[i] / s), -32, 31);
      err += (x[i] - s * q) * (x[i] - s * q);
    }
    if (err < best_err) best_err = err, best_s = s;
  }
  return best_s;
}

// One Q6_K block: each sub-block's best scale, the 16 scales rounded to int8 under
// d = (the scale of largest magnitude) / -128, then the codes against the rounded scales.
void quantize_block_q6_k(const float* x, BlockQ6_K* b) {
  float s[16], smax = 0, samax = 0;
  for (int j = 0; j < 16; j++) {
    s[j] = q6_subblock_scale(x + 16 * j);
    if (std::fabs(s[j]) > samax) samax = std::fabs(s[j]), smax = s[j];
  }
  std::memset(b, 0, sizeof(*b));
  const float d = smax / -128.0f;
  b->d = f32_to_f16(d);
  const float dr = f16_to_f32(b->d);
  uint8_t q[kQ6KBlock];
  for (int j = 0; j < 16; j++) {
    const int sc = dr != 0 ? std::clamp((int)std::lround(s[j] / dr), -128, 127) : 0;
    b->scales[j] = (int8_t)sc;
    const float ds = dr * (float)sc;
    for (int i = 0; i < 16; i++)
      q[16 * j + i] = (uint8_t)(32 + (ds != 0 ? std::clamp((int)std::lround(x[16 * j + i] / ds), -32, 31) : 0));
  }
  for (int e = 0; e < kQ6KBlock; e++) {
    const int h = e / 128, m = e % 128 / 32, l = e % 32;
    b->ql[64 * h + 32 * (m % 2) + l] |= (uint8_t)((q[e] & 15) << (m < 2 ? 0 : 4));
    b->qh[32 * h + l] |= (uint8_t)((q[e] >> 4) << (2 * m));
  }
}

}  // namespace

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
    case DType::Q6_K:
      for (int64_t k = 0; k < n / kQ6KBlock; k++) quantize_block_q6_k(src + k * kQ6KBlock, (BlockQ6_K*)dst + k);
      return;
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
