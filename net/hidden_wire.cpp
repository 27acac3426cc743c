#include "net/hidden_wire.h"

#include <cstring>

namespace engine::net {

bool wire_dtype_ok(DType d) { return d == DType::F32 || d == DType::F16 || d == DType::BF16; }

void pack_hidden(Packer& pk, DType dtype, const float* h, int64_t n, int64_t n_embd) {
  size_t count = (size_t)(n * n_embd);
  std::vector<int64_t> shape{n, n_embd};
  if (dtype == DType::F32) {
    pack_tensor(pk, dtype, shape, h, count * sizeof(float));
    return;
  }
  if (!wire_dtype_ok(dtype)) throw Error("hidden states travel as f32, f16 or bf16");
  std::vector<uint16_t> tmp(count);
  for (size_t i = 0; i < count; i++) tmp[i] = dtype == DType::F16 ? f32_to_f16(h[i]) : f32_to_bf16(h[i]);
  pack_tensor(pk, dtype, shape, tmp.data(), count * 2);
}

void unpack_hidden(const TensorView& t, int64_t n_embd, int64_t max_n, std::vector<float>& out, int64_t* n) {
  if (!wire_dtype_ok(t.dtype)) throw BadMessage("hidden states must be f32, f16 or bf16");
  if (t.shape.size() != 2 || t.shape[1] != n_embd)
    throw BadMessage("hidden states must have shape [n, " + std::to_string(n_embd) + "]");
  if (t.shape[0] < 1 || t.shape[0] > max_n)
    throw BadMessage("hidden states carry " + std::to_string(t.shape[0]) + " positions; allowed 1.." +
                     std::to_string(max_n));
  *n = t.shape[0];
  size_t count = (size_t)(t.shape[0] * n_embd);
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

}  // namespace engine::net
