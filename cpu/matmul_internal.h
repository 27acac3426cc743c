// Internal interface between the matmul driver (cpu/matmul.cpp: dispatch,
// threading, activation preparation) and the per-ISA kernels
// (matmul_scalar.cpp, matmul_avx2.cpp, matmul_avx512.cpp).
//
// The ISA files are compiled with -mavx2/-mavx512f; they keep all their code in
// anonymous namespaces and export only a table of plain function pointers, so no
// inline/template instance compiled with wide instructions can be picked by the
// linker for code that runs on an older CPU.
#pragma once
#include <cstdint>

#include "cpu/matmul.h"

namespace engine::cpu::detail {

// k-block of the GEMM weight panels: a panel of mr rows is stored f32 as
// [kpad / kKC][mr][kKC], so the micro-kernel reads each row at a constant offset.
constexpr int64_t kKC = 256;

// Activations quantized to Q8 blocks for Q8_0 matrix-vector products:
// q [n_tok][cols] int8, d [n_tok][cols/32] f32 scales; x ≈ d[b] * q[i].
struct QuantAct {
  const int8_t* q;
  const float* d;
};

struct Kernels {
  const char* name;
  // Matrix-vector path: rows [r0, r1) of Y for all n_tok tokens, each weight row
  // read once. xq is non-null exactly for Q8_0 and Q6_K weights. add: Y += instead of Y =.
  void (*gemv)(const WeightView& w, int64_t r0, int64_t r1, const float* x, const QuantAct* xq,
               int64_t n_tok, float* y, bool add);
  // GEMM path (null: use gemv for every n_tok). Rows [r0, r1), r0 a multiple of mr.
  //   xt:    X transposed and zero-padded, [kpad][tpad], kpad = round_up(cols, kKC),
  //          tpad = round_up(n_tok, tv)
  //   panel: scratch of mr * kpad floats
  void (*gemm)(const WeightView& w, int64_t r0, int64_t r1, const float* xt, int64_t tpad, int64_t n_tok,
               float* y, bool add, float* panel);
  int mr;  // rows per GEMM panel
  int tv;  // tokens per vector (the token padding of xt)
  // GEMM in dot-product form for F16 and BF16 weights (null: the panel GEMM above
  // serves them too): rows [r0, r1) of Y for all n_tok tokens, from the activations
  // rounded to f16, xh [n_tok][cols]; r0 a multiple of dot_rows.
  void (*gemm_dot)(const WeightView& w, int64_t r0, int64_t r1, const uint16_t* xh, int64_t n_tok, float* y,
                   bool add);
  // h[0, n) = x rounded to f16 (nearest even); with gemm_dot. False when some
  // finite |x| is beyond f16's range (h is then not to be used).
  bool (*to_f16)(const float* x, int64_t n, uint16_t* h);
  int dot_rows;
  // dst[0, n) = W[r][c0, c0 + n) in f32; c0 and n are multiples of the block size.
  void (*row_to_f32)(const WeightView& w, int64_t r, int64_t c0, int64_t n, float* dst);
  // y[0, n) += Σ_{i<m} a[i] · rows[i·ld + (0, n)]   (transposed product's inner loop)
  void (*axpy_rows)(const float* a, const float* rows, int64_t m, int64_t ld, int64_t n, float* y);
  // Activations to Q8 blocks, n a multiple of 32: per block d = max|x|/127,
  // q = round-to-nearest(x/d) (q = 0 where d = 0).
  void (*quantize_q8)(const float* x, int64_t n, int8_t* q, float* d);
};

// Q6_K rows against Q8 activations (matmul_q6k_avx2.cpp): the AVX2 and AVX-512
// families' gemv for Q6_K weights.
void gemv_q6k_avx2(const WeightView& w, int64_t r0, int64_t r1, const QuantAct& xq, int64_t n_tok, float* y, bool add);

extern const Kernels kScalarKernels;
extern const Kernels kAvx2Kernels;
extern const Kernels kAvx512Kernels;

}  // namespace engine::cpu::detail
