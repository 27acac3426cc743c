#include "net/hidden_wire.h"

#include <cstring>

namespace engine::net {

bool wire_dtype_ok(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

namespace {

void pack_floats(Packer& pk, DType dtype, const std::vector<int64_t>& shape, const float* h, size_t count) {
  if (dtype == DType::F32) {
    pack_tensor(pk, dtype, shape, h, count * sizeof(float));
    return;
  }
  if (!wire_dtype_ok(dtype)) throw Error("hidden states travel as f32, f16 or bf16");
  std::vector<uint16_t> tmp(count);
  for (size_t i = 0; i < count; i++) tmp[i] = dtype == DType::F16 ? f32_to_f16(h[i]) : f32_to_bf16(h[i]);
  pack_tensor(pk, dtype, shape, tmp.data(), count * 2);
}

void to_f32(const TensorView& t, size_t count, std::vector<float>& out) {
  out.resize(count);
  if (t.dtype == DType::F32) {
    std::memcpy(out.data(), t.data.data(), count * sizeof(float));
    return;
  }
  const char* p = t.data.data();
  for (size_t i = 0; i < count; i++) {
    uint16_t v;
    std::memcpy(&v, p + 2 * i, 2);  // the message bytes carry no alignment guarantee
    out[i] = t.dtype == DType::F16 ? f16_to_f32(v) : bf16_to_f32(v);
  }
}

}  // namespace

void pack_hidden(Packer& pk, DType dtype, const float* h, int64_t n, int64_t n_embd) {
  pack_floats(pk, dtype, {n, n_embd}, h, (size_t)(n * n_embd));
}

void pack_batch(Packer& pk, DType dtype, const float* x, int64_t batch, int64_t n, int64_t n_embd) {
  pack_floats(pk, dtype, {batch, n, n_embd}, x, (size_t)(batch * n * n_embd));
}

HiddenBatch unpack_batch(const TensorView& t, int64_t n_embd, int64_t max_positions) {
  if (!wire_dtype_ok(t.dtype)) throw BadMessage("hidden states must be f32, f16 or bf16");
  const size_t r = t.shape.size();
  if ((r != 2 && r != 3) || t.shape[r - 1] != n_embd)
    throw BadMessage("a batch must have shape [batch, n, " + std::to_string(n_embd) + "] or [n, " +
                     std::to_string(n_embd) + "]");
  HiddenBatch b;
  b.batch = r == 3 ? t.shape[0] : 1;
  b.n = t.shape[r - 2];
  b.dtype = t.dtype;
  if (b.batch < 1 || b.n < 1 || b.n > max_positions || b.batch > max_positions / b.n)
    throw BadMessage("a batch of " + std::to_string(b.batch) + " x " + std::to_string(b.n) +
                     " positions; allowed 1.." + std::to_string(max_positions) + " in all");
  to_f32(t, (size_t)(b.batch * b.n * n_embd), b.data);
  return b;
}

void unpack_hidden(const TensorView& t, int64_t n_embd, int64_t max_n, std::vector<float>& out, int64_t* n) {
  if (!wire_dtype_ok(t.dtype)) throw BadMessage("hidden states must be f32, f16 or bf16");
  if (t.shape.size() != 2 || t.shape[1] != n_embd)
    throw BadMessage("hidden states must have shape [n, " + std::to_string(n_embd) + "]");
  if (t.shape[0] < 1 || t.shape[0] > max_n)
    throw BadMessage("hidden states carry " + std::to_string(t.shape[0]) + " positions; allowed 1.." +
                     std::to_string(max_n));
  *n = t.shape[0];
  to_f32(t, (size_t)(t.shape[0] * n_embd), out);
}

}  // namespace engine::net
