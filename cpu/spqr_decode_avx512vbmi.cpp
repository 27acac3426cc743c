// The 1-token SpQR product (decode) with int8 activations, AVX-512 VBMI + VNNI
// (groupsize 16, wbits 3 or 4, bilevel statistics). The layer's layout is used as
// stored: each row streams its codes (6 or 8 bytes per group) and its statistics
// bytes once, 16 groups per step, so the kernel is one sequential pass over the
// weights, as the dense matrix-vector kernels are.
//
// Per row and block of 16 column groups (256 weights):
//   - 2 loads of the codes; vpermt2b puts the bytes of codes 0-7 (then 8-15) of
//     groups 2k and 2k+1 side by side in qword k; vpmultishiftqb pulls out 3-bit (or
//     4-bit) fields, and 7 (15): four vectors whose dword lane g holds codes
//     4i..4i+3 of group g as bytes (i = 0..3);
//   - 4 vpdpbusd with the activations quantized to int8 per group (laid out the same
//     way, once per call): lane g = Σ_j code_gj · q_gj, an exact int32;
//   - the 16 first-level statistics bytes of the row decode in one vector; the
//     second-level statistics were decoded once per row group (times the group's
//     activation scale d_g and Σ_j q_gj):
//       acc += ss·d·(sc − sz) · (dot − zs·Σq·(zc − zz))   (float, 16 lanes = 16 groups)
//   - outliers of the row, 16 at a time (4 bytes each: column | f16 delta): gather
//     the exact activations at their columns, one FMA with the deltas (value −
//     dequantized code, rounded to f16);
//   - one horizontal sum per row.
// About 24 vector instructions per 256 weights (the row kernel: ~300).
// Compiled with -mavx512vbmi -mavx512vnni (CMakeLists.txt, by the file name); called only
// after spqr_decode_int8_active's cpuid check.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "cpu/spqr_matmul.h"

// GCC 12 reports the intrinsics' own _mm512_undefined_*() operands (self-initialised
// on purpose) as "may be used uninitialized" once they are inlined here.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

namespace engine::cpu::detail {

bool spqr_decode_avx512_supports(const SpqrLayer& w) {
  return w.p.groupsize == 16 && (w.p.wbits == 3 || w.p.wbits == 4) && w.p.stat_bits != 16 &&
         (int64_t)w.outlier_col_delta16.size() == w.n_outliers && w.outlier_delta16_finite;
}

void spqr_decode_prepare_avx512(const SpqrLayer& w, const float* x, SpqrDecodeActs& a) {
  const int64_t C = w.cols, G = w.n_groups, nb = (G + 15) / 16, P = nb * 256;
  a.resize(nb);
  float* xp = a.xp;
  // xp[c] = x[perm[c]], zero past cols (to whole blocks of 16 groups).
  for (int64_t c = 0; c < P; c += 16) {
    if (c + 16 <= C) {
      _mm512_storeu_ps(xp + c, _mm512_i32gather_ps(_mm512_loadu_si512(w.perm + c), x, 4));
    } else {
      const __mmask16 m = c < C ? (__mmask16)((1u << (C - c)) - 1) : 0;
      const __m512i idx = _mm512_maskz_loadu_epi32(m, w.perm + c);
      _mm512_storeu_ps(xp + c, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, x, 4));
    }
  }
  // Per group: d = max|x| / 127, q = round-to-nearest-even(x · 127 / max|x|) (the
  // MXCSR default; spqr_decode_round_activations does the same in scalar code).
  alignas(64) int8_t qb[256];
  for (int64_t b = 0; b < nb; b++) {
    for (int64_t j = 0; j < 16; j++) {
      const int64_t g = b * 16 + j;
      const __m512 v = _mm512_loadu_ps(xp + g * 16);
      const float amax = _mm512_reduce_max_ps(_mm512_abs_ps(v));
      const float id = amax > 0 ? 127.0f / amax : 0.0f;
      const __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(v, _mm512_set1_ps(id)));
      a.d[g] = amax / 127.0f;
      a.qsum[g] = (float)_mm512_reduce_add_epi32(q);
      (void)G;
      _mm_store_si128((__m128i*)(qb + j * 16), _mm512_cvtsepi32_epi8(q));
    }
    // Transpose to the kernel's order: xq[b][i][g] = bytes 4i..4i+3 of group g.
    const __m512i rows = _mm512_setr_epi32(0, 16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 208, 224, 240);
    for (int i = 0; i < 4; i++)
      _mm512_store_si512(a.xq + (b * 4 + i) * 16, _mm512_i32gather_epi32(rows, qb + 4 * i, 1));
  }
}

namespace {

// Byte permutation for vpermt2b over (lo = bytes 0..63 of the block, hi = bytes
// off1..off1+63): qword k gets bytes [h·HB, h·HB+HB) of groups 2k and 2k+1 (HB = bytes
// of 8 codes: 3 or 4), the rest zero-filled with byte 0 (never extracted).
template <int WBITS>
inline __m512i half_index(int h) {
  constexpr int GB = 2 * WBITS, HB = WBITS, off1 = WBITS == 3 ? 32 : 64;
  alignas(64) uint8_t idx[64];
  for (int k = 0; k < 8; k++)
    for (int i = 0; i < 8; i++) {
      int o = 0;
      if (i < 2 * HB) o = (2 * k + i / HB) * GB + h * HB + i % HB;
      idx[k * 8 + i] = (uint8_t)(o < 64 ? o : o - off1 + 64);
    }
  return _mm512_load_si512(idx);
}

template <int WBITS>
void decode_kernel(const SpqrDecodeJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t G = w.n_groups, R = w.rows, nb = (G + 15) / 16, sg = w.p.stat_groupsize;
  constexpr int64_t GB = 2 * WBITS, off1 = WBITS == 3 ? 32 : 64;
  constexpr int64_t kPF = 4096;  // bytes ahead in the code stream (2 KiB: same; 8 KiB: slower)
  const uint8_t* const codes = w.codes;
  const uint8_t* const stats = w.stats;
  const SpqrStats2* const stats2 = w.stats2;
  const int32_t* const rowptr = w.outlier_rowptr;
  const uint32_t* const outl = w.outlier_col_delta16.data();
  const int32_t* const xq = job.acts->xq;
  const float* const xp = job.acts->xp;
  const float* const dx = job.acts->d;
  const float* const qs = job.acts->qsum;
  float* const y = job.y;

  const __m512i idx0 = half_index<WBITS>(0), idx1 = half_index<WBITS>(1);
  // vpmultishiftqb bit offsets: codes 0-3 (4-7) of the qword's two groups.
  const __m512i sh_a = WBITS == 3 ? _mm512_set1_epi64(0x211e1b1809060300LL) : _mm512_set1_epi64(0x2c2824200c080400LL);
  const __m512i sh_b = WBITS == 3 ? _mm512_set1_epi64(0x2d2a272415120f0cLL) : _mm512_set1_epi64(0x3c3834301c181410LL);
  const __m512i cmask = _mm512_set1_epi8((1 << WBITS) - 1);
  const __m512 nibble_f = _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  // De-interleaving the fp16 second-level statistics of 16 groups (4 halves each).
  alignas(64) uint16_t ev[32];  // ss (sz) of group j: half 4j (4j + 1)
  for (int j = 0; j < 16; j++) ev[j] = (uint16_t)(4 * j), ev[16 + j] = (uint16_t)(4 * j + 1);
  const __m512i ev0 = _mm512_load_si512(ev);
  const __m512i ev1 = _mm512_add_epi16(ev0, _mm512_set1_epi16(2));

  thread_local AlignedFloats s2_buf;
  float* s2 = s2_buf.get((size_t)(nb * 64));  // per block: A[16], A·sz[16], E[16], E·zz[16]

  for (int64_t q = job.q0; q < job.q1; q++) {
    // Second-level statistics of the row group, decoded once: A = ss·d, A·sz,
    // E = zs·Σq, E·zz (zero past G).
    const SpqrStats2* st = stats2 + q * G;
    for (int64_t b = 0; b < nb; b++) {
      const int64_t gn = std::min<int64_t>(16, G - b * 16);
      __m512i lo, hi;
      if (gn == 16) {
        lo = _mm512_loadu_si512(st + b * 16), hi = _mm512_loadu_si512(st + b * 16 + 8);
      } else {
        const int64_t nw = gn * 4;  // halves
        lo = _mm512_maskz_loadu_epi16((__mmask32)(nw >= 32 ? 0xffffffffu : ((1u << nw) - 1)), st + b * 16);
        hi = _mm512_maskz_loadu_epi16((__mmask32)(nw <= 32 ? 0u : ((1u << (nw - 32)) - 1)), st + b * 16 + 8);
      }
      const __m512i sszs = _mm512_permutex2var_epi16(lo, ev0, hi);  // ss[16] | sz[16]
      const __m512i zszz = _mm512_permutex2var_epi16(lo, ev1, hi);  // zs[16] | zz[16]
      const __m512 ss = _mm512_cvtph_ps(_mm512_castsi512_si256(sszs));
      const __m512 sz = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(sszs, 1));
      const __m512 zs = _mm512_cvtph_ps(_mm512_castsi512_si256(zszz));
      const __m512 zz = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(zszz, 1));
      float* o = s2 + b * 64;
      const __m512 A = _mm512_mul_ps(ss, _mm512_loadu_ps(dx + b * 16)), E = _mm512_mul_ps(zs, _mm512_loadu_ps(qs + b * 16));
      _mm512_store_ps(o, A);
      _mm512_store_ps(o + 16, _mm512_mul_ps(A, sz));
      _mm512_store_ps(o + 32, E);
      _mm512_store_ps(o + 48, _mm512_mul_ps(E, zz));
    }
    const int64_t r1 = std::min(R, (q + 1) * sg);
    for (int64_t r = q * sg; r < r1; r++) {
      const uint8_t* cr = codes + r * G * GB;
      const uint8_t* sr = stats + r * G;
      __m512 acc = _mm512_setzero_ps();
      // The outlier stream (4 bytes per outlier), kPO entries ahead: every line that
      // this row's range, shifted by kPO, touches.
      {
        constexpr int32_t kPO = 512;
        const int32_t ka = rowptr[r] + kPO, kb = rowptr[r + 1] + kPO;
        for (int32_t k = ka & ~15; k < kb; k += 16) _mm_prefetch((const char*)(outl + k), _MM_HINT_T0);
      }
      for (int64_t b = 0; b < nb; b++) {
        const uint8_t* cb = cr + b * 16 * GB;
        // Software prefetch kPF bytes ahead in the code stream (it runs on into the next
        // rows), and in the statistics stream: as in the dense matrix-vector kernels, the
        // hardware prefetchers alone keep too few lines in flight.
        _mm_prefetch((const char*)cb + kPF, _MM_HINT_T0);
        _mm_prefetch((const char*)cb + kPF + 64, _MM_HINT_T0);
        if ((b & 3) == 0) _mm_prefetch((const char*)(sr + b * 16) + kPF / GB * 2, _MM_HINT_T0);
        __m512i c0, c1;
        __m128i sb;
        if (b * 16 + 16 <= G) {
          c0 = _mm512_loadu_si512(cb);
          c1 = _mm512_loadu_si512(cb + off1);
          sb = _mm_loadu_si128((const __m128i*)(sr + b * 16));
        } else {  // the row's last, partial block: nothing past its last group is read
          const int64_t gn = G - b * 16, nbytes = gn * GB;
          c0 = _mm512_maskz_loadu_epi8(nbytes >= 64 ? ~0ULL : (1ULL << nbytes) - 1, cb);
          c1 = _mm512_maskz_loadu_epi8(nbytes <= off1 ? 0ULL : (1ULL << (nbytes - off1)) - 1, cb + off1);
          sb = _mm_maskz_loadu_epi8((__mmask16)((1u << gn) - 1), sr + b * 16);
        }
        const __m512i p0 = _mm512_permutex2var_epi8(c0, idx0, c1);
        const __m512i p1 = _mm512_permutex2var_epi8(c0, idx1, c1);
        const int32_t* xb = xq + b * 64;
        __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(),
                                          _mm512_and_si512(_mm512_multishift_epi64_epi8(sh_a, p0), cmask),
                                          _mm512_load_si512(xb));
        dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_multishift_epi64_epi8(sh_b, p0), cmask),
                                  _mm512_load_si512(xb + 16));
        dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_multishift_epi64_epi8(sh_a, p1), cmask),
                                  _mm512_load_si512(xb + 32));
        dot = _mm512_dpbusd_epi32(dot, _mm512_and_si512(_mm512_multishift_epi64_epi8(sh_b, p1), cmask),
                                  _mm512_load_si512(xb + 48));
        // The nibbles to floats by table lookup: vpermps reads only an index's low 4 bits.
        const __m512i s = _mm512_cvtepu8_epi32(sb);
        const __m512 sc = _mm512_permutexvar_ps(s, nibble_f);
        const __m512 zc = _mm512_permutexvar_ps(_mm512_srli_epi32(s, 4), nibble_f);
        const float* o = s2 + b * 64;
        // scale·d = A·sc − A·sz and zero·Σq = E·zc − E·zz, one FMA each (the products
        // A·sz, E·zz rounded once per row group: ~1e-7 of |A·sz|, far below 1e-5).
        const __m512 scale_d = _mm512_fmsub_ps(sc, _mm512_load_ps(o), _mm512_load_ps(o + 16));
        const __m512 zsum = _mm512_fmsub_ps(zc, _mm512_load_ps(o + 32), _mm512_load_ps(o + 48));
        acc = _mm512_fmadd_ps(scale_d, _mm512_sub_ps(_mm512_cvtepi32_ps(dot), zsum), acc);
      }
      // Outliers: + (value − dequantized code) · x, with the exact activation.
      for (int32_t k = rowptr[r], k1 = rowptr[r + 1]; k < k1; k += 16) {
        const __mmask16 m = k1 - k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (k1 - k)) - 1);
        const __m512i cd = _mm512_maskz_loadu_epi32(m, outl + k);
        const __m512i col = _mm512_and_si512(cd, _mm512_set1_epi32(0xffff));
        const __m512 xv = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, col, xp, 4);
        const __m512 dl = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(cd, 16)));
        acc = _mm512_fmadd_ps(dl, xv, acc);
      }
      y[r] = _mm512_reduce_add_ps(acc);
    }
  }
}

}  // namespace

void spqr_decode_avx512(const SpqrDecodeJob& job) {
  if (job.w->p.wbits == 3) decode_kernel<3>(job);
  else decode_kernel<4>(job);
}

}  // namespace engine::cpu::detail
