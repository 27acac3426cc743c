// Products with SpQR weights, computed from the packed form (no dense copy of the
// matrix). Two ways, by the number of tokens:
//
// - Few tokens (decode; forward below 4 tokens): activations are gathered into the
//   stored (permuted) column order once per call, each group's codes are unpacked
//   in registers and dotted with them, the statistics are applied once per group,
//   and outliers are added sparsely:
//     y[t][r] = Σ_g scale_rg · (Σ_j code_rgj · xp[t][g,j] − zero_rg · Σ_j xp[t][g,j])  + outliers
// - Many tokens (prefill, training; and every transposed product): a GEMM. A panel
//   of the weights (rows × columns that stay in L1/L2) is dequantized to f32, with
//   the outliers written in as their exact values, and a register-blocked FMA tile
//   runs over it for all tokens, as the dense GEMM does with its converted panels.
//   Each weight is dequantized once per call (per 256/192 tokens): ~1.2 cycles per
//   weight, ~15-20% of a 128-token product (bench/NOTES.md), the FMAs the rest.
//
// - One token on AVX-512 VBMI + VNNI (spqr_decode_avx512vbmi.cpp): the activations are
//   rounded to int8 per column group and each row streams its packed codes once
//   (vpmultishiftqb unpacks, vpdpbusd dots), bandwidth-bound.
// - wbits 3 on the AVX2 family, any number of tokens (spqr_decode_avx2.cpp,
//   spqr_prefill_avx2.cpp): the same int8 arithmetic on codes re-laid once per layer in
//   bit planes (a shift and a mask per 32 codes), vpmaddubsw dots; several tokens share
//   one unpacking of each row.
//
// Numerics: f32 sums throughout; results equal dY·W_dequantized (or W·x) to ~1e-6
// relative of Σ|w·x|, the summation order differing between the two ways. The int8
// 1-token kernel instead equals W_codes·xr + Σ outlier deltas·x (x rounded per group
// of 16 to int8, spqr_decode_round_activations), ~1e-4 of Σ|w·x| from W·x
// (docs/spqr-format.md states the bounds).
#pragma once
#include <cstdint>
#include <vector>

#include "core/spqr.h"
#include "core/thread_pool.h"

namespace engine::cpu {

// Y[t][r] = Σ_c W[r][c] X[t][c]: X [n_tok][cols], Y [n_tok][rows], f32.
void spqr_matmul(const SpqrLayer& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool);

// dX[t][c] = Σ_r dY[t][r] W[r][c]: the transposed product (backward passes).
void spqr_matmul_transposed(const SpqrLayer& w, const float* dy, int64_t n_tok, float* dx, ThreadPool& pool);

namespace detail {

// 64-byte aligned float scratch (a std::vector alone gives 16).
struct AlignedFloats {
  std::vector<float> buf;
  float* get(size_t n) {
    buf.resize(n + 16);
    return (float*)(((uintptr_t)buf.data() + 63) & ~(uintptr_t)63);
  }
};

// Everything a row kernel needs for rows [r0, r1) of one row group.
struct SpqrRowsJob {
  const SpqrLayer* w;
  int64_t r0, r1;
  const float* ss;  // [n_groups] second-level stats of the row group, decoded to f32
  const float* sz;
  const float* zs;
  const float* zz;
  const float* xp;    // [n_tok][n_groups · groupsize] gathered activations, zero-padded
  const float* gsum;  // [n_tok][n_groups] their group sums
  int64_t n_tok;
  float* y;           // [n_tok][rows]; the kernel writes rows r0..r1 without outliers
};
void spqr_rows_scalar(const SpqrRowsJob& job);
// AVX2: groupsize 16 and wbits <= 4 (the SpQR configurations); others go to the scalar kernel.
void spqr_rows_avx2(const SpqrRowsJob& job);

// The transposed product over column groups [g0, g1) (one thread's share): for a
// chunk of rows, each column group's weights are dequantized to an f32 panel
// [rows of the chunk][groupsize] (outliers written in as their exact values), and
// a register-blocked FMA tile (tokens × the group's columns) runs over it:
//   acc[t][0..gs) += Σ_r dyt[r][t] · panel[r][0..gs)
// The job writes dx[t][perm[c]] for the stored columns c of its groups, nothing else.
struct SpqrColsJob {
  const SpqrLayer* w;
  const float* dyt;     // [rows][n_tok]: dY transposed
  int64_t n_tok;
  const int32_t* optr;  // [n_groups + 1]: the outliers of column group g are entries optr[g] .. optr[g+1)
  const int32_t* orow;  //   their rows, ascending within a group
  const uint16_t* ocol; //   their columns within the group
  const uint16_t* oval; //   their values, fp16 bits (the weight itself, not a delta)
  int64_t g0, g1;
  float* dx;            // [n_tok][cols], original column order
};
void spqr_cols_scalar(const SpqrColsJob& job);
// AVX2 / AVX-512: groupsize 16 and wbits 3 or 4; others go to the scalar kernel.
void spqr_cols_avx2(const SpqrColsJob& job);
void spqr_cols_avx512(const SpqrColsJob& job);

// The forward product for many tokens (a GEMM): rows [r0, r1) of Y. Per block of
// rows and chunk of stored columns, the weights are dequantized to an f32 panel
// (outliers written in as their exact values) and a register-blocked FMA tile of
// rows × tokens runs over it, with the gathered activations transposed (tokens
// contiguous). AVX2 and AVX-512 only, for groupsize 16 and wbits 3 or 4
// (spqr_gemm_avx2_supports); other layers use the row kernels.
struct SpqrGemmJob {
  const SpqrLayer* w;
  const float* xt;  // [n_groups · 16][ld]: xt[c'][t] = x[t][perm c'], zero-padded (columns and tokens)
  int64_t n_tok, ld;  // ld: n_tok rounded up to a whole vector (8 floats for AVX2, 16 for AVX-512)
  int64_t r0, r1;
  float* y;         // [n_tok][rows]; the job writes rows r0 .. r1
  bool outliers_sorted;  // every row's outliers in ascending column order (what quantize writes)
};
bool spqr_gemm_avx2_supports(const SpqrLayer& w);  // also what spqr_gemm_avx512 supports
void spqr_gemm_avx2(const SpqrGemmJob& job);
void spqr_gemm_avx512(const SpqrGemmJob& job);  // ld a multiple of 16

// The 1-token product with int8 activations (spqr_decode_avx512vbmi.cpp): the activations
// are gathered into stored column order and rounded to int8 per column group once per
// call (d_g = max|x_g| / 127, q = round-to-nearest-even(x · 127 / max|x_g|)), laid out
// for vpdpbusd; then each row streams its codes and statistics once.
struct SpqrDecodeActs {
  AlignedFloats xp_buf, xq_buf, d_buf, qsum_buf;
  float* xp = nullptr;    // [nb · 256]: x[perm c], exact, zero past cols (outliers use it)
  int32_t* xq = nullptr;  // [nb][4][16]: xq[(b·4 + i)·16 + g] = bytes 4i..4i+3 of group 16b+g's int8 codes
  float* d = nullptr;     // [nb · 16]: the groups' scales (0 past n_groups)
  float* qsum = nullptr;  // [nb · 16]: Σ_j q_gj
  // AVX2 kernel: xq holds the int8 codes in stored column order (16 bytes per group),
  // d and qsum are in its group order, and `packed` is the layer's re-laid codes.
  const uint8_t* packed = nullptr;
  void resize(int64_t nb) {  // nb = ceil(n_groups / 16)
    xp = xp_buf.get((size_t)(nb * 256));
    xq = (int32_t*)xq_buf.get((size_t)(nb * 64));
    d = d_buf.get((size_t)(nb * 16));
    qsum = qsum_buf.get((size_t)(nb * 16));
  }
};
struct SpqrDecodeJob {
  const SpqrLayer* w;
  const SpqrDecodeActs* acts;
  int64_t q0, q1;  // row groups
  float* y;        // [rows]
};
// groupsize 16, wbits 3 or 4, bilevel statistics, outlier deltas derived; the CPU
// must have AVX-512 VBMI and VNNI (spqr_decode_int8_active checks all of it).
bool spqr_decode_avx512_supports(const SpqrLayer& w);
void spqr_decode_prepare_avx512(const SpqrLayer& w, const float* x, SpqrDecodeActs& a);
void spqr_decode_avx512(const SpqrDecodeJob& job);
// The same product on AVX2 (spqr_decode_avx2.cpp): groupsize 16, wbits 3, bilevel
// statistics, outlier deltas derived. The layer's codes are re-laid in bit planes on
// the first call (SpqrLayer::decode_avx2_packed), as many bytes as the file's.
bool spqr_decode_avx2_supports(const SpqrLayer& w);
void spqr_decode_prepare_avx2(const SpqrLayer& w, const float* x, SpqrDecodeActs& a, ThreadPool& pool);
void spqr_decode_avx2(const SpqrDecodeJob& job);
// The re-laid layer (built on first use; spqr_decode_avx2.cpp describes the layout): per
// row, ceil(G/16) super-blocks of kSpqrAvx2SuperBytes, then per row group and half
// super-block the second-level statistics ss[8], sz[8], zs[8], zz[8] (fp16).
constexpr int64_t kSpqrAvx2SuperBytes = 112, kSpqrAvx2S2HalfBytes = 64;
const uint8_t* spqr_avx2_packed(const SpqrLayer& w, ThreadPool& pool);
// One token's activations for the AVX2 int8 kernels: xp [nb·256] in stored order (exact,
// zero-padded), xq [nb·64] int8 in the packed chunk order, d and qsum [nb·16] per group.
void spqr_avx2_quantize_acts(const SpqrLayer& w, const float* x, float* xp, int32_t* xq, float* d, float* qsum);

// Many tokens with int8 activations on AVX2 (spqr_prefill_avx2.cpp), for the layers
// spqr_decode_avx2_supports takes: rows [r0, r1) of y [n_tok][rows]. Each row is
// unpacked once per call and dotted with every token's int8 activations (vpmaddubsw);
// per token the result is what the 1-token kernel gives (up to float summation order).
struct SpqrPrefillJob {
  const SpqrLayer* w;
  const uint8_t* packed;
  const int32_t* xq;    // [n_tok][nb·64]
  const float* d;       // [n_tok][nb·16]: the groups' activation scales
  const float* e;       // [n_tok][nb·16]: d · Σq
  const float* xt;      // [cols][ld]: exact activations, stored column order, tokens contiguous
  int64_t n_tok, ld;
  int64_t r0, r1;
  float* y;
};
void spqr_prefill_avx2(const SpqrPrefillJob& job);

}  // namespace detail

// Whether a 1-token spqr_matmul on this layer runs the int8-activation kernel with the
// current kernel family (else it runs the exact row kernel).
bool spqr_decode_int8_active(const SpqrLayer& w);

// While one lives, spqr_matmul on this thread computes with the exact activations (no
// int8 kernel): the training forward, whose backward differentiates the exact product
// (models/llama_backward.cpp). Nests.
class SpqrExactScope {
 public:
  SpqrExactScope();
  ~SpqrExactScope();
  SpqrExactScope(const SpqrExactScope&) = delete;
  SpqrExactScope& operator=(const SpqrExactScope&) = delete;
};

// Whether spqr_matmul of n_tok tokens on this layer rounds the activations to int8 per
// column group (the 1-token kernels above; on AVX2 also several tokens, each token
// rounded as one token is), with the current kernel family.
bool spqr_matmul_int8_active(const SpqrLayer& w, int64_t n_tok);

// Several 1-token products of one input x [cols] (q, k and v; gate and up), y[i] [rows of
// w[i]], in one parallel region: the threads work through the layers' row groups one
// after another and meet once, not once per layer. Every layer must be
// spqr_decode_int8_active and have x's width; at most kSpqrDecodeManyMax layers.
constexpr int kSpqrDecodeManyMax = 4;
void spqr_decode_int8_many(const SpqrLayer* const* w, int count, const float* x, float* const* y, ThreadPool& pool);

// x [cols] rounded as the int8 decode kernel rounds it, in original column order:
// xr[perm c] = d_g · q_c. For tests: that kernel's result equals
// W_codes·xr + Σ_outliers delta·x (W_codes: the dequantized codes, outliers not applied).
void spqr_decode_round_activations(const SpqrLayer& w, const float* x, float* xr);

}  // namespace engine::cpu
