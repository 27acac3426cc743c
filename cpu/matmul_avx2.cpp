// AVX2 + FMA + F16C kernels: the portable fast path. Called only when
// cpu_features().avx2. Same structure as matmul_avx512.cpp at half the width:
// matrix-vector kernels stream each row once (≤ 4 tokens per pass); the GEMM
// converts a panel of kMR = 6 rows to f32 and keeps a 6 rows × 16 tokens tile in
// 12 ymm accumulators (2 token vectors + 1 broadcast: 15 of 16 registers). F16
// and BF16 weights take a dot-product GEMM instead (gemm_dot, below): rows as
// stored against the tokens rounded to f16.
#include <immintrin.h>

#include <cmath>
#include <cstring>
#include <type_traits>

#include "cpu/matmul_internal.h"

namespace engine::cpu::detail {
namespace {

constexpr int kMR = 6;

// Software prefetch of streamed weights, 4 KiB ahead, into L2 (T1). The hardware
// prefetchers alone reach ~75% of a plain streaming read in these loops (they stop
// at 4 KiB page boundaries, and a loop that also converts and FMAs has fewer loads
// in flight than a pure read); with the prefetch, single-thread F16 matrix-vector
// runs at ~90-95% of the read bandwidth. T1 measured slightly better than T0 and
// much better than NTA; 2-16 KiB distances are all within noise (bench/NOTES.md).
constexpr int kPrefetch = 4096;

inline void prefetch(const void* p) { _mm_prefetch((const char*)p, _MM_HINT_T1); }

// GEMM K chunk, in kKC blocks: at most 2048 columns, and at most kChunkBytes of X^T
// (the slice every panel sweeps). AVX2 hosts have small L2s (Zen 2/3: 512 KiB per
// core): 2048 columns of 64 tokens are 512 KiB, the whole L2, so the slice would be
// re-read from L3 for every 6-row panel; 128 KiB leaves room for the panel and the
// weights streamed in by the prefetches.
constexpr int64_t kChunkBlocks = 8;
constexpr int64_t kChunkBytes = 128 << 10;
inline int64_t chunk_blocks(int64_t tpad) {
  const int64_t b = kChunkBytes / (kKC * tpad * (int64_t)sizeof(float));
  return b < 1 ? 1 : b > kChunkBlocks ? kChunkBlocks : b;
}

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

template <DType T>
inline __m256 load8(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return _mm256_loadu_ps((const float*)p + i);
  } else if constexpr (T == DType::F16) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)((const uint16_t*)p + i)));
  } else {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)((const uint16_t*)p + i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
}
template <DType T>
inline float load1(const void* p, int64_t i) {
  if constexpr (T == DType::F32) {
    return ((const float*)p)[i];
  } else if constexpr (T == DType::F16) {
    return half_to_float(((const uint16_t*)p)[i]);
  } else {
    const uint32_t u = (uint32_t)((const uint16_t*)p)[i] << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// ---------------------------------------------------------------- matrix-vector, float weights
template <DType T, int NT>
void gemv_rows(const WeightView& w, int64_t r0, int64_t r1, const float* x, float* y, bool add) {
  const int64_t K = w.cols, N = w.rows;
  for (int64_t r = r0; r < r1; r++) {
    const char* row = row_ptr(w, r);
    __m256 acc[NT][2];
    for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= K; i += 16) {
      // 16 weights are 64 bytes (F32) or 32 bytes (F16/BF16): prefetch a line every 64 bytes.
      const int64_t esz = T == DType::F32 ? 4 : 2;
      if (T == DType::F32 || (i & 31) == 0) prefetch(row + i * esz + kPrefetch);
      const __m256 w0 = load8<T>(row, i), w1 = load8<T>(row, i + 8);
      for (int t = 0; t < NT; t++) {
        acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * K + i), acc[t][0]);
        acc[t][1] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + t * K + i + 8), acc[t][1]);
      }
    }
    for (; i + 8 <= K; i += 8) {
      const __m256 w0 = load8<T>(row, i);
      for (int t = 0; t < NT; t++) acc[t][0] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * K + i), acc[t][0]);
    }
    float tail[NT] = {};
    for (; i < K; i++) {
      const float wi = load1<T>(row, i);
      for (int t = 0; t < NT; t++) tail[t] += wi * x[t * K + i];
    }
    for (int t = 0; t < NT; t++) {
      const float v = hsum(_mm256_add_ps(acc[t][0], acc[t][1])) + tail[t];
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
// |w| · (sign(w)·x) keeps vpmaddubsw's unsigned×signed form exact (pair sums ≤ 32512).
template <int NT>
void gemv_q8_rows(const WeightView& w, int64_t r0, int64_t r1, const int8_t* xq, const float* xd, float* y,
                  bool add) {
  const int64_t K = w.cols, N = w.rows, nb = K / kQ8Block;
  const __m256i ones = _mm256_set1_epi16(1);
  for (int64_t r = r0; r < r1; r++) {
    const BlockQ8_0* b = (const BlockQ8_0*)row_ptr(w, r);
    __m256 acc[NT];
    for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
    for (int64_t j = 0; j < nb; j++) {
      prefetch((const char*)(b + j) + kPrefetch);  // 34-byte blocks: ~2 prefetches per line
      const __m256i wq = _mm256_loadu_si256((const __m256i*)b[j].qs);
      const __m256i aw = _mm256_abs_epi8(wq);
      const float dw = half_to_float(b[j].d);
      for (int t = 0; t < NT; t++) {
        const __m256i sx = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i*)(xq + t * K + j * kQ8Block)), wq);
        const __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones);
        acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(dw * xd[t * nb + j]), acc[t]);
      }
    }
    for (int t = 0; t < NT; t++) {
      const float v = hsum(acc[t]);
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
      const __m256 d = _mm256_set1_ps(half_to_float(b[j].d));
      for (int v = 0; v < 4; v++) {
        const __m128i q8 = _mm_loadl_epi64((const __m128i*)(b[j].qs + 8 * v));
        _mm256_storeu_ps(dst + j * kQ8Block + 8 * v, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8))));
      }
    }
    return;
  }
  auto convert = [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(dst + i, load8<T>(row, c0 + i));
    for (; i < n; i++) dst[i] = load1<T>(row, c0 + i);
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

// C[i][t] = Σ_k panel(i, k) · xt[k][t] for kMR rows × NV·8 tokens; out is [kMR][NV·8].
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
  __m256 acc[kMR][NV];
  for (int i = 0; i < kMR; i++)
    for (int v = 0; v < NV; v++) acc[i][v] = _mm256_setzero_ps();
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
      __m256 xv[NV];
      for (int v = 0; v < NV; v++) xv[v] = _mm256_loadu_ps(xp + k * tpad + 8 * v);
#pragma GCC unroll 6
      for (int i = 0; i < kMR; i++) {
        const __m256 b = _mm256_broadcast_ss(p + i * kKC + k);
        for (int v = 0; v < NV; v++) acc[i][v] = _mm256_fmadd_ps(b, xv[v], acc[i][v]);
      }
    }
  }
  for (int i = 0; i < kMR; i++)
    for (int v = 0; v < NV; v++) _mm256_storeu_ps(out + i * NV * 8 + 8 * v, acc[i][v]);
}

void gemm(const WeightView& w, int64_t r0, int64_t r1, const float* xt, int64_t tpad, int64_t n_tok, float* y,
          bool add, float* panel) {
  const int64_t N = w.rows, nkb = (w.cols + kKC - 1) / kKC;
  alignas(64) float out[kMR * 16];
  // K is walked in chunks (chunk_blocks) so that the slice of X^T the micro-kernel
  // sweeps for every panel (chunk × tpad floats) stays in L2 next to the panel: with
  // K = 5632 and 64 tokens the whole X^T is 1.4 MiB, which with the panel and the
  // streamed weights spilled even a 2 MiB L2 (GEMM ran at half speed there).
  const int64_t chunk = chunk_blocks(tpad);
  for (int64_t kb0 = 0; kb0 < nkb; kb0 += chunk) {
    const int64_t nkc = nkb - kb0 < chunk ? nkb - kb0 : chunk;
    const bool acc = add || kb0 > 0;
    for (int64_t r = r0; r < r1; r += kMR) {
      const int64_t nr = r1 - r < kMR ? r1 - r : kMR;
      pack_panel(w, r, nr, kb0, nkc, panel);
      NextPanel next;
      next.bytes_per_kb = bytes_of(w.type, kKC);
      const int64_t col_bytes = kb0 * next.bytes_per_kb;
      for (int64_t i = 0; i < kMR && r + kMR + i < r1; i++) next.rows[next.n++] = row_ptr(w, r + kMR + i) + col_bytes;
      for (int64_t t0 = 0; t0 < n_tok; t0 += 16) {
        const int64_t nt = n_tok - t0 < 16 ? n_tok - t0 : 16;
        const int ld = nt > 8 ? 16 : 8;
        const float* xp = xt + kb0 * kKC * tpad + t0;
        if (nt > 8) {
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

// ---------------------------------------------------------------- GEMM, dot-product form (F16, BF16)
// Y[t][r] as a dot product along K, straight from the stored weight rows and from
// X rounded to f16 once per product (xh [n_tok][K], as llama.cpp rounds activations
// for its F16 products): no panel is converted and no X^T is built. A tile of 4
// weight rows × 3 tokens keeps 12 accumulators; per 8 columns the 3 token vectors
// are converted once and held (3 registers) and each row's 8 weights are converted
// once and used by all 3 tokens (1 register): 16 of 16 ymm. The 6×16 panel GEMM
// above spent its time streaming the f32 panel and X^T out of L2; this form reads
// half the weight bytes, and f16 tokens halve what it re-reads for every 4 rows
// (64 tokens × 2048 columns: 256 KiB, which stays in a 512 KiB L2 where f32 did
// not). Sums: 8 lane-wise partial sums per output, then a horizontal add.
constexpr int kDotRows = 4;
// Tokens per pass over a block of rows: their rows of xh are re-read for every
// 4-row tile, from L2; the weights are re-read from memory once per 64 tokens
// (2 bytes per 256 FLOPs).
constexpr int64_t kDotTokens = 64;

inline __m256 load8_f16(const uint16_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }

// PF: also prefetch (into L2) the next block's rows, over the same columns. The
// first tile of a block does it, so the rows arrive a whole block ahead: each row
// is its own stream (4 KiB for 2048 F16 columns: a page, where the hardware
// prefetchers stop), and without it the first tile of every block waited on memory.
template <DType T, int RM, int RN, bool PF = false>
inline void dot_tile(const WeightView& w, int64_t r, const uint16_t* xh, int64_t t, float* y, bool add,
                     int64_t next_rows = 0) {
  const int64_t K = w.cols, N = w.rows;
  const char* a[RM];
  const uint16_t* b[RN];
  for (int i = 0; i < RM; i++) a[i] = row_ptr(w, r + i);
  for (int j = 0; j < RN; j++) b[j] = xh + (t + j) * K;
  __m256 acc[RM][RN];
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) acc[i][j] = _mm256_setzero_ps();
  int64_t k = 0;
  // Two 8-column steps per iteration: a 64-token F16 prefill ran ~4% faster
  // (medians of 20 alternating runs in one process; 4 steps gave the same).
#pragma GCC unroll 2
  for (; k + 8 <= K; k += 8) {
    if constexpr (PF) {
      if ((k & 31) == 0)  // 32 columns are one 64-byte line of each F16/BF16 row
        for (int64_t i = 0; i < next_rows; i++) prefetch(a[i] + (size_t)RM * w.row_bytes + 2 * k);
    }
    __m256 bv[RN];
    for (int j = 0; j < RN; j++) bv[j] = load8_f16(b[j] + k);
    for (int i = 0; i < RM; i++) {
      const __m256 av = load8<T>(a[i], k);
      for (int j = 0; j < RN; j++) acc[i][j] = _mm256_fmadd_ps(av, bv[j], acc[i][j]);
    }
  }
  for (int i = 0; i < RM; i++)
    for (int j = 0; j < RN; j++) {
      float s = hsum(acc[i][j]);
      for (int64_t kk = k; kk < K; kk++) s += load1<T>(a[i], kk) * half_to_float(b[j][kk]);
      float& out = y[(t + j) * N + r + i];
      out = add ? out + s : s;
    }
}

// Rows [r, r + RM) for tokens [t0, t1): tiles of 3 tokens, a remainder of one
// token taken as 2 + 2 (a 1-token tile converts each weight vector for one FMA).
// next_rows: rows of the next block to prefetch (0 at the end of the range).
template <DType T, int RM>
void dot_rows(const WeightView& w, int64_t r, const uint16_t* xh, int64_t t0, int64_t t1, float* y, bool add,
              int64_t next_rows) {
  int64_t n3 = (t1 - t0) / 3, rem = (t1 - t0) % 3;
  if (rem == 1 && n3 > 0) n3--, rem = 4;
  int64_t t = t0;
  if (n3 > 0 && next_rows > 0) {
    dot_tile<T, RM, 3, true>(w, r, xh, t, y, add, next_rows);
    n3--, t += 3;
  }
  for (int64_t i = 0; i < n3; i++, t += 3) dot_tile<T, RM, 3>(w, r, xh, t, y, add);
  if (rem == 4) {
    dot_tile<T, RM, 2>(w, r, xh, t, y, add);
    dot_tile<T, RM, 2>(w, r, xh, t + 2, y, add);
  } else if (rem == 2) {
    dot_tile<T, RM, 2>(w, r, xh, t, y, add);
  } else if (rem == 1) {
    dot_tile<T, RM, 1>(w, r, xh, t, y, add);
  }
}

template <DType T>
void gemm_dot_type(const WeightView& w, int64_t r0, int64_t r1, const uint16_t* xh, int64_t n_tok, float* y,
                   bool add) {
  for (int64_t t0 = 0; t0 < n_tok; t0 += kDotTokens) {
    const int64_t t1 = n_tok - t0 < kDotTokens ? n_tok : t0 + kDotTokens;
    int64_t r = r0;
    for (; r + kDotRows <= r1; r += kDotRows) {
      const int64_t next = r1 - (r + kDotRows) < kDotRows ? r1 - (r + kDotRows) : kDotRows;
      dot_rows<T, 4>(w, r, xh, t0, t1, y, add, next);
    }
    switch (r1 - r) {
      case 3: dot_rows<T, 3>(w, r, xh, t0, t1, y, add, 0); break;
      case 2: dot_rows<T, 2>(w, r, xh, t0, t1, y, add, 0); break;
      case 1: dot_rows<T, 1>(w, r, xh, t0, t1, y, add, 0); break;
      default: break;
    }
  }
}

void gemm_dot(const WeightView& w, int64_t r0, int64_t r1, const uint16_t* xh, int64_t n_tok, float* y, bool add) {
  if (w.type == DType::F16) gemm_dot_type<DType::F16>(w, r0, r1, xh, n_tok, y, add);
  else if (w.type == DType::BF16) gemm_dot_type<DType::BF16>(w, r0, r1, xh, n_tok, y, add);
}

// Round to nearest even, as llama.cpp's f32 → f16 row conversion; false if some
// finite |x| is beyond f16's range (its f16 would be ±inf). NaN stays NaN.
bool to_f16(const float* x, int64_t n, uint16_t* h) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 amax = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    amax = _mm256_max_ps(_mm256_and_ps(v, abs_mask), amax);  // a NaN lane keeps amax
    _mm_storeu_si128((__m128i*)(h + i), _mm256_cvtps_ph(v, 0));
  }
  float m = 0;
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, amax);
  for (float l : lanes) m = m > l ? m : l;
  bool ok = m <= 65504.0f;
  for (; i < n; i++) {
    if (std::fabs(x[i]) > 65504.0f) ok = false;
    h[i] = _cvtss_sh(x[i], 0);
  }
  return ok;
}

// ---------------------------------------------------------------- transposed product's inner loop
void axpy_rows(const float* a, const float* rows, int64_t m, int64_t ld, int64_t n, float* y) {
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) {
    __m256 acc[4];
    for (int v = 0; v < 4; v++) acc[v] = _mm256_loadu_ps(y + j + 8 * v);
    for (int64_t i = 0; i < m; i++) {
      const __m256 ai = _mm256_set1_ps(a[i]);
      for (int v = 0; v < 4; v++) acc[v] = _mm256_fmadd_ps(ai, _mm256_loadu_ps(rows + i * ld + j + 8 * v), acc[v]);
    }
    for (int v = 0; v < 4; v++) _mm256_storeu_ps(y + j + 8 * v, acc[v]);
  }
  for (; j + 8 <= n; j += 8) {
    __m256 acc = _mm256_loadu_ps(y + j);
    for (int64_t i = 0; i < m; i++) acc = _mm256_fmadd_ps(_mm256_set1_ps(a[i]), _mm256_loadu_ps(rows + i * ld + j), acc);
    _mm256_storeu_ps(y + j, acc);
  }
  for (; j < n; j++) {
    float acc = y[j];
    for (int64_t i = 0; i < m; i++) acc += a[i] * rows[i * ld + j];
    y[j] = acc;
  }
}

// ---------------------------------------------------------------- activations to Q8 blocks
void quantize_q8(const float* x, int64_t n, int8_t* q, float* d) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  for (int64_t b = 0; b < n / kQ8Block; b++) {
    const float* xb = x + b * kQ8Block;
    __m256 v[4], m = _mm256_setzero_ps();
    for (int u = 0; u < 4; u++) {
      v[u] = _mm256_loadu_ps(xb + 8 * u);
      m = _mm256_max_ps(m, _mm256_and_ps(v[u], abs_mask));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const __m256 id = _mm256_set1_ps(amax > 0 ? 127.0f / amax : 0.0f);
    d[b] = amax / 127.0f;
    // Round to nearest even, then pack 32 → 16 → 8 bits with saturation (|x·id| ≤ 127).
    __m256i i[4];
    for (int u = 0; u < 4; u++) i[u] = _mm256_cvtps_epi32(_mm256_mul_ps(v[u], id));
    const __m256i p16a = _mm256_packs_epi32(i[0], i[1]), p16b = _mm256_packs_epi32(i[2], i[3]);
    __m256i p8 = _mm256_packs_epi16(p16a, p16b);
    // The in-lane packs leave the 4-byte groups in order 0,2,4,6,1,3,5,7 (as dwords).
    p8 = _mm256_permutevar8x32_epi32(p8, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i*)(q + b * kQ8Block), p8);
  }
}

}  // namespace

const Kernels kAvx2Kernels = {"avx2", gemv, gemm, kMR, 8, gemm_dot, to_f16, kDotRows, row_to_f32, axpy_rows, quantize_q8};

}  // namespace engine::cpu::detail
