// The 1-token SpQR product (decode) with int8 activations on AVX2 (groupsize 16,
// wbits 3, bilevel statistics): what spqr_decode_avx512vbmi.cpp does with vpmultishiftqb
// and vpdpbusd, for CPUs that have neither.
//
// AVX2 cannot cut 3-bit fields out of a packed bit stream cheaply (~10 instructions
// per 32 codes), so each layer's codes are re-laid once, on its first 1-token product,
// into byte planes from which a mask, or a shift and a mask, takes out 32 codes. Per row
// and super-block of 16 column groups (256 weights), 112 bytes, the same bytes as the
// file's 96 + 16:
//   chunk k = 4h + i (h: which 8 groups, i = 0..3): 32 codes, byte 4g + m = the code of
//            weight 4i + m of group 8h + g (the AVX-512 kernel's dword-per-group order);
//   P0 [32 bytes]: chunk 0 at bits 0-2, chunk 1 at bits 3-5, chunk 6's low bits at 6-7;
//   P1 [32 bytes]: chunks 2 and 3 the same way, chunk 7's low bits at 6-7;
//   P2 [32 bytes]: chunks 4 and 5, chunk 6's high bit at bit 6, chunk 7's at bit 7;
//   S  [16 bytes]: the first-level statistics bytes of the 16 groups.
// Chunks 0-5 take 1 or 2 instructions each, 6 and 7 take 5: 19 per 256 codes (a layout
// with one plane of low bit pairs and one of high bits took 36).
// A super-block is one sequential 112-byte read; a row is ceil(G/16) of them (padding
// groups have code 0 and statistics 0, and meet zero activations and zero scales).
// After the rows, the second-level statistics (kS2HalfBytes).
//
// Per row and half super-block (8 groups, 128 weights):
//   - chunk k's codes (chunk_codes, spqr_avx2_planes.h), 32 bytes;
//   - vpmaddubsw with the int8 activations (laid out as the codes) and three vpaddw:
//     i16 lanes 2g, 2g+1 hold group g's sum; vpmaddwd makes it one exact int32;
//   - acc += (ss·d·(sc − sz)) · (dot − zs·Σq·(zc − zz)), 8 groups per vector, the
//     second-level terms decoded once per row group and call (as the AVX-512 kernel),
//     the statistics codes turned into floats by a table lookup (vpermps);
// then the row's outliers (scalar: a gather measured slower than the ~14 of a
// 2048-wide row, bench/NOTES.md), one horizontal sum per row. The result is what the
// AVX-512 int8 kernel computes (up to float summation order): docs/spqr-format.md.
#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>

#include <sys/mman.h>

#include "cpu/spqr_avx2_planes.h"
#include "cpu/spqr_matmul.h"

namespace engine::cpu::detail {

namespace {

constexpr int64_t kSuperBytes = kSpqrAvx2SuperBytes;

constexpr int64_t kS2HalfBytes = kSpqrAvx2S2HalfBytes;

// The re-laid layer in 2 MiB pages where the kernel grants them (transparent huge pages
// on request, "madvise" mode): decode streams every byte of it per token, and with 4 KiB
// pages that is a TLB miss every 4 KiB. Only the whole 2 MiB pages of the buffer are
// asked for; its tail (and a layer under 2 MiB) stays in 4 KiB pages, so no memory is
// spent on rounding up.
std::shared_ptr<const uint8_t> alloc_packed(size_t bytes) {
  constexpr size_t kHuge = (size_t)2 << 20, kPage = 4096;
  void* p = nullptr;  // posix_memalign: aligned_alloc wants the size a multiple of 2 MiB
  if (posix_memalign(&p, kHuge, (bytes + kPage - 1) / kPage * kPage) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (bytes >= kHuge) madvise(p, bytes / kHuge * kHuge, MADV_HUGEPAGE);
#endif
  std::memset(p, 0, bytes);
  return std::shared_ptr<const uint8_t>((const uint8_t*)p, [](const uint8_t* q) { std::free((void*)q); });
}

std::shared_ptr<const uint8_t> pack(const SpqrLayer& w, ThreadPool& pool) {
  const int64_t G = w.n_groups, nsb = (G + 15) / 16, R = w.rows, row_bytes = nsb * kSuperBytes;
  auto out = alloc_packed((size_t)(R * row_bytes + w.n_row_groups * nsb * 2 * kS2HalfBytes));
  uint8_t* const base = (uint8_t*)out.get();
  pool.parallel_for(R, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++) {
      const uint8_t* codes = w.codes + r * G * 6;
      for (int64_t sb = 0; sb < nsb; sb++) {
        // cw[gi][i]: the codes of weights 4i .. 4i+3 of group gi, one per byte.
        uint32_t cw[16][4] = {};
        for (int64_t gi = 0; gi < 16 && sb * 16 + gi < G; gi++) {
          // The group's 16 codes: a 48-bit little-endian stream (6 bytes, read exactly).
          const uint8_t* c = codes + (sb * 16 + gi) * 6;
          uint64_t v = 0;
          for (int b = 0; b < 6; b++) v |= (uint64_t)c[b] << (8 * b);
#pragma GCC unroll 16
          for (int j = 0; j < 16; j++) cw[gi][j / 4] |= (uint32_t)((v >> (3 * j)) & 7) << (8 * (j % 4));
        }
        uint8_t* P = base + r * row_bytes + sb * kSuperBytes;
        // Chunk 4h + i of byte group g8 is cw[8h + g8][i]; byte-wise shifts stay in their byte.
        for (int g8 = 0; g8 < 8; g8++) {
          const uint32_t* a = cw[g8];
          const uint32_t* b = cw[8 + g8];
          const uint32_t p0 = a[0] | a[1] << 3 | (b[2] & 0x03030303u) << 6;
          const uint32_t p1 = a[2] | a[3] << 3 | (b[3] & 0x03030303u) << 6;
          const uint32_t p2 = b[0] | b[1] << 3 | (b[2] >> 2 & 0x01010101u) << 6 | (b[3] >> 2 & 0x01010101u) << 7;
          std::memcpy(P + 4 * g8, &p0, 4);
          std::memcpy(P + 32 + 4 * g8, &p1, 4);
          std::memcpy(P + 64 + 4 * g8, &p2, 4);
        }
        std::memcpy(P + 96, w.stats + r * G + sb * 16, (size_t)std::min<int64_t>(16, G - sb * 16));
      }
    }
  });
  uint16_t* s2 = (uint16_t*)(base + R * row_bytes);
  for (int64_t q = 0; q < w.n_row_groups; q++)
    for (int64_t h = 0; h < nsb * 2; h++, s2 += 32)
      for (int j = 0; j < 8; j++) {
        const int64_t g = h * 8 + j;
        if (g >= G) continue;
        const SpqrStats2& st = w.stats2[q * G + g];
        s2[j] = st.scale_scale, s2[8 + j] = st.scale_zero, s2[16 + j] = st.zero_scale, s2[24 + j] = st.zero_zero;
      }
  return out;
}

// Exact int32 dot products of the 8 groups of half H2 of a super-block with the int8
// activations xq (the super-block's 256 bytes, laid out as the codes).
template <int H2>
inline __m256i half_dots(__m256i P0, __m256i P1, __m256i P2, const int8_t* xq) {
  auto part = [&](auto i) {
    constexpr int k = 4 * H2 + decltype(i)::value;
    return _mm256_maddubs_epi16(chunk_codes<k>(P0, P1, P2), _mm256_load_si256((const __m256i*)(xq + k * 32)));
  };
  // |part| ≤ 2·7·127 per i16 lane; the sum of four ≤ 7112: no wrap.
  const __m256i s = _mm256_add_epi16(_mm256_add_epi16(part(std::integral_constant<int, 0>{}), part(std::integral_constant<int, 1>{})),
                                     _mm256_add_epi16(part(std::integral_constant<int, 2>{}), part(std::integral_constant<int, 3>{})));
  return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

// The scale and zero codes of 8 groups (statistics bytes s, zero-extended) as floats:
// with stat_bits ≤ 3 a vpermps table lookup (it reads an index's low 3 bits), else
// mask or shift and convert.
template <bool kSmallStats>
inline void stat_codes(__m256i s, __m256* sc, __m256* zc) {
  if constexpr (kSmallStats) {
    const __m256 table = _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7);
    *sc = _mm256_permutevar8x32_ps(table, s);
    *zc = _mm256_permutevar8x32_ps(table, _mm256_srli_epi32(s, 4));
  } else {
    *sc = _mm256_cvtepi32_ps(_mm256_and_si256(s, _mm256_set1_epi32(15)));
    *zc = _mm256_cvtepi32_ps(_mm256_srli_epi32(s, 4));
  }
}

}  // namespace

// The packed layer, built once: the first caller packs, later ones share it (SpqrLayer
// copies share the pointer too). One lock per layer and call.
const uint8_t* spqr_avx2_packed(const SpqrLayer& w, ThreadPool& pool) {
  static std::mutex m;
  std::lock_guard<std::mutex> lock(m);
  if (!w.decode_avx2_packed) w.decode_avx2_packed = pack(w, pool);
  return w.decode_avx2_packed.get();
}

bool spqr_decode_avx2_supports(const SpqrLayer& w) {
  return w.p.groupsize == 16 && w.p.wbits == 3 && w.p.stat_bits != 16 &&
         (int64_t)w.outlier_col_delta16.size() == w.n_outliers && w.outlier_delta16_finite;
}

void spqr_avx2_quantize_acts(const SpqrLayer& w, const float* x, float* xp, int32_t* xq, float* d, float* qsum) {
  const int64_t C = w.cols, nb = (w.n_groups + 15) / 16, P = nb * 256;
  for (int64_t c = 0; c < C; c++) xp[c] = x[w.perm[c]];
  std::fill(xp + C, xp + P, 0.0f);
  for (int64_t g = 0; g < nb * 16; g++) {
    const __m256 v0 = _mm256_loadu_ps(xp + g * 16), v1 = _mm256_loadu_ps(xp + g * 16 + 8);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float amax = _mm_cvtss_f32(m4);
    const float id = amax > 0 ? 127.0f / amax : 0.0f;
    // Round to nearest even (the MXCSR default), as spqr_decode_round_activations does.
    const __m256i q0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, _mm256_set1_ps(id)));
    const __m256i q1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, _mm256_set1_ps(id)));
    const __m256i q16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xd8);  // 16 × i16 in order
    const __m128i q8 = _mm_packs_epi16(_mm256_castsi256_si128(q16), _mm256_extracti128_si256(q16, 1));
    // Weights 4i..4i+3 of the group go to dword g % 8 of chunk 4·(g % 16 / 8) + i.
    int32_t* dst = xq + (g / 16) * 64 + ((g % 16) / 8) * 32 + g % 8;
    dst[0] = _mm_cvtsi128_si32(q8), dst[8] = _mm_extract_epi32(q8, 1);
    dst[16] = _mm_extract_epi32(q8, 2), dst[24] = _mm_extract_epi32(q8, 3);
    const __m256i qs = _mm256_add_epi32(q0, q1);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(qs), _mm256_extracti128_si256(qs, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    d[g] = amax / 127.0f;
    qsum[g] = (float)_mm_cvtsi128_si32(s4);
  }
}

void spqr_decode_prepare_avx2(const SpqrLayer& w, const float* x, SpqrDecodeActs& a, ThreadPool& pool) {
  a.packed = spqr_avx2_packed(w, pool);  // before the parallel region
  a.resize((w.n_groups + 15) / 16);
  spqr_avx2_quantize_acts(w, x, a.xp, a.xq, a.d, a.qsum);
}

namespace {

template <bool kSmallStats>
void decode_kernel(const SpqrDecodeJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t G = w.n_groups, R = w.rows, nsb = (G + 15) / 16, sg = w.p.stat_groupsize;
  const int64_t row_bytes = nsb * kSuperBytes;
  const uint8_t* const pk = job.acts->packed;
  const int32_t* const rowptr = w.outlier_rowptr;
  const uint32_t* const outl = w.outlier_col_delta16.data();
  const int8_t* const xq = (const int8_t*)job.acts->xq;
  const float* const xp = job.acts->xp;
  const float* const dx = job.acts->d;
  const float* const qs = job.acts->qsum;
  float* const y = job.y;

  thread_local AlignedFloats s2_buf;
  float* s2 = s2_buf.get((size_t)(nsb * 64));  // per half super-block: A[8], A·sz[8], E[8], E·zz[8]

  for (int64_t q = job.q0; q < job.q1; q++) {
    // Second-level statistics of the row group times the activations' per-group scale d
    // (A) and sum Σq (E); zero past G.
    const uint16_t* st = (const uint16_t*)(pk + R * row_bytes) + q * nsb * 64;
    for (int64_t h = 0; h < nsb * 2; h++, st += 32) {
      const __m256 A = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)st)), _mm256_loadu_ps(dx + h * 8));
      const __m256 E = _mm256_mul_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(st + 16))), _mm256_loadu_ps(qs + h * 8));
      float* o = s2 + h * 32;
      _mm256_store_ps(o, A);
      _mm256_store_ps(o + 8, _mm256_mul_ps(A, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(st + 8)))));
      _mm256_store_ps(o + 16, E);
      _mm256_store_ps(o + 24, _mm256_mul_ps(E, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(st + 24)))));
    }
    const int64_t r1 = std::min(R, (q + 1) * sg);
    for (int64_t r = q * sg; r < r1; r++) {
      const uint8_t* row = pk + r * row_bytes;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      for (int64_t sb = 0; sb < nsb; sb++) {
        const uint8_t* b = row + sb * kSuperBytes;
        // The hardware prefetchers alone keep too few lines in flight (as in the other
        // matrix-vector kernels): 4 KiB ahead, running on into the next rows.
        _mm_prefetch((const char*)b + 4096, _MM_HINT_T0);
        _mm_prefetch((const char*)b + 4096 + 64, _MM_HINT_T0);
        const __m256i P0 = _mm256_loadu_si256((const __m256i*)b), P1 = _mm256_loadu_si256((const __m256i*)(b + 32));
        const __m256i P2 = _mm256_loadu_si256((const __m256i*)(b + 64));
        const __m128i S = _mm_loadu_si128((const __m128i*)(b + 96));
        const int8_t* xb = xq + sb * 256;
        const float* o = s2 + sb * 64;
        __m256 sc, zc;
        {
          const __m256 dot = _mm256_cvtepi32_ps(half_dots<0>(P0, P1, P2, xb));
          stat_codes<kSmallStats>(_mm256_cvtepu8_epi32(S), &sc, &zc);
          const __m256 scale_d = _mm256_fmsub_ps(sc, _mm256_load_ps(o), _mm256_load_ps(o + 8));
          const __m256 zsum = _mm256_fmsub_ps(zc, _mm256_load_ps(o + 16), _mm256_load_ps(o + 24));
          acc0 = _mm256_fmadd_ps(scale_d, _mm256_sub_ps(dot, zsum), acc0);
        }
        {
          const __m256 dot = _mm256_cvtepi32_ps(half_dots<1>(P0, P1, P2, xb));
          stat_codes<kSmallStats>(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(S, S)), &sc, &zc);
          const __m256 scale_d = _mm256_fmsub_ps(sc, _mm256_load_ps(o + 32), _mm256_load_ps(o + 40));
          const __m256 zsum = _mm256_fmsub_ps(zc, _mm256_load_ps(o + 48), _mm256_load_ps(o + 56));
          acc1 = _mm256_fmadd_ps(scale_d, _mm256_sub_ps(dot, zsum), acc1);
        }
      }
      // Outliers: + (value − dequantized code) · x, with the exact activation.
      float out0 = 0, out1 = 0;
      int32_t k = rowptr[r];
      const int32_t k1 = rowptr[r + 1];
      for (; k + 1 < k1; k += 2) {
        out0 += _cvtsh_ss((uint16_t)(outl[k] >> 16)) * xp[outl[k] & 0xffff];
        out1 += _cvtsh_ss((uint16_t)(outl[k + 1] >> 16)) * xp[outl[k + 1] & 0xffff];
      }
      if (k < k1) out0 += _cvtsh_ss((uint16_t)(outl[k] >> 16)) * xp[outl[k] & 0xffff];
      y[r] = hsum_avx2(_mm256_add_ps(acc0, acc1)) + (out0 + out1);
    }
  }
}

}  // namespace

void spqr_decode_avx2(const SpqrDecodeJob& job) {
  if (job.w->p.stat_bits <= 3) decode_kernel<true>(job);
  else decode_kernel<false>(job);
}

}  // namespace engine::cpu::detail
