// Hidden states on the wire: [n][n_embd] tensors in f32 (exact; the default on
// loopback so swarm output equals local output bit for bit), f16 or bf16
// (half the bytes, for real networks).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "net/msg.h"

namespace engine::net {

// Packs hidden [n][n_embd] as a tensor of `dtype` (f32, f16 or bf16).
void pack_hidden(Packer& pk, DType dtype, const float* hidden, int64_t n, int64_t n_embd);
// Checks a received tensor is [n][n_embd] of f32/f16/bf16 with n in [1, max_n]
// and converts it to f32; throws BadMessage saying what is wrong.
void unpack_hidden(const TensorView& t, int64_t n_embd, int64_t max_n, std::vector<float>& out, int64_t* n);
bool wire_dtype_ok(DType d);

// A batch of equally long sequences for the stateless training RPCs: a tensor
// [B][n][n_embd], or [n][n_embd] for one sequence (B = 1).
struct HiddenBatch {
  int64_t batch = 0, n = 0;
  std::vector<float> data;  // [batch][n][n_embd], f32
  DType dtype = DType::F32;  // as received (replies use it too)
};
void pack_batch(Packer& pk, DType dtype, const float* x, int64_t batch, int64_t n, int64_t n_embd);
// Checks the shape ([B][n][n_embd] or [n][n_embd]), the dtype (f32, f16, bf16)
// and that B·n is in [1, max_positions]; throws BadMessage saying what is wrong.
HiddenBatch unpack_batch(const TensorView& t, int64_t n_embd, int64_t max_positions);

}  // namespace engine::net
