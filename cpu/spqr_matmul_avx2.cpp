// AVX2 kernels for SpQR with groupsize 16 and wbits 3 or 4. A group's 16 codes
// span 48 or 64 bits; each half of 8 codes sits in one 32-bit word, so a
// broadcast, a per-lane variable shift and a mask unpack 8 codes at once. The
// statistics of 8 groups are decoded together in vector registers.
//
// Row kernel (few tokens): a group is unpacked once and applied to every token; per
// (row, token) the scaled products accumulate in one vector (no horizontal sum per
// group):
//   acc_t += scale_g · (codes_lo·x_t,lo + codes_hi·x_t,hi),   zacc_t += scale_g·zero_g·Σx_t,g
//
// GEMM kernels (many tokens, and the transposed product): weights dequantized to f32
// panels, then 6 × 16 register tiles in 12 ymm accumulators (see spqr_matmul.h).
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "cpu/spqr_avx2_planes.h"
#include "cpu/spqr_matmul.h"

namespace engine::cpu::detail {

namespace {

// The two 32-bit words holding codes 0-7 and 8-15 of a group, read with one
// fixed-size 8-byte load (a variable or odd-size copy into a stack word stalls on
// store forwarding in this loop). For 3-bit codes that reads 2 bytes past the
// group, so the tensor's very last group takes the exact-size path.
template <int WBITS>
inline void load_group(const uint8_t* p, bool last, uint32_t* lo, uint32_t* hi) {
  uint64_t v = 0;
  if (WBITS == 4 || !last) std::memcpy(&v, p, 8);
  else std::memcpy(&v, p, 6);
  if constexpr (WBITS == 4) {
    *lo = (uint32_t)v;
    *hi = (uint32_t)(v >> 32);
  } else {  // codes 0-7 in bits 0-23, codes 8-15 in bits 24-47
    *lo = (uint32_t)v & 0xffffff;
    *hi = (uint32_t)(v >> 24) & 0xffffff;
  }
}

template <int WBITS>
void rows_kernel(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t G = w.n_groups, padded = G * 16, T = job.n_tok;
  constexpr int64_t gb = WBITS * 2;
  const __m256i shifts = _mm256_setr_epi32(0, WBITS, 2 * WBITS, 3 * WBITS, 4 * WBITS, 5 * WBITS, 6 * WBITS, 7 * WBITS);
  const __m256i mask = _mm256_set1_epi32((1 << WBITS) - 1);
  alignas(32) float scale8[8];
  // Accumulators per token (vectors of __m256 lose their alignment attribute as a
  // template argument, so they live in a float buffer, 8 floats each).
  std::vector<float> acc_buf((size_t)(T * 8)), zacc_buf((size_t)(T * 8));
  std::vector<float> ztail((size_t)T);

  for (int64_t r = job.r0; r < job.r1; r++) {
    const uint8_t* codes = w.codes + (size_t)r * G * gb;
    const uint8_t* stats = w.stats + (size_t)r * G;
    std::fill(acc_buf.begin(), acc_buf.end(), 0.0f);
    std::fill(zacc_buf.begin(), zacc_buf.end(), 0.0f);
    std::fill(ztail.begin(), ztail.end(), 0.0f);
    __m256 acc0 = _mm256_setzero_ps(), zacc0 = _mm256_setzero_ps();  // token 0 stays in registers
    for (int64_t g0 = 0; g0 < G; g0 += 8) {
      const int n = (int)std::min<int64_t>(8, G - g0);
      if (n == 8) {
        // Statistics of 8 groups: codes → f32 → scale = ss·(c − sz), zero = zs·(c − zz).
        const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(stats + g0)));
        const __m256 sc = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
        const __m256 zc = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
        const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(job.ss + g0), _mm256_sub_ps(sc, _mm256_loadu_ps(job.sz + g0)));
        const __m256 zero = _mm256_mul_ps(_mm256_loadu_ps(job.zs + g0), _mm256_sub_ps(zc, _mm256_loadu_ps(job.zz + g0)));
        const __m256 sz = _mm256_mul_ps(scale, zero);
        zacc0 = _mm256_fmadd_ps(sz, _mm256_loadu_ps(job.gsum + g0), zacc0);
        for (int64_t t = 1; t < T; t++)
          _mm256_storeu_ps(&zacc_buf[t * 8], _mm256_fmadd_ps(sz, _mm256_loadu_ps(job.gsum + t * G + g0),
                                                             _mm256_loadu_ps(&zacc_buf[t * 8])));
        _mm256_store_ps(scale8, scale);
      } else {
        for (int j = 0; j < n; j++) {
          const int64_t g = g0 + j;
          const float s = job.ss[g] * ((float)(stats[g] & 15) - job.sz[g]);
          const float z = job.zs[g] * ((float)(stats[g] >> 4) - job.zz[g]);
          scale8[j] = s;
          for (int64_t t = 0; t < T; t++) ztail[t] += s * z * job.gsum[t * G + g];
        }
      }
      for (int j = 0; j < n; j++) {
        const int64_t g = g0 + j;
        uint32_t lo_bits, hi_bits;
        load_group<WBITS>(codes + g * gb, r == w.rows - 1 && g == G - 1, &lo_bits, &hi_bits);
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)lo_bits), shifts), mask));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)hi_bits), shifts), mask));
        const __m256 s = _mm256_set1_ps(scale8[j]);
        const float* x = job.xp + g * 16;
        __m256 p0 = _mm256_mul_ps(lo, _mm256_loadu_ps(x));
        p0 = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 8), p0);
        acc0 = _mm256_fmadd_ps(s, p0, acc0);
        x += padded;
        for (int64_t t = 1; t < T; t++, x += padded) {
          __m256 p = _mm256_mul_ps(lo, _mm256_loadu_ps(x));
          p = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + 8), p);
          _mm256_storeu_ps(&acc_buf[t * 8], _mm256_fmadd_ps(s, p, _mm256_loadu_ps(&acc_buf[t * 8])));
        }
      }
    }
    job.y[r] = hsum_avx2(acc0) - hsum_avx2(zacc0) - ztail[0];
    for (int64_t t = 1; t < T; t++)
      job.y[t * w.rows + r] = hsum_avx2(_mm256_loadu_ps(&acc_buf[t * 8])) - hsum_avx2(_mm256_loadu_ps(&zacc_buf[t * 8])) - ztail[t];
  }
}

// One token (decode on AVX2, which has no int8 decode kernel): rows_kernel with T = 1
// spent a group's worth of work waiting on its one FMA chain (acc0 += s·p, ~4-5 cycles
// per group of 16 weights: ~18% of the read bandwidth, bench/NOTES.md). Here a block of
// 8 groups runs fully unrolled into 4 independent accumulators, each group's scale is
// taken from the statistics vector in registers (vpermps) instead of a store and 8
// scalar reloads, and the zero terms go into one vector per 8 groups.
template <int WBITS>
void row1_kernel(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t G = w.n_groups;
  constexpr int64_t gb = WBITS * 2;
  const __m256i shifts = _mm256_setr_epi32(0, WBITS, 2 * WBITS, 3 * WBITS, 4 * WBITS, 5 * WBITS, 6 * WBITS, 7 * WBITS);
  const __m256i mask = _mm256_set1_epi32((1 << WBITS) - 1);
  const int64_t G8 = G / 8 * 8;
  for (int64_t r = job.r0; r < job.r1; r++) {
    const uint8_t* codes = w.codes + (size_t)r * G * gb;
    const uint8_t* stats = w.stats + (size_t)r * G;
    // The tensor's very last group must not be read with an 8-byte load (load_group).
    const int64_t g_safe = r == w.rows - 1 ? G - 1 : G;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 zacc = _mm256_setzero_ps();
    float tail = 0;
    for (int64_t g0 = 0; g0 < G8; g0 += 8) {
      const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(stats + g0)));
      const __m256 sc = _mm256_cvtepi32_ps(_mm256_and_si256(b, _mm256_set1_epi32(15)));
      const __m256 zc = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
      const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(job.ss + g0), _mm256_sub_ps(sc, _mm256_loadu_ps(job.sz + g0)));
      const __m256 zero = _mm256_mul_ps(_mm256_loadu_ps(job.zs + g0), _mm256_sub_ps(zc, _mm256_loadu_ps(job.zz + g0)));
      zacc = _mm256_fmadd_ps(_mm256_mul_ps(scale, zero), _mm256_loadu_ps(job.gsum + g0), zacc);
      const float* x = job.xp + g0 * 16;
#pragma GCC unroll 8
      for (int j = 0; j < 8; j++) {
        const int64_t g = g0 + j;
        uint32_t lo_bits, hi_bits;
        load_group<WBITS>(codes + g * gb, g >= g_safe, &lo_bits, &hi_bits);
        const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)lo_bits), shifts), mask));
        const __m256 hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)hi_bits), shifts), mask));
        __m256 p = _mm256_mul_ps(lo, _mm256_loadu_ps(x + j * 16));
        p = _mm256_fmadd_ps(hi, _mm256_loadu_ps(x + j * 16 + 8), p);
        const __m256 s = _mm256_permutevar8x32_ps(scale, _mm256_set1_epi32(j));
        acc[j & 3] = _mm256_fmadd_ps(s, p, acc[j & 3]);
      }
    }
    for (int64_t g = G8; g < G; g++) {
      const float s = job.ss[g] * ((float)(stats[g] & 15) - job.sz[g]);
      const float z = job.zs[g] * ((float)(stats[g] >> 4) - job.zz[g]);
      tail += s * z * job.gsum[g];
      uint32_t lo_bits, hi_bits;
      load_group<WBITS>(codes + g * gb, g >= g_safe, &lo_bits, &hi_bits);
      const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)lo_bits), shifts), mask));
      const __m256 hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)hi_bits), shifts), mask));
      __m256 p = _mm256_mul_ps(lo, _mm256_loadu_ps(job.xp + g * 16));
      p = _mm256_fmadd_ps(hi, _mm256_loadu_ps(job.xp + g * 16 + 8), p);
      acc[0] = _mm256_fmadd_ps(_mm256_set1_ps(s), p, acc[0]);
    }
    const __m256 a = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
    job.y[r] = hsum_avx2(a) - hsum_avx2(zacc) - tail;
  }
}

// ---- the GEMM paths (forward with many tokens, transposed) ----------------------

// The 16 weights of one group whose codes start at p: scale·(code − zero), two ymm.
template <int WBITS>
inline void dequant16(const uint8_t* p, bool last, float s, float z, float* out) {
  const __m256i shifts = _mm256_setr_epi32(0, WBITS, 2 * WBITS, 3 * WBITS, 4 * WBITS, 5 * WBITS, 6 * WBITS, 7 * WBITS);
  const __m256i mask = _mm256_set1_epi32((1 << WBITS) - 1);
  uint32_t lo_bits, hi_bits;
  load_group<WBITS>(p, last, &lo_bits, &hi_bits);
  const __m256 lo = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)lo_bits), shifts), mask));
  const __m256 hi = _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)hi_bits), shifts), mask));
  const __m256 sv = _mm256_set1_ps(s), zv = _mm256_set1_ps(z);
  _mm256_storeu_ps(out, _mm256_mul_ps(sv, _mm256_sub_ps(lo, zv)));
  _mm256_storeu_ps(out + 8, _mm256_mul_ps(sv, _mm256_sub_ps(hi, zv)));
}

// Second-level statistics of up to 16 consecutive groups of one row group, in f32.
struct S2Block {
  alignas(32) float ss[16], sz[16], zs[16], zz[16];
};
inline void decode_s2(const SpqrStats2* st, int64_t gn, S2Block& b) {
  for (int64_t j = 0; j < gn; j++) {
    b.ss[j] = _cvtsh_ss(st[j].scale_scale), b.sz[j] = _cvtsh_ss(st[j].scale_zero);
    b.zs[j] = _cvtsh_ss(st[j].zero_scale), b.zz[j] = _cvtsh_ss(st[j].zero_zero);
  }
}

// One row's weights of gn ≤ 16 consecutive groups (codes and stats point at the
// first; `last`: the final group is the tensor's last): group j to out + j·ostride.
// First-level statistics 8 groups per vector (the scalar tail reads no byte past gn).
template <int WBITS>
inline void dequant_row(const uint8_t* codes, const uint8_t* stats, bool fp16_stats, const S2Block& b, int64_t gn,
                        bool last, float* out, int64_t ostride) {
  alignas(32) float s[16], z[16];
  const float *sp = b.ss, *zp = b.zs;  // plain fp16 statistics: scale_scale, zero_scale
  if (!fp16_stats) {
    int64_t j = 0;
    for (; j + 8 <= gn; j += 8) {
      const __m256i bi = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i*)(stats + j)));
      const __m256 sc = _mm256_cvtepi32_ps(_mm256_and_si256(bi, _mm256_set1_epi32(15)));
      const __m256 zc = _mm256_cvtepi32_ps(_mm256_srli_epi32(bi, 4));
      _mm256_store_ps(s + j, _mm256_mul_ps(_mm256_load_ps(b.ss + j), _mm256_sub_ps(sc, _mm256_load_ps(b.sz + j))));
      _mm256_store_ps(z + j, _mm256_mul_ps(_mm256_load_ps(b.zs + j), _mm256_sub_ps(zc, _mm256_load_ps(b.zz + j))));
    }
    for (; j < gn; j++) {
      s[j] = b.ss[j] * ((float)(stats[j] & 15) - b.sz[j]);
      z[j] = b.zs[j] * ((float)(stats[j] >> 4) - b.zz[j]);
    }
    sp = s, zp = z;
  }
  for (int64_t j = 0; j < gn; j++)
    dequant16<WBITS>(codes + j * (WBITS * 2), last && j == gn - 1, sp[j], zp[j], out + j * ostride);
}

// acc[i][0 .. 8·NV) += Σ_c panel[i][c] · xt[c][0 .. 8·NV), i < MR: MR·NV accumulators
// (6 × 2: 12, plus 2 activation vectors and a broadcast), the dense GEMM's shape.
template <int MR, int NV>
inline void gemm_tile(const float* panel, int64_t ldp, const float* xt, int64_t ldx, int64_t kn, float* acc,
                      int64_t lda) {
  __m256 a[MR][NV];
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) a[i][v] = _mm256_loadu_ps(acc + i * lda + v * 8);
  for (int64_t c = 0; c < kn; c++, xt += ldx) {
    __m256 x[NV];
    for (int v = 0; v < NV; v++) x[v] = _mm256_loadu_ps(xt + v * 8);
    for (int i = 0; i < MR; i++) {
      const __m256 b = _mm256_broadcast_ss(panel + i * ldp + c);
      for (int v = 0; v < NV; v++) a[i][v] = _mm256_fmadd_ps(b, x[v], a[i][v]);
    }
  }
  for (int i = 0; i < MR; i++)
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(acc + i * lda + v * 8, a[i][v]);
}

template <int WBITS>
void gemm_kernel(const SpqrGemmJob& job) {
  const SpqrLayer& w = *job.w;
  // The layer's fields as locals: the intrinsics' stores may alias anything and would
  // otherwise make the compiler reload them after every one.
  const int64_t G = w.n_groups, R = w.rows, T = job.n_tok, ld = job.ld, sg = w.p.stat_groupsize;
  const uint8_t *const codes = w.codes, *const stats = w.stats;
  const SpqrStats2* const stats2 = w.stats2;
  const int32_t* const rowptr = w.outlier_rowptr;
  const uint32_t* const outl = w.outliers;
  const bool fp16_stats = w.p.stat_bits == 16, sorted = job.outliers_sorted;
  float* const y = job.y;
  constexpr int64_t gb = WBITS * 2;
  // Row block (a multiple of the 6-row tile), stored columns per chunk (16 groups; the
  // panel is 48 KiB and the chunk of xt kKC·ld floats, both L2-resident), tokens per
  // pass (the accumulators kRB·kTP floats = 48 KiB).
  constexpr int64_t kRB = 48, kKC = 256, kTP = 256, kMR = 6;
  thread_local AlignedFloats panel_buf, acc_buf;
  float* panel = panel_buf.get((size_t)(kRB * kKC));
  float* acc = acc_buf.get((size_t)(kRB * kTP));
  int32_t ocur[kRB];  // per row of the block: its next outlier (sorted case)
  S2Block s2;
  for (int64_t rb = job.r0; rb < job.r1; rb += kRB) {
    const int64_t rbn = std::min(kRB, job.r1 - rb), rbp = (rbn + kMR - 1) / kMR * kMR;
    for (int64_t tp = 0; tp < ld; tp += kTP) {
      const int64_t tpn = std::min(kTP, ld - tp);  // a multiple of 8
      std::fill(acc, acc + kRB * kTP, 0.0f);
      for (int64_t kc = 0; kc < G * 16; kc += kKC) {
        const int64_t kcn = std::min(kKC, G * 16 - kc), g0 = kc / 16, gn = kcn / 16;
        int64_t q = -1;
        for (int64_t i = 0; i < rbn; i++) {
          const int64_t r = rb + i;
          if (r / sg != q) q = r / sg, decode_s2(stats2 + q * G + g0, gn, s2);
          dequant_row<WBITS>(codes + (r * G + g0) * gb, stats + r * G + g0, fp16_stats, s2, gn,
                             r == R - 1 && g0 + gn == G, panel + i * kKC, 16);
          // Outliers: their exact values replace the dequantized codes.
          if (sorted) {
            int32_t& k = ocur[i];
            if (kc == 0) k = rowptr[r];
            for (; k < rowptr[r + 1] && (int64_t)(outl[k] >> 16) < kc + kcn; k++)
              panel[i * kKC + (outl[k] >> 16) - kc] = _cvtsh_ss((uint16_t)(outl[k] & 0xffff));
          } else {
            for (int32_t k = rowptr[r]; k < rowptr[r + 1]; k++) {
              const int64_t c = (int64_t)(outl[k] >> 16) - kc;
              if (c >= 0 && c < kcn) panel[i * kKC + c] = _cvtsh_ss((uint16_t)(outl[k] & 0xffff));
            }
          }
        }
        for (int64_t i = rbn; i < rbp; i++) std::fill(panel + i * kKC, panel + i * kKC + kcn, 0.0f);
        const float* xt = job.xt + kc * ld + tp;
        for (int64_t i = 0; i < rbp; i += kMR) {
          int64_t t = 0;
          for (; t + 16 <= tpn; t += 16)
            gemm_tile<kMR, 2>(panel + i * kKC, kKC, xt + t, ld, kcn, acc + i * kTP + t, kTP);
          if (t < tpn) gemm_tile<kMR, 1>(panel + i * kKC, kKC, xt + t, ld, kcn, acc + i * kTP + t, kTP);
        }
      }
      const int64_t tn = std::min(tpn, T - tp);
      for (int64_t t = 0; t < tn; t++)
        for (int64_t i = 0; i < rbn; i++) y[(tp + t) * R + rb + i] = acc[i * kTP + t];
    }
  }
}

// The transposed product (SpqrColsJob): a column group's 16 weights of one row are
// two ymm; a tile of TB tokens keeps acc[TB][16] in 2·TB accumulators (TB = 6: 12,
// plus 2 weight vectors and a broadcast) and per panel row does 2 loads, TB
// broadcasts of dY and 2·TB FMAs — the dense GEMM's micro-kernel shape.
template <int TB>
inline void cols_tile(const float* panel, int64_t rn, const float* d, int64_t ld, float* acc) {
  __m256 a0[TB], a1[TB];
  for (int i = 0; i < TB; i++) {
    a0[i] = _mm256_load_ps(acc + i * 16);
    a1[i] = _mm256_load_ps(acc + i * 16 + 8);
  }
  for (int64_t r = 0; r < rn; r++, d += ld) {
    const __m256 w0 = _mm256_load_ps(panel + r * 16), w1 = _mm256_load_ps(panel + r * 16 + 8);
    for (int i = 0; i < TB; i++) {
      const __m256 b = _mm256_broadcast_ss(d + i);
      a0[i] = _mm256_fmadd_ps(b, w0, a0[i]);
      a1[i] = _mm256_fmadd_ps(b, w1, a1[i]);
    }
  }
  for (int i = 0; i < TB; i++) {
    _mm256_store_ps(acc + i * 16, a0[i]);
    _mm256_store_ps(acc + i * 16 + 8, a1[i]);
  }
}

template <int WBITS>
void cols_kernel(const SpqrColsJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t G = w.n_groups, T = job.n_tok, R = w.rows, C = w.cols, sg = w.p.stat_groupsize;
  const uint8_t *const codes = w.codes, *const stats = w.stats;
  const SpqrStats2* const stats2 = w.stats2;
  const int32_t* const perm = w.perm;
  const bool fp16_stats = w.p.stat_bits == 16;
  float* const dx = job.dx;
  constexpr int64_t gb = WBITS * 2;
  // Rows per chunk, column groups per block (their codes in one row share a cache line;
  // the panels, [kGB][kKC][16], are 128 KiB, the chunk of dY^T kKC·T floats; L2), tokens
  // per pass (the accumulators: kGB·kTP·16 floats = 96 KiB).
  constexpr int64_t kKC = 256, kTP = 192, kGB = 8;
  thread_local AlignedFloats panel_buf, acc_buf;
  float* panel = panel_buf.get((size_t)(kGB * kKC * 16));
  float* acc = acc_buf.get((size_t)(kGB * kTP * 16));
  int32_t cur[kGB];
  S2Block s2;
  for (int64_t gb0 = job.g0; gb0 < job.g1; gb0 += kGB) {
    const int64_t gbn = std::min(kGB, job.g1 - gb0);
    for (int64_t tp = 0; tp < T; tp += kTP) {
      const int64_t tpn = std::min(kTP, T - tp);
      std::fill(acc, acc + gbn * kTP * 16, 0.0f);
      for (int64_t gi = 0; gi < gbn; gi++) cur[gi] = job.optr[gb0 + gi];
      for (int64_t rc = 0; rc < R; rc += kKC) {
        const int64_t rcn = std::min(kKC, R - rc);
        // Dequantize rows rc .. rc+rcn of the block's groups: group gi to panel[gi][i][16].
        int64_t q = -1;
        for (int64_t i = 0; i < rcn; i++) {
          const int64_t r = rc + i;
          if (r / sg != q) q = r / sg, decode_s2(stats2 + q * G + gb0, gbn, s2);
          dequant_row<WBITS>(codes + (r * G + gb0) * gb, stats + r * G + gb0, fp16_stats, s2, gbn,
                             r == R - 1 && gb0 + gbn == G, panel + i * 16, kKC * 16);
        }
        for (int64_t gi = 0; gi < gbn; gi++) {
          const int64_t g = gb0 + gi;
          for (int32_t& k = cur[gi]; k < job.optr[g + 1] && job.orow[k] < rc + rcn; k++)
            panel[(gi * kKC + job.orow[k] - rc) * 16 + job.ocol[k]] = _cvtsh_ss(job.oval[k]);
        }
        const float* d = job.dyt + rc * T + tp;
        for (int64_t gi = 0; gi < gbn; gi++) {
          const float* p = panel + gi * kKC * 16;
          float* a = acc + gi * kTP * 16;
          int64_t t = 0;
          for (; t + 6 <= tpn; t += 6) cols_tile<6>(p, rcn, d + t, T, a + t * 16);
          switch (tpn - t) {
            case 5: cols_tile<5>(p, rcn, d + t, T, a + t * 16); break;
            case 4: cols_tile<4>(p, rcn, d + t, T, a + t * 16); break;
            case 3: cols_tile<3>(p, rcn, d + t, T, a + t * 16); break;
            case 2: cols_tile<2>(p, rcn, d + t, T, a + t * 16); break;
            case 1: cols_tile<1>(p, rcn, d + t, T, a + t * 16); break;
            default: break;
          }
        }
      }
      // Undo the permutation: stored column c is original column perm[c]. Token by
      // token, so that the scattered writes stay within one row of dX at a time.
      for (int64_t t = 0; t < tpn; t++) {
        float* out = dx + (tp + t) * C;
        for (int64_t gi = 0; gi < gbn; gi++) {
          const int64_t c0 = (gb0 + gi) * 16, cn = std::min<int64_t>(16, C - c0);
          const float* a = acc + (gi * kTP + t) * 16;
          for (int64_t j = 0; j < cn; j++) out[perm[c0 + j]] = a[j];
        }
      }
    }
  }
}

}  // namespace

void spqr_rows_avx2(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  if (w.p.groupsize != 16 || w.p.stat_bits == 16) return spqr_rows_scalar(job);
  if (w.p.wbits == 3) return job.n_tok == 1 ? row1_kernel<3>(job) : rows_kernel<3>(job);
  if (w.p.wbits == 4) return job.n_tok == 1 ? row1_kernel<4>(job) : rows_kernel<4>(job);
  spqr_rows_scalar(job);
}

}  // namespace engine::cpu::detail

namespace engine::cpu::detail {

bool spqr_gemm_avx2_supports(const SpqrLayer& w) {
  return w.p.groupsize == 16 && (w.p.wbits == 3 || w.p.wbits == 4);
}

void spqr_gemm_avx2(const SpqrGemmJob& job) {
  if (job.w->p.wbits == 3) gemm_kernel<3>(job);
  else gemm_kernel<4>(job);
}

void spqr_cols_avx2(const SpqrColsJob& job) {
  const SpqrLayer& w = *job.w;
  if (w.p.groupsize != 16) return spqr_cols_scalar(job);
  if (w.p.wbits == 3) return cols_kernel<3>(job);
  if (w.p.wbits == 4) return cols_kernel<4>(job);
  spqr_cols_scalar(job);
}

}  // namespace engine::cpu::detail
