// Element types of tensors, with GGML's numeric ids so GGUF files move between
// engine and llama.cpp both ways.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace engine {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q8_0 = 8,
  Q6_K = 14,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  BF16 = 30,
};

// Q8_0: blocks of 32 values, one fp16 scale d, 32 int8 codes; value = d * q.
constexpr int kQ8Block = 32;
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQ8Block];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must be 34 bytes");

// Q4_0 (ggml's layout): blocks of 32 values, one fp16 scale d, 16 bytes of 4-bit codes;
// byte j holds value j in its low nibble and value j+16 in its high one; value = d * (q - 8).
// A storage format for token embeddings (a row is dequantized on lookup), not for matmuls.
constexpr int kQ4Block = 32;
struct BlockQ4_0 {
  uint16_t d;
  uint8_t qs[kQ4Block / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must be 18 bytes");

// Q6_K (ggml's layout): super-blocks of 256 values in 16 sub-blocks of 16, each with an
// int8 scale, under one fp16 scale d; 6-bit codes q, value = d · scales[s] · (q − 32).
// Value e = 128n + 32m + l (n = 0..1, m = 0..3, l = 0..31) has its low 4 bits in
// ql[64n + 32(m % 2) + l] (low nibble for m < 2, high for m ≥ 2), its high 2 bits in
// qh[32n + l] at bits 2m..2m+1, and sub-block e / 16. 6.5625 bits per value: llama.cpp
// stores its Q4_0 files' output head so.
constexpr int kQ6KBlock = 256;
struct BlockQ6_K {
  uint8_t ql[kQ6KBlock / 2];
  uint8_t qh[kQ6KBlock / 4];
  int8_t scales[kQ6KBlock / 16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block must be 210 bytes");
// The 6-bit code (0..63) of value e (0..255) of a Q6_K block.
inline int q6k_code(const BlockQ6_K& b, int e) {
  const int h = e / 128, m = e % 128 / 32, l = e % 32;
  const uint8_t lo = b.ql[64 * h + 32 * (m % 2) + l];
  return ((m < 2 ? lo : lo >> 4) & 15) | ((b.qh[32 * h + l] >> (2 * m)) & 3) << 4;
}

bool dtype_known(uint32_t id);
const char* dtype_name(DType t);
// "f32", "f16", "bf16", "q8_0" (the types every weight path computes with); q4_0 is
// named only by dtype_from_name_storage, for tables that are read a row at a time, and
// q6_k only by dtype_from_name_head, for the output head (a matmul runs on it, but not
// every path that takes a whole model's weights does: training masters, CUDA).
bool dtype_from_name(const std::string& name, DType* out);
bool dtype_from_name_storage(const std::string& name, DType* out);
bool dtype_from_name_head(const std::string& name, DType* out);
int64_t dtype_block_size(DType t);                          // elements per block (1 for plain types)
size_t dtype_block_bytes(DType t);                          // bytes per block
// Bytes of n elements; n must be a multiple of the block size (checked by callers).
inline size_t dtype_row_bytes(DType t, int64_t n) {
  return (size_t)(n / dtype_block_size(t)) * dtype_block_bytes(t);
}

// Scalar conversions (IEEE half with round-to-nearest-even; bf16 rounds to nearest even).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t f32_to_bf16(float f);

// Row conversions between float and any supported type. n must be a multiple of the block size.
void dequantize_row(DType t, const void* src, float* dst, int64_t n);
void quantize_row(DType t, const float* src, void* dst, int64_t n);

// `rows` rows of `cols` values from type `from` to type `to` (through f32).
std::vector<uint8_t> convert_rows(DType from, const void* src, DType to, int64_t cols, int64_t rows);

}  // namespace engine
