// AVX-512 GEMM kernels for SpQR (groupsize 16, wbits 3 or 4): the many-token
// forward product and the transposed product, the AVX2 kernels' structure at twice
// the width. A group's 16 codes become one zmm: lanes 0-7 from the 32-bit word of
// codes 0-7, lanes 8-15 from that of codes 8-15, one variable shift and a mask; the
// first-level statistics of 16 groups of a row are decoded in one vector.
//
//   forward:    a panel of rows dequantized to f32 [row][column], tokens as lanes:
//               12 rows × 32 tokens in 24 zmm accumulators (per column: 2 loads of
//               activations, 12 broadcasts, 24 FMAs);
//   transposed: column groups dequantized to f32 [group][row][16], the columns as
//               lanes, two groups at a time: 12 tokens × 32 columns in 24 zmm (per
//               row: 2 loads of weights, 12 broadcasts of dY, 24 FMAs).
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/spqr_matmul.h"

// GCC 12 reports the intrinsics' own _mm512_undefined_*() operands (self-initialised
// on purpose) as "may be used uninitialized" once they are inlined here.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace engine::cpu::detail {

namespace {

// As in spqr_matmul_avx2.cpp: codes 0-7 and 8-15 of a group, with one fixed 8-byte
// load except for the tensor's very last 3-bit group (it would read 2 bytes past).
template <int WBITS>
inline void load_group(const uint8_t* p, bool last, uint32_t* lo, uint32_t* hi) {
  uint64_t v = 0;
  if (WBITS == 4 || !last) std::memcpy(&v, p, 8);
  else std::memcpy(&v, p, 6);
  if constexpr (WBITS == 4) {
    *lo = (uint32_t)v;
    *hi = (uint32_t)(v >> 32);
  } else {
    *lo = (uint32_t)v & 0xffffff;
    *hi = (uint32_t)(v >> 24) & 0xffffff;
  }
}

// The 16 weights of one group whose codes start at p: scale·(code − zero), into out[0..16).
template <int WBITS>
inline void dequant16(const uint8_t* p, bool last, float s, float z, float* out) {
  const __m512i shifts = _mm512_setr_epi32(0, WBITS, 2 * WBITS, 3 * WBITS, 4 * WBITS, 5 * WBITS, 6 * WBITS, 7 * WBITS,
                                           0, WBITS, 2 * WBITS, 3 * WBITS, 4 * WBITS, 5 * WBITS, 6 * WBITS, 7 * WBITS);
  const __m512i mask = _mm512_set1_epi32((1 << WBITS) - 1);
  uint32_t lo, hi;
  load_group<WBITS>(p, last, &lo, &hi);
  const __m512i words = _mm512_mask_set1_epi32(_mm512_set1_epi32((int)lo), (__mmask16)0xff00, (int)hi);
  const __m512 codes = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(words, shifts), mask));
  _mm512_storeu_ps(out, _mm512_mul_ps(_mm512_set1_ps(s), _mm512_sub_ps(codes, _mm512_set1_ps(z))));
}

// Second-level statistics of up to 16 consecutive groups of one row group, in f32
// (zero past gn, so that whole vectors stay finite).
struct S2Block {
  alignas(64) float ss[16], sz[16], zs[16], zz[16];
};
inline void decode_s2(const SpqrStats2* st, int64_t gn, S2Block& b) {
  for (int64_t j = 0; j < 16; j++) {
    const bool in = j < gn;
    b.ss[j] = in ? _cvtsh_ss(st[j].scale_scale) : 0.0f, b.sz[j] = in ? _cvtsh_ss(st[j].scale_zero) : 0.0f;
    b.zs[j] = in ? _cvtsh_ss(st[j].zero_scale) : 0.0f, b.zz[j] = in ? _cvtsh_ss(st[j].zero_zero) : 0.0f;
  }
}

// One row's weights of gn ≤ 16 consecutive groups (codes and stats point at the
// first; `last`: the final group is the tensor's last): group j to out + j·ostride.
template <int WBITS>
inline void dequant_row(const uint8_t* codes, const uint8_t* stats, bool fp16_stats, const S2Block& b, int64_t gn,
                        bool last, float* out, int64_t ostride) {
  alignas(64) float s[16], z[16];
  const float *sp = b.ss, *zp = b.zs;  // plain fp16 statistics: scale_scale, zero_scale
  if (!fp16_stats) {
    const __m128i bytes = gn == 16 ? _mm_loadu_si128((const __m128i*)stats)
                                   : _mm_maskz_loadu_epi8((__mmask16)((1u << gn) - 1), stats);
    const __m512i bi = _mm512_cvtepu8_epi32(bytes);
    const __m512 sc = _mm512_cvtepi32_ps(_mm512_and_si512(bi, _mm512_set1_epi32(15)));
    const __m512 zc = _mm512_cvtepi32_ps(_mm512_srli_epi32(bi, 4));
    _mm512_store_ps(s, _mm512_mul_ps(_mm512_load_ps(b.ss), _mm512_sub_ps(sc, _mm512_load_ps(b.sz))));
    _mm512_store_ps(z, _mm512_mul_ps(_mm512_load_ps(b.zs), _mm512_sub_ps(zc, _mm512_load_ps(b.zz))));
    sp = s, zp = z;
  }
  for (int64_t j = 0; j < gn; j++)
    dequant16<WBITS>(codes + j * (WBITS * 2), last && j == gn - 1, sp[j], zp[j], out + j * ostride);
}

// ---- forward ----------------------------------------------------------------

constexpr int kMR = 12;

// acc[i][0 .. 16·NV) += Σ_c panel[i][c] · xt[c][0 .. 16·NV), i < kMR.
template <int NV>
inline void gemm_tile(const float* panel, int64_t ldp, const float* xt, int64_t ldx, int64_t kn, float* acc,
                      int64_t lda) {
  __m512 a[kMR][NV];
#pragma GCC unroll 12
  for (int i = 0; i < kMR; i++)
    for (int v = 0; v < NV; v++) a[i][v] = _mm512_loadu_ps(acc + i * lda + v * 16);
  for (int64_t c = 0; c < kn; c++, xt += ldx) {
    __m512 x[NV];
    for (int v = 0; v < NV; v++) x[v] = _mm512_loadu_ps(xt + v * 16);
#pragma GCC unroll 12
    for (int i = 0; i < kMR; i++) {
      const __m512 b = _mm512_set1_ps(panel[i * ldp + c]);
      for (int v = 0; v < NV; v++) a[i][v] = _mm512_fmadd_ps(b, x[v], a[i][v]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < kMR; i++)
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(acc + i * lda + v * 16, a[i][v]);
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
  // Row block (4 tiles of 12 rows), stored columns per chunk (the panel is 48 KiB, the
  // chunk of xt kKC·ld floats; both stay in L2), tokens per pass (accumulators 48 KiB).
  constexpr int64_t kRB = 48, kKC = 256, kTP = 256;
  thread_local AlignedFloats panel_buf, acc_buf;
  float* panel = panel_buf.get((size_t)(kRB * kKC));
  float* acc = acc_buf.get((size_t)(kRB * kTP));
  int32_t ocur[kRB];  // per row of the block: its next outlier (sorted case)
  S2Block s2;
  for (int64_t rb = job.r0; rb < job.r1; rb += kRB) {
    const int64_t rbn = std::min(kRB, job.r1 - rb), rbp = (rbn + kMR - 1) / kMR * kMR;
    for (int64_t tp = 0; tp < ld; tp += kTP) {
      const int64_t tpn = std::min(kTP, ld - tp);  // a multiple of 16
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
          for (; t + 32 <= tpn; t += 32) gemm_tile<2>(panel + i * kKC, kKC, xt + t, ld, kcn, acc + i * kTP + t, kTP);
          if (t < tpn) gemm_tile<1>(panel + i * kKC, kKC, xt + t, ld, kcn, acc + i * kTP + t, kTP);
        }
      }
      const int64_t tn = std::min(tpn, T - tp);
      for (int64_t t = 0; t < tn; t++)
        for (int64_t i = 0; i < rbn; i++) y[(tp + t) * R + rb + i] = acc[i * kTP + t];
    }
  }
}

// ---- transposed ---------------------------------------------------------------

// acc[i][0..32) += Σ_r dyt[r][i] · (p0[r][0..16), p1[r][0..16)), i < TB.
template <int TB>
inline void cols_tile(const float* p0, const float* p1, int64_t rn, const float* d, int64_t ld, float* acc) {
  __m512 a0[TB], a1[TB];
#pragma GCC unroll 12
  for (int i = 0; i < TB; i++) {
    a0[i] = _mm512_load_ps(acc + i * 32);
    a1[i] = _mm512_load_ps(acc + i * 32 + 16);
  }
  for (int64_t r = 0; r < rn; r++, d += ld) {
    const __m512 w0 = _mm512_load_ps(p0 + r * 16), w1 = _mm512_load_ps(p1 + r * 16);
#pragma GCC unroll 12
    for (int i = 0; i < TB; i++) {
      const __m512 b = _mm512_set1_ps(d[i]);
      a0[i] = _mm512_fmadd_ps(b, w0, a0[i]);
      a1[i] = _mm512_fmadd_ps(b, w1, a1[i]);
    }
  }
#pragma GCC unroll 12
  for (int i = 0; i < TB; i++) {
    _mm512_store_ps(acc + i * 32, a0[i]);
    _mm512_store_ps(acc + i * 32 + 16, a1[i]);
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
  // per pass (accumulators kGB/2 · kTP · 32 floats = 96 KiB). Groups are taken two at a
  // time (32 columns = 2 zmm); an odd block's last group has a zero partner.
  constexpr int64_t kKC = 256, kTP = 192, kGB = 8;
  thread_local AlignedFloats panel_buf, acc_buf;
  float* panel = panel_buf.get((size_t)(kGB * kKC * 16));
  float* acc = acc_buf.get((size_t)(kGB / 2 * kTP * 32));
  int32_t cur[kGB];
  S2Block s2;
  for (int64_t gb0 = job.g0; gb0 < job.g1; gb0 += kGB) {
    const int64_t gbn = std::min(kGB, job.g1 - gb0), npairs = (gbn + 1) / 2;
    for (int64_t tp = 0; tp < T; tp += kTP) {
      const int64_t tpn = std::min(kTP, T - tp);
      std::fill(acc, acc + npairs * kTP * 32, 0.0f);
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
        if (gbn % 2) std::fill(panel + gbn * kKC * 16, panel + gbn * kKC * 16 + rcn * 16, 0.0f);
        for (int64_t gi = 0; gi < gbn; gi++) {
          const int64_t g = gb0 + gi;
          for (int32_t& k = cur[gi]; k < job.optr[g + 1] && job.orow[k] < rc + rcn; k++)
            panel[(gi * kKC + job.orow[k] - rc) * 16 + job.ocol[k]] = _cvtsh_ss(job.oval[k]);
        }
        const float* d = job.dyt + rc * T + tp;
        for (int64_t pi = 0; pi < npairs; pi++) {
          const float *p0 = panel + 2 * pi * kKC * 16, *p1 = p0 + kKC * 16;
          float* a = acc + pi * kTP * 32;
          int64_t t = 0;
          for (; t + 12 <= tpn; t += 12) cols_tile<12>(p0, p1, rcn, d + t, T, a + t * 32);
          for (; t + 4 <= tpn; t += 4) cols_tile<4>(p0, p1, rcn, d + t, T, a + t * 32);
          for (; t < tpn; t++) cols_tile<1>(p0, p1, rcn, d + t, T, a + t * 32);
        }
      }
      // Undo the permutation: stored column c is original column perm[c]. Token by
      // token, so that the scattered writes stay within one row of dX at a time.
      for (int64_t t = 0; t < tpn; t++) {
        float* out = dx + (tp + t) * C;
        for (int64_t gi = 0; gi < gbn; gi++) {
          const int64_t c0 = (gb0 + gi) * 16, cn = std::min<int64_t>(16, C - c0);
          const float* a = acc + ((gi / 2) * kTP + t) * 32 + (gi % 2) * 16;
          for (int64_t j = 0; j < cn; j++) out[perm[c0 + j]] = a[j];
        }
      }
    }
  }
}

}  // namespace

void spqr_gemm_avx512(const SpqrGemmJob& job) {
  if (job.w->p.wbits == 3) gemm_kernel<3>(job);
  else gemm_kernel<4>(job);
}

void spqr_cols_avx512(const SpqrColsJob& job) {
  const SpqrLayer& w = *job.w;
  if (w.p.groupsize != 16) return spqr_cols_scalar(job);
  if (w.p.wbits == 3) return cols_kernel<3>(job);
  if (w.p.wbits == 4) return cols_kernel<4>(job);
  spqr_cols_scalar(job);
}

}  // namespace engine::cpu::detail
