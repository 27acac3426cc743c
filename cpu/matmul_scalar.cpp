// Portable kernels: the reference family and the fallback on CPUs without AVX2.
// Plain C++; the compiler may auto-vectorise with the baseline ISA (SSE2).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "cpu/matmul_internal.h"

namespace engine::cpu::detail {
namespace {

// f16 → f32 through a 64k-entry table: the bit-twiddling conversion per element
// would dominate these loops.
const float* f16_table() {
  static const std::vector<float> table = [] {
    std::vector<float> t(65536);
    for (uint32_t i = 0; i < 65536; i++) t[i] = f16_to_f32((uint16_t)i);
    return t;
  }();
  return table.data();
}

inline float bf16(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

const char* row_ptr(const WeightView& w, int64_t r) { return (const char*)w.data + (size_t)r * w.row_bytes; }

void row_to_f32(const WeightView& w, int64_t r, int64_t c0, int64_t n, float* dst) {
  const char* row = row_ptr(w, r);
  switch (w.type) {
    case DType::F32:
      std::memcpy(dst, (const float*)row + c0, sizeof(float) * n);
      break;
    case DType::F16: {
      const float* tab = f16_table();
      const uint16_t* s = (const uint16_t*)row + c0;
      for (int64_t i = 0; i < n; i++) dst[i] = tab[s[i]];
      break;
    }
    case DType::BF16: {
      const uint16_t* s = (const uint16_t*)row + c0;
      for (int64_t i = 0; i < n; i++) dst[i] = bf16(s[i]);
      break;
    }
    case DType::Q8_0: {
      const float* tab = f16_table();
      const BlockQ8_0* b = (const BlockQ8_0*)row + c0 / kQ8Block;
      for (int64_t j = 0; j < n / kQ8Block; j++) {
        uint16_t dh;
        std::memcpy(&dh, &b[j].d, 2);
        const float d = tab[dh];
        for (int i = 0; i < kQ8Block; i++) dst[j * kQ8Block + i] = d * (float)b[j].qs[i];
      }
      break;
    }
    case DType::Q6_K:
      dequantize_row(DType::Q6_K, (const BlockQ6_K*)row + c0 / kQ6KBlock, dst, n);
      break;
    default:
      break;
  }
}

// Dot product of float products summed in double, as ggml's scalar fallback does:
// the fallback is then as close to exact arithmetic as it can cheaply be, and
// f16-rounded intermediates downstream (the KV cache) flip less often against
// other implementations. Speed is not this family's job.
float dot(const float* a, const float* b, int64_t n) {
  double s0 = 0, s1 = 0;
  int64_t i = 0;
  for (; i + 2 <= n; i += 2) {
    s0 += (double)(a[i] * b[i]);
    s1 += (double)(a[i + 1] * b[i + 1]);
  }
  if (i < n) s0 += (double)(a[i] * b[i]);
  return (float)(s0 + s1);
}

void gemv(const WeightView& w, int64_t r0, int64_t r1, const float* x, const QuantAct* xq, int64_t n_tok,
          float* y, bool add) {
  const int64_t K = w.cols, N = w.rows;
  if (w.type == DType::Q8_0) {
    // Exact integer dot products per block against the quantized activations.
    const float* tab = f16_table();
    const int64_t nb = K / kQ8Block;
    for (int64_t r = r0; r < r1; r++) {
      const BlockQ8_0* b = (const BlockQ8_0*)row_ptr(w, r);
      for (int64_t t = 0; t < n_tok; t++) {
        const int8_t* q = xq->q + t * K;
        const float* d = xq->d + t * nb;
        float acc = 0;
        for (int64_t j = 0; j < nb; j++) {
          int32_t s = 0;
          for (int i = 0; i < kQ8Block; i++) s += (int32_t)b[j].qs[i] * (int32_t)q[j * kQ8Block + i];
          uint16_t dh;
          std::memcpy(&dh, &b[j].d, 2);
          acc += tab[dh] * d[j] * (float)s;
        }
        y[t * N + r] = add ? y[t * N + r] + acc : acc;
      }
    }
    return;
  }
  if (w.type == DType::Q6_K) {
    // The AVX2 kernel's arithmetic: per chunk of 32, an exact integer sum of
    // scale · (q − 32) · x_q over its two sub-blocks, times d · d_x. Each block's codes
    // are decoded once for all tokens.
    const int64_t nx = K / kQ8Block;
    thread_local std::vector<float> acc;
    acc.resize((size_t)n_tok);
    int8_t codes[kQ6KBlock];
    for (int64_t r = r0; r < r1; r++) {
      const BlockQ6_K* b = (const BlockQ6_K*)row_ptr(w, r);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j = 0; j < K / kQ6KBlock; j++) {
        for (int e = 0; e < kQ6KBlock; e++) codes[e] = (int8_t)(q6k_code(b[j], e) - 32);
        uint16_t dh;
        std::memcpy(&dh, &b[j].d, 2);
        const float d = f16_table()[dh];
        for (int64_t t = 0; t < n_tok; t++) {
          const int8_t* q = xq->q + t * K + j * kQ6KBlock;
          for (int c = 0; c < kQ6KBlock / kQ8Block; c++) {
            int32_t s = 0;
            for (int half = 0; half < 2; half++) {
              int32_t u = 0;
              for (int i = 0; i < 16; i++) u += (int32_t)codes[32 * c + 16 * half + i] * (int32_t)q[32 * c + 16 * half + i];
              s += u * (int32_t)b[j].scales[2 * c + half];
            }
            acc[t] += (float)s * (d * xq->d[t * nx + j * 8 + c]);
          }
        }
      }
      for (int64_t t = 0; t < n_tok; t++) y[t * N + r] = add ? y[t * N + r] + acc[t] : acc[t];
    }
    return;
  }
  thread_local std::vector<float> buf;
  if ((int64_t)buf.size() < K) buf.resize(K);
  for (int64_t r = r0; r < r1; r++) {
    const float* wr;
    if (w.type == DType::F32) {
      wr = (const float*)row_ptr(w, r);
    } else {
      row_to_f32(w, r, 0, K, buf.data());
      wr = buf.data();
    }
    for (int64_t t = 0; t < n_tok; t++) {
      const float v = dot(wr, x + t * K, K);
      y[t * N + r] = add ? y[t * N + r] + v : v;
    }
  }
}

void axpy_rows(const float* a, const float* rows, int64_t m, int64_t ld, int64_t n, float* y) {
  for (int64_t i = 0; i < m; i++) {
    const float ai = a[i];
    const float* ri = rows + i * ld;
    for (int64_t j = 0; j < n; j++) y[j] += ai * ri[j];
  }
}

void quantize_q8(const float* x, int64_t n, int8_t* q, float* d) {
  for (int64_t b = 0; b < n / kQ8Block; b++) {
    const float* xb = x + b * kQ8Block;
    float amax = 0;
    for (int i = 0; i < kQ8Block; i++) amax = std::max(amax, std::fabs(xb[i]));
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    d[b] = amax / 127.0f;
    for (int i = 0; i < kQ8Block; i++) q[b * kQ8Block + i] = (int8_t)std::clamp(std::nearbyint(xb[i] * id), -127.0f, 127.0f);
  }
}

}  // namespace

const Kernels kScalarKernels = {"scalar", gemv, nullptr, 1, 1, nullptr, nullptr, 1, row_to_f32, axpy_rows, quantize_q8};

}  // namespace engine::cpu::detail
