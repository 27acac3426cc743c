// AVX-512 kernels (F/BW/VL/DQ + F16C). Called only when cpu_features().avx512.
//
// Matrix-vector (decode): each weight row is streamed once, converted to f32 in
// registers (vcvtph2ps for F16, a 16-bit shift for BF16) and FMA'd against up to
// four tokens at a time; the loop is bound by memory bandwidth, not arithmetic.
// Q8_0 rows are dotted with int8-quantized activations (vpmaddubsw + vpmaddwd on
// |w| and sign(w)·x, exact in int32) and scaled per 32-block.
//
// GEMM (prefill): a panel of kMR = 14 weight rows is converted to f32 once into a
// buffer laid out [K/kKC][kMR][kKC]; the micro-kernel keeps a 14 rows × 32 tokens
// tile of Y in 28 zmm accumulators, and per k loads two vectors of 32 tokens of
// X^T and broadcasts 14 weights (memory-operand broadcasts). Tokens are the
// vector lanes, so neither the weights nor Y need an in-register transpose; only
// the finished tile is written out transposed (448 scalar stores per 57k FMAs).
// GCC 12's AVX-512 headers implement _mm256_undefined_*() as a self-initialised
// variable, which -Wall flags inside intrinsics such as _mm512_reduce_add_ps
// (GCC bug 105593, fixed in 12.3/13). The warning is about the header, not us.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>

#include <cstring>
#include <type_traits>

#include "cpu/matmul_internal.h"

namespace engine::cpu::detail {
namespace {

constexpr int kMR = 14;

// Software prefetch of streamed weights, 4 KiB ahead, into L2 (T1). The hardware
// prefetchers alone reach ~75% of a plain streaming read in these loops (they stop
// at 4 KiB page boundaries, and a loop that also converts and FMAs has fewer loads
// in flight than a pure read); with the prefetch, single-thread F16 matrix-vector
// runs at ~90-95% of the read bandwidth. T1 measured slightly better than T0 and
// much better than NTA; 2-16 KiB distances are all within noise (bench/NOTES.md).
constexpr int kPrefetch = 4096;

inline void prefetch(const void* p) { _mm_prefetch((const char*)p, _MM_HINT_T1); }

// GEMM K chunk, in kKC blocks (2048 columns).
constexpr int64_t kChunkBlocks = 8;

// Bytes of n weights (n a multiple of the block size). Local on purpose: an inline
// function from a shared header compiled here could be the copy the linker keeps.
inline int64_t bytes_of(DType t, int64_t n) {
  return t == DType::F32 ? 4 * n
         : t == DType::Q8_0 ? n / kQ8Block * (int64_t)sizeof(BlockQ8_0)
         : t == DType::Q6_K ? n / kQ6KBlock * (int64_t)sizeof(BlockQ6_K)
                            : 2 * n;
}

inline const char* row_ptr(const WeightView& w, int64_t r) { return (const char*)w.data + (size_t)r * w.row_bytes; }

inline float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// 16 weights of row `p` (element index i) as f32; `m` masks a partial load.
template <DType T>
inline __m512 load16(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm512_loadu_ps((const float*)p + i);
  } else if constexpr (T == DType::F16) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)((const uint16_t*)p + i)));
  } else {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i*)((const uint16_t*)p + i)));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
}
template <DType T>
inline __m512 load16_mask(const void* p, int64_t i, __mmask16 m) {
  if constexpr (T == DType::F32) {
    return _mm512_maskz_loadu_ps(m, (const float*)p + i);
  } else if constexpr (T == DType::F16) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t*)p + i));
  } else {
    const __m512i v = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t*)p + i));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
  }
}

// ---------------------------------------------------------------- matrix-vector, float weights
// y[t][r] for rows [r0, r1) and NT tokens starting at x, y (NT ≤ 4).
template <DType T, int NT>
void gemv_rows(const WeightView& w, int64_t r0, int64_t r1, const float* x, float* y, bool add) {
  const int64_t K = w.cols, N = w.rows;
  for (int64_t r = r0; r < r1; r++) {
    const char* row = row_ptr(w, r);
    // 64 weights per step, 4 independent accumulators per token (16 zmm for NT = 4).
    __m512 acc[NT][4];
    for (int t = 0; t < NT; t++)
      for (int u = 0; u < 4; u++) acc[t][u] = _mm512_setzero_ps();
    constexpr int64_t esz = T == DType::F32 ? 4 : 2;
    int64_t i = 0;
    for (; i + 64 <= K; i += 64) {
      // 64 weights are 256 bytes (F32) or 128 bytes (F16/BF16): one prefetch per cache line.
      const char* pw = row + i * esz + kPrefetch;
      for (int64_t l = 0; l < 64 * esz; l += 64) prefetch(pw + l);
      __m512 wv[4];
      for (int u = 0; u < 4; u++) wv[u] = load16<T>(row, i + 16 * u);
      for (int t = 0; t < NT; t++)
        for (int u = 0; u < 4; u++)
          acc[t][u] = _mm512_fmadd_ps(wv[u], _mm512_loadu_ps(x + t * K + i + 16 * u), acc[t][u]);
    }
    for (; i < K; i += 16) {
      const __mmask16 m = K - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (K - i)) - 1);
      const __m512 w0 = load16_mask<T>(row, i, m);
      for (int t = 0; t < NT; t++) acc[t][0] = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(m, x + t * K + i), acc[t][0]);
    }
    for (int t = 0; t < NT; t++) {
      const __m512 a = _mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]), _mm512_add_ps(acc[t][2], acc[t][3]));
      const float v = _mm512_reduce_add_ps(a);
      y[t * N + r] = add ? y[t * N + r] + v : v;
    }
  }
}

template <DType T>
void gemv_float(const WeightView& w, int64_t r0, int64_t r1, const float* x, int64_t n_tok, float* y, bool add) {
  const int64_t K = w.cols, N = w.rows;
  for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
    const float* xt = x + t0 * K;
    float* yt = y + t0 * N;
    switch (n_tok - t0 >= 4 ? 4 : n_tok - t0) {
      case 1: gemv_rows<T, 1>(w, r0, r1, xt, yt, add); break;
      case 2: gemv_rows<T, 2>(w, r0, r1, xt, yt, add); break;
      case 3: gemv_rows<T, 3>(w, r0, r1, xt, yt, add); break;
      default: gemv_rows<T, 4>(w, r0, r1, xt, yt, add); break;
    }
  }
}

// ---------------------------------------------------------------- matrix-vector, Q8_0 weights
// Σ over 2 blocks of int8 products as 16 int32 lanes (8 per block): |w| · (sign(w)·x)
// keeps vpmaddubsw's unsigned×signed form exact (|w| ≤ 128, |x| ≤ 127: pair sums ≤ 32512).
inline __m512i dot_2blocks(__m512i aw, __mmask64 wneg, __m512i xq) {
  const __m512i sx = _mm512_mask_sub_epi8(xq, wneg, _mm512_setzero_si512(), xq);
  return _mm512_madd_epi16(_mm512_maddubs_epi16(aw, sx), _mm512_set1_epi16(1));
}

// The 64 int8 codes of blocks b[0] and b[1] (34 bytes apart) in one register.
inline __m512i load_2blocks(const BlockQ8_0* b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i*)b[0].qs)),
                            _mm256_loadu_si256((const __m256i*)b[1].qs), 1);
}

// vpermps indices spreading scale lanes (0, 1) and (2, 3) over 8 lanes each. Plain
// arrays, not __m512i globals: those would need a static initializer that executes
// AVX-512 instructions at start-up, on every CPU.
alignas(64) constexpr int32_t kLanes01[16] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1};
alignas(64) constexpr int32_t kLanes23[16] = {2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3};

template <int NT>
void gemv_q8_rows(const WeightView& w, int64_t r0, int64_t r1, const int8_t* xq, const float* xd, float* y,
                  bool add) {
  const int64_t K = w.cols, N = w.rows, nb = K / kQ8Block;
  for (int64_t r = r0; r < r1; r++) {
    const BlockQ8_0* b = (const BlockQ8_0*)row_ptr(w, r);
    __m512 acc[NT];
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    const __m512i lanes01 = _mm512_load_si512(kLanes01), lanes23 = _mm512_load_si512(kLanes23);
    int64_t j = 0;
    // Four blocks (136 bytes) per step: the four fp16 scales are converted in one
    // vcvtph2ps, multiplied by the activations' scales in one xmm multiply, and
    // spread over the lanes of each block pair with vpermps (fewer instructions per
    // byte than per-block broadcasts: in-cache speed matters because two threads
    // must each keep up with their share of DRAM bandwidth).
    // Prefetched twice as far ahead as the float rows: measured +4% (bench/NOTES.md).
    for (; j + 4 <= nb; j += 4) {
      prefetch((const char*)(b + j) + 2 * kPrefetch);
      prefetch((const char*)(b + j) + 2 * kPrefetch + 64);
      prefetch((const char*)(b + j) + 2 * kPrefetch + 128);
      const __m512i wq0 = load_2blocks(b + j), wq1 = load_2blocks(b + j + 2);
      const __m512i aw0 = _mm512_abs_epi8(wq0), aw1 = _mm512_abs_epi8(wq1);
      const __mmask64 n0 = _mm512_movepi8_mask(wq0), n1 = _mm512_movepi8_mask(wq1);
      const __m128 dw = _mm_cvtph_ps(_mm_setr_epi16((short)b[j].d, (short)b[j + 1].d, (short)b[j + 2].d,
                                                    (short)b[j + 3].d, 0, 0, 0, 0));
      for (int t = 0; t < NT; t++) {
        const __m512 sc = _mm512_castps128_ps512(_mm_mul_ps(dw, _mm_loadu_ps(xd + t * nb + j)));
        const int8_t* xb = xq + t * K + j * kQ8Block;
        const __m512i s0 = dot_2blocks(aw0, n0, _mm512_loadu_si512(xb));
        const __m512i s1 = dot_2blocks(aw1, n1, _mm512_loadu_si512(xb + 64));
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_permutexvar_ps(lanes01, sc), acc[t]);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_permutexvar_ps(lanes23, sc), acc[t]);
      }
    }
    for (; j + 2 <= nb; j += 2) {
      const __m512i wq = load_2blocks(b + j);
      const __m512i aw = _mm512_abs_epi8(wq);
      const __mmask64 wneg = _mm512_movepi8_mask(wq);
      const __m512 dw = _mm512_insertf32x8(_mm512_set1_ps(half_to_float(b[j].d)),
                                           _mm256_set1_ps(half_to_float(b[j + 1].d)), 1);
      for (int t = 0; t < NT; t++) {
        const __m512i s = dot_2blocks(aw, wneg, _mm512_loadu_si512(xq + t * K + j * kQ8Block));
        const __m512 dx = _mm512_insertf32x8(_mm512_set1_ps(xd[t * nb + j]), _mm256_set1_ps(xd[t * nb + j + 1]), 1);
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), _mm512_mul_ps(dw, dx), acc[t]);
      }
    }
    float tail[NT] = {};
    if (j < nb) {  // odd block count: the last block alone, 256-bit
      const __m256i wq = _mm256_loadu_si256((const __m256i*)b[j].qs);
      const __m256i aw = _mm256_abs_epi8(wq);
      const float dw = half_to_float(b[j].d);
      for (int t = 0; t < NT; t++) {
        const __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i*)(xq + t * K + j * kQ8Block)), wq);
        const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), _mm256_set1_epi16(1));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        tail[t] = dw * xd[t * nb + j] * (float)_mm_cvtsi128_si32(s4);
      }
    }
    for (int t = 0; t < NT; t++) {
      const float v = _mm512_reduce_add_ps(acc[t]) + tail[t];
      y[t * N + r] = add ? y[t * N + r] + v : v;
    }
  }
}

void gemv_q8(const WeightView& w, int64_t r0, int64_t r1, const QuantAct& xq, int64_t n_tok, float* y, bool add) {
  const int64_t K = w.cols, N = w.rows, nb = K / kQ8Block;
  for (int64_t t0 = 0; t0 < n_tok; t0 += 4) {
    const int8_t* q = xq.q + t0 * K;
    const float* d = xq.d + t0 * nb;
    float* yt = y + t0 * N;
    switch (n_tok - t0 >= 4 ? 4 : n_tok - t0) {
      case 1: gemv_q8_rows<1>(w, r0, r1, q, d, yt, add); break;
      case 2: gemv_q8_rows<2>(w, r0, r1, q, d, yt, add); break;
      case 3: gemv_q8_rows<3>(w, r0, r1, q, d, yt, add); break;
      default: gemv_q8_rows<4>(w, r0, r1, q, d, yt, add); break;
    }
  }
}

void gemv(const WeightView& w, int64_t r0, int64_t r1, const float* x, const QuantAct* xq, int64_t n_tok, float* y,
          bool add) {
  switch (w.type) {
    case DType::F32: gemv_float<DType::F32>(w, r0, r1, x, n_tok, y, add); break;
    case DType::F16: gemv_float<DType::F16>(w, r0, r1, x, n_tok, y, add); break;
    case DType::BF16: gemv_float<DType::BF16>(w, r0, r1, x, n_tok, y, add); break;
    case DType::Q8_0: gemv_q8(w, r0, r1, *xq, n_tok, y, add); break;
    case DType::Q6_K: gemv_q6k_avx2(w, r0, r1, *xq, n_tok, y, add); break;
    default: break;
  }
}

// ---------------------------------------------------------------- conversion to f32
void row_to_f32(const WeightView& w, int64_t r, int64_t c0, int64_t n, float* dst) {
  const char* row = row_ptr(w, r);
  if (w.type == DType::Q6_K) {
    dequantize_row(DType::Q6_K, (const BlockQ6_K*)row + c0 / kQ6KBlock, dst, n);
    return;
  }
  if (w.type == DType::Q8_0) {
    const BlockQ8_0* b = (const BlockQ8_0*)row + c0 / kQ8Block;
    for (int64_t j = 0; j < n / kQ8Block; j++) {
      const __m512 d = _mm512_set1_ps(half_to_float(b[j].d));
      const __m256i q = _mm256_loadu_si256((const __m256i*)b[j].qs);
      const __m512 lo = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_castsi256_si128(q)));
      const __m512 hi = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm256_extracti128_si256(q, 1)));
      _mm512_storeu_ps(dst + j * kQ8Block, _mm512_mul_ps(d, lo));
      _mm512_storeu_ps(dst + j * kQ8Block + 16, _mm512_mul_ps(d, hi));
    }
    return;
  }
  auto convert = [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(dst + i, load16<T>(row, c0 + i));
    if (i < n) {
      const __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
      _mm512_mask_storeu_ps(dst + i, m, load16_mask<T>(row, c0 + i, m));
    }
  };
  switch (w.type) {
    case DType::F32: convert(std::integral_constant<DType, DType::F32>{}); break;
    case DType::F16: convert(std::integral_constant<DType, DType::F16>{}); break;
    case DType::BF16: convert(std::integral_constant<DType, DType::BF16>{}); break;
    default: break;
  }
}

// ---------------------------------------------------------------- GEMM
// Weight columns [kb0·kKC, (kb0 + nkb)·kKC) of rows [r0, r0 + nr) as f32:
// panel[(kb·kMR + i)·kKC + k] = W[r0 + i][(kb0 + kb)·kKC + k], zero past row nr or column K.
void pack_panel(const WeightView& w, int64_t r0, int64_t nr, int64_t kb0, int64_t nkb, float* panel) {
  const int64_t K = w.cols;
  for (int i = 0; i < kMR; i++) {
    for (int64_t kb = 0; kb < nkb; kb++) {
      float* dst = panel + (kb * kMR + i) * kKC;
      const int64_t k0 = (kb0 + kb) * kKC, kn = i < nr ? (K - k0 < kKC ? K - k0 : kKC) : 0;
      if (kn > 0) row_to_f32(w, r0 + i, k0, kn, dst);
      if (kn < kKC) std::memset(dst + kn, 0, sizeof(float) * (kKC - kn));
    }
  }
}

// C[i][t] = Σ_k panel(i, k) · xt[k][t] for kMR rows × NV·16 tokens; out is [kMR][NV·16].
// The weight rows of the panel computed next, to be prefetched while this one runs:
// packing reads the weights from DRAM once per prefill, and without this the
// conversion stalled on memory (it was ~20% of the GEMM's time in a 64-token prefill).
struct NextPanel {
  const char* rows[kMR];  // each at the chunk's first column
  int n = 0;              // rows to prefetch
  int64_t bytes_per_kb;   // bytes of kKC weights in a row
};

template <int NV>
void ukernel(const float* panel, int64_t nkb, const float* xt, int64_t tpad, float* out, const NextPanel* next) {
  __m512 acc[kMR][NV];
#pragma GCC unroll 14
  for (int i = 0; i < kMR; i++)
    for (int v = 0; v < NV; v++) acc[i][v] = _mm512_setzero_ps();
  for (int64_t kb = 0; kb < nkb; kb++) {
    if (next) {
      // A few hundred prefetches per kb step of ~3-4k cycles; they queue behind nothing
      // (the micro-kernel's own loads hit L1/L2).
      for (int i = 0; i < next->n; i++)
        for (int64_t l = 0; l < next->bytes_per_kb; l += 64) prefetch(next->rows[i] + kb * next->bytes_per_kb + l);
    }
    const float* p = panel + kb * kMR * kKC;
    const float* xp = xt + kb * kKC * tpad;
    for (int64_t k = 0; k < kKC; k++) {
      __m512 xv[NV];
      for (int v = 0; v < NV; v++) xv[v] = _mm512_loadu_ps(xp + k * tpad + 16 * v);
#pragma GCC unroll 14
      for (int i = 0; i < kMR; i++) {
        const __m512 b = _mm512_set1_ps(p[i * kKC + k]);
        for (int v = 0; v < NV; v++) acc[i][v] = _mm512_fmadd_ps(b, xv[v], acc[i][v]);
      }
    }
  }
#pragma GCC unroll 14
  for (int i = 0; i < kMR; i++)
    for (int v = 0; v < NV; v++) _mm512_storeu_ps(out + i * NV * 16 + 16 * v, acc[i][v]);
}

void gemm(const WeightView& w, int64_t r0, int64_t r1, const float* xt, int64_t tpad, int64_t n_tok, float* y,
          bool add, float* panel) {
  const int64_t N = w.rows, nkb = (w.cols + kKC - 1) / kKC;
  alignas(64) float out[kMR * 32];
  // K is walked in chunks of kChunkBlocks·kKC columns so that the slice of X^T the
  // micro-kernel sweeps for every panel (chunk × tpad floats) stays in L2 next to
  // the panel: with K = 5632 and 64 tokens the whole X^T is 1.4 MiB, which with the
  // panel and the streamed weights spilled the 2 MiB L2 (GEMM ran at half speed).
  for (int64_t kb0 = 0; kb0 < nkb; kb0 += kChunkBlocks) {
    const int64_t nkc = nkb - kb0 < kChunkBlocks ? nkb - kb0 : kChunkBlocks;
    const bool acc = add || kb0 > 0;
    for (int64_t r = r0; r < r1; r += kMR) {
      const int64_t nr = r1 - r < kMR ? r1 - r : kMR;
      pack_panel(w, r, nr, kb0, nkc, panel);
      NextPanel next;
      next.bytes_per_kb = bytes_of(w.type, kKC);
      const int64_t col_bytes = kb0 * next.bytes_per_kb;
      for (int64_t i = 0; i < kMR && r + kMR + i < r1; i++) next.rows[next.n++] = row_ptr(w, r + kMR + i) + col_bytes;
      for (int64_t t0 = 0; t0 < n_tok; t0 += 32) {
        const int64_t nt = n_tok - t0 < 32 ? n_tok - t0 : 32;
        const int ld = nt > 16 ? 32 : 16;
        const float* xp = xt + kb0 * kKC * tpad + t0;
        if (nt > 16) {
          ukernel<2>(panel, nkc, xp, tpad, out, t0 == 0 && next.n ? &next : nullptr);
        } else {
          ukernel<1>(panel, nkc, xp, tpad, out, t0 == 0 && next.n ? &next : nullptr);
        }
        for (int64_t t = 0; t < nt; t++) {
          float* yr = y + (t0 + t) * N + r;
          for (int64_t i = 0; i < nr; i++) yr[i] = acc ? yr[i] + out[i * ld + t] : out[i * ld + t];
        }
      }
    }
  }
}

// ---------------------------------------------------------------- transposed product's inner loop
void axpy_rows(const float* a, const float* rows, int64_t m, int64_t ld, int64_t n, float* y) {
  int64_t j = 0;
  for (; j + 64 <= n; j += 64) {
    __m512 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm512_loadu_ps(y + j + 16 * v);
    for (int64_t i = 0; i < m; i++) {
      const __m512 ai = _mm512_set1_ps(a[i]);
      for (int v = 0; v < 4; v++) acc[v] = _mm512_fmadd_ps(ai, _mm512_loadu_ps(rows + i * ld + j + 16 * v), acc[v]);
    }
    for (int v = 0; v < 4; v++) _mm512_storeu_ps(y + j + 16 * v, acc[v]);
  }
  for (; j < n; j += 16) {
    const __mmask16 msk = n - j >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - j)) - 1);
    __m512 acc = _mm512_maskz_loadu_ps(msk, y + j);
    for (int64_t i = 0; i < m; i++)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(a[i]), _mm512_maskz_loadu_ps(msk, rows + i * ld + j), acc);
    _mm512_mask_storeu_ps(y + j, msk, acc);
  }
}

// ---------------------------------------------------------------- activations to Q8 blocks
void quantize_q8(const float* x, int64_t n, int8_t* q, float* d) {
  const __m512 sign_off = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / kQ8Block; b++) {
    const __m512 x0 = _mm512_loadu_ps(x + b * kQ8Block), x1 = _mm512_loadu_ps(x + b * kQ8Block + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(x0, sign_off), _mm512_and_ps(x1, sign_off)));
    const __m512 id = _mm512_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    d[b] = amax / 127.0f;
    // Round to nearest even (the MXCSR default), then narrow with saturation; |x·id| ≤ 127 already.
    const __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(x0, id)), q1 = _mm512_cvtps_epi32(_mm512_mul_ps(x1, id));
    _mm_storeu_si128((__m128i*)(q + b * kQ8Block), _mm512_cvtsepi32_epi8(q0));
    _mm_storeu_si128((__m128i*)(q + b * kQ8Block + 16), _mm512_cvtsepi32_epi8(q1));
  }
}

}  // namespace

const Kernels kAvx512Kernels = {"avx512", gemv, gemm, kMR, 16, nullptr, nullptr, 1, row_to_f32, axpy_rows, quantize_q8};

}  // namespace engine::cpu::detail
