#include "cpu/spqr_matmul.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "cpu/matmul.h"

namespace engine::cpu {

namespace detail {

void spqr_rows_scalar(const SpqrRowsJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs;
  const uint32_t mask = (1u << w.p.wbits) - 1;
  std::vector<float> sc((size_t)w.n_groups), ze((size_t)w.n_groups);
  for (int64_t r = job.r0; r < job.r1; r++) {
    for (int64_t g = 0; g < w.n_groups; g++) {
      sc[g] = w.scale(r, g);
      ze[g] = w.zero(r, g);
    }
    const uint8_t* codes = w.codes + (size_t)r * w.n_groups * w.group_bytes;
    for (int64_t t = 0; t < job.n_tok; t++) {
      const float* xt = job.xp + t * padded;
      float acc = 0;
      for (int64_t g = 0; g < w.n_groups; g++) {
        // Stream the group's bits through a 64-bit window, a byte at a time.
        const uint8_t* grp = codes + g * w.group_bytes;
        uint64_t window = 0;
        int have = 0, next = 0;
        float dot = 0;
        for (int64_t j = 0; j < gs; j++) {
          while (have < w.p.wbits && next < w.group_bytes) {
            window |= (uint64_t)grp[next++] << have;
            have += 8;
          }
          dot += (float)(window & mask) * xt[g * gs + j];
          window >>= w.p.wbits;
          have -= w.p.wbits;
        }
        acc += sc[g] * (dot - ze[g] * job.gsum[t * w.n_groups + g]);
      }
      job.y[t * w.rows + r] = acc;
    }
  }
}

void spqr_cols_scalar(const SpqrColsJob& job) {
  const SpqrLayer& w = *job.w;
  const int64_t gs = w.p.groupsize, T = job.n_tok;
  constexpr int64_t kKC = 256, kTP = 256;  // rows per chunk, tokens per panel
  const int64_t GB = std::max<int64_t>(1, 128 / gs);  // column groups per block: ≤ 128 columns
  thread_local AlignedFloats panel_buf, acc_buf;
  float* panel = panel_buf.get((size_t)(kKC * gs));
  float* acc = acc_buf.get((size_t)(GB * kTP * gs));
  std::vector<int32_t> cur((size_t)GB);
  for (int64_t gb = job.g0; gb < job.g1; gb += GB) {
    const int64_t gbn = std::min(GB, job.g1 - gb);
    for (int64_t tp = 0; tp < T; tp += kTP) {
      const int64_t tpn = std::min(kTP, T - tp);
      std::fill(acc, acc + gbn * kTP * gs, 0.0f);
      for (int64_t gi = 0; gi < gbn; gi++) cur[gi] = job.optr[gb + gi];
      for (int64_t rc = 0; rc < w.rows; rc += kKC) {
        const int64_t rcn = std::min(kKC, w.rows - rc);
        for (int64_t gi = 0; gi < gbn; gi++) {
          const int64_t g = gb + gi, c0 = g * gs;
          for (int64_t i = 0; i < rcn; i++) {
            const int64_t r = rc + i;
            const float s = w.scale(r, g), z = w.zero(r, g);
            for (int64_t j = 0; j < gs; j++)
              panel[i * gs + j] = c0 + j < w.cols ? s * ((float)w.code(r, c0 + j) - z) : 0.0f;
          }
          for (int32_t& k = cur[gi]; k < job.optr[g + 1] && job.orow[k] < rc + rcn; k++)
            panel[(job.orow[k] - rc) * gs + job.ocol[k]] = f16_to_f32(job.oval[k]);
          for (int64_t t = 0; t < tpn; t++) {
            float* a = acc + (gi * kTP + t) * gs;
            const float* d = job.dyt + rc * T + tp + t;
            for (int64_t i = 0; i < rcn; i++) {
              const float dv = d[i * T];
              const float* p = panel + i * gs;
              for (int64_t j = 0; j < gs; j++) a[j] += dv * p[j];
            }
          }
        }
      }
      for (int64_t gi = 0; gi < gbn; gi++) {
        const int64_t c0 = (gb + gi) * gs, cn = std::min(gs, w.cols - c0);
        for (int64_t t = 0; t < tpn; t++) {
          float* out = job.dx + (tp + t) * w.cols;
          const float* a = acc + (gi * kTP + t) * gs;
          for (int64_t j = 0; j < cn; j++) out[w.perm[c0 + j]] = a[j];
        }
      }
    }
  }
}

}  // namespace detail

// The kernel family follows the dense kernels' (cpu::kernel_name(): the best the CPU
// has, ENGINE_CPU=scalar|avx2 to lower it, set_kernel_family in tests and benches).
enum class Family { Scalar, Avx2, Avx512 };
static Family family() {
  const char* k = kernel_name();
  if (std::strcmp(k, "avx512") == 0) return Family::Avx512;
  if (std::strcmp(k, "avx2") == 0) return Family::Avx2;
  return Family::Scalar;
}

// xp[t][c'] = x[t][perm[c']] with zero padding to whole groups, and per-group sums.
static void gather(const SpqrLayer& w, const float* x, int64_t n_tok, std::vector<float>& xp,
                   std::vector<float>& gsum) {
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs;
  xp.assign((size_t)(n_tok * padded), 0.0f);
  gsum.assign((size_t)(n_tok * w.n_groups), 0.0f);
  for (int64_t t = 0; t < n_tok; t++) {
    float* dst = xp.data() + t * padded;
    const float* src = x + t * w.cols;
    for (int64_t c = 0; c < w.cols; c++) dst[c] = src[w.perm[c]];
    for (int64_t g = 0; g < w.n_groups; g++) {
      float s = 0;
      for (int64_t j = 0; j < gs; j++) s += dst[g * gs + j];
      gsum[t * w.n_groups + g] = s;
    }
  }
}

// From this many tokens the forward runs as a GEMM over dequantized panels (AVX2,
// AVX-512). Below, the row kernels, which unpack each group once per call and apply
// it to every token, are faster. Measured on 5632x2048 and 2048x5632 SpQR w3, one
// thread: the GEMM costs ~5.1 ms (AVX-512; AVX2 ~5.6 ms) from 2 to 8 tokens (the
// dequantization dominates); the row kernel 4.0-4.8 ms at 2 tokens, 6.0-7.5 at 4.
constexpr int64_t kGemmMinTokens = 4;

// A buffer per thread, reused from call to call (a fresh multi-megabyte vector each
// call costs page faults: ~3% of a 16-token product).
template <typename T>
static T* scratch(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

static void spqr_gemm(const SpqrLayer& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool, Family fam) {
  const int64_t vec = fam == Family::Avx512 ? 16 : 8, ld = (n_tok + vec - 1) / vec * vec, padded = w.n_groups * 16;
  // xt[c'][t] = x[t][perm c'], zero past cols and past n_tok.
  thread_local std::vector<float> xt_buf;
  float* xt = scratch(xt_buf, (size_t)(padded * ld));
  // 16 tokens at a time: their rows of x (16 · cols floats) stay in L2 while the
  // permutation reads them at random columns.
  constexpr int64_t kTB = 16;
  pool.parallel_for(padded, 64, [&](int64_t c0, int64_t c1) {
    for (int64_t t0 = 0; t0 < ld; t0 += kTB) {
      const int64_t t1 = std::min(t0 + kTB, ld), tn = std::min(t1, n_tok);
      for (int64_t c = c0; c < c1; c++) {
        float* dst = xt + c * ld;
        int64_t t = t0;
        if (c < w.cols)
          for (const float* src = x + w.perm[c]; t < tn; t++) dst[t] = src[t * w.cols];
        for (; t < t1; t++) dst[t] = 0.0f;
      }
    }
  });
  // With each row's outliers in column order the kernels walk them with a cursor per
  // row; otherwise (a file from elsewhere) every column chunk scans the row's list.
  bool sorted = true;
  for (int64_t r = 0; r < w.rows && sorted; r++)
    for (int32_t k = w.outlier_rowptr[r] + 1; k < w.outlier_rowptr[r + 1]; k++)
      if ((w.outliers[k] >> 16) <= (w.outliers[k - 1] >> 16)) sorted = false;
  constexpr int64_t kRB = 48;  // the kernels' row block
  pool.parallel_for((w.rows + kRB - 1) / kRB, 1, [&](int64_t b0, int64_t b1) {
    detail::SpqrGemmJob job{&w, xt, n_tok, ld, b0 * kRB, std::min(w.rows, b1 * kRB), y, sorted};
    if (fam == Family::Avx512) detail::spqr_gemm_avx512(job);
    else detail::spqr_gemm_avx2(job);
  });
}

// AVX-512 VBMI (vpermb, vpmultishiftqb) and VNNI (vpdpbusd), on top of the AVX-512 family.
static bool has_vbmi_vnni() { return cpu_features().avx512_vbmi && cpu_features().avx512_vnni; }

// Which int8 1-token kernel runs a layer: AVX-512 VBMI+VNNI where the CPU has them,
// else the AVX2 one (w3 only), else none (the exact row kernels).
enum class Int8Decode { None, Avx2, Avx512 };
// ENGINE_SPQR_DECODE=exact turns them off (the f32 row kernels), to measure or compare
// them in a real model; read once.
static bool int8_decode_allowed() {
  static const bool allowed = [] {
    const char* e = std::getenv("ENGINE_SPQR_DECODE");
    return !(e && std::strcmp(e, "exact") == 0);
  }();
  return allowed;
}
static thread_local int exact_scopes = 0;
SpqrExactScope::SpqrExactScope() { exact_scopes++; }
SpqrExactScope::~SpqrExactScope() { exact_scopes--; }

static Int8Decode int8_decode(const SpqrLayer& w) {
  const Family fam = family();
  if (!int8_decode_allowed() || exact_scopes > 0) return Int8Decode::None;
  if (fam == Family::Avx512 && has_vbmi_vnni() && detail::spqr_decode_avx512_supports(w)) return Int8Decode::Avx512;
  if (fam != Family::Scalar && detail::spqr_decode_avx2_supports(w)) return Int8Decode::Avx2;
  return Int8Decode::None;
}

bool spqr_decode_int8_active(const SpqrLayer& w) { return int8_decode(w) != Int8Decode::None; }

// Several tokens take the int8 kernels on the AVX2 family (the AVX-512 family keeps its
// f32 GEMM, not measured against them).
static bool prefill_int8(const SpqrLayer& w) { return family() == Family::Avx2 && int8_decode(w) == Int8Decode::Avx2; }

bool spqr_matmul_int8_active(const SpqrLayer& w, int64_t n_tok) {
  return n_tok == 1 ? spqr_decode_int8_active(w) : prefill_int8(w);
}

void spqr_decode_round_activations(const SpqrLayer& w, const float* x, float* xr) {
  const int64_t gs = w.p.groupsize;
  for (int64_t g = 0; g < w.n_groups; g++) {
    const int64_t c0 = g * gs, c1 = std::min(w.cols, c0 + gs);
    float amax = 0;
    for (int64_t c = c0; c < c1; c++) amax = std::max(amax, std::fabs(x[w.perm[c]]));
    const float id = amax > 0 ? 127.0f / amax : 0.0f, d = amax / 127.0f;
    for (int64_t c = c0; c < c1; c++) {
      const float v = x[w.perm[c]] * id;
      xr[w.perm[c]] = d * std::nearbyint(v);  // round to nearest even, as vcvtps2dq
    }
  }
}

void spqr_decode_int8_many(const SpqrLayer* const* w, int count, const float* x, float* const* y, ThreadPool& pool) {
  if (count < 1 || count > kSpqrDecodeManyMax) throw Error("spqr_decode_int8_many: 1 to 4 layers");
  // The caller's buffers (a thread_local named inside the lambda would be each worker's own).
  thread_local detail::SpqrDecodeActs acts_buf[kSpqrDecodeManyMax];
  detail::SpqrDecodeActs* acts = acts_buf;
  int64_t first[kSpqrDecodeManyMax + 1] = {0};  // layer i owns combined row groups [first[i], first[i+1])
  bool avx512[kSpqrDecodeManyMax];
  for (int i = 0; i < count; i++) {
    const Int8Decode k = int8_decode(*w[i]);
    if (k == Int8Decode::None) throw Error("spqr_decode_int8_many: a layer the int8 kernels do not take");
    avx512[i] = k == Int8Decode::Avx512;
    if (avx512[i]) detail::spqr_decode_prepare_avx512(*w[i], x, acts[i]);
    else detail::spqr_decode_prepare_avx2(*w[i], x, acts[i], pool);
    first[i + 1] = first[i] + w[i]->n_row_groups;
  }
  pool.parallel_for(first[count], 1, [&](int64_t q0, int64_t q1) {
    for (int i = 0; i < count; i++) {
      const int64_t a = std::max(q0, first[i]), b = std::min(q1, first[i + 1]);
      if (a >= b) continue;
      const detail::SpqrDecodeJob job{w[i], &acts[i], a - first[i], b - first[i], y[i]};
      if (avx512[i]) detail::spqr_decode_avx512(job);
      else detail::spqr_decode_avx2(job);
    }
  });
}

// Several tokens on AVX2 with the int8 kernel's layout and arithmetic (spqr_prefill_avx2.cpp):
// every token's activations rounded as for one token, then rows in chunks of 16 over
// the threads.
static void spqr_prefill_int8(const SpqrLayer& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool) {
  const uint8_t* packed = detail::spqr_avx2_packed(w, pool);
  const int64_t nb = (w.n_groups + 15) / 16, P = nb * 256, ld = (n_tok + 7) / 8 * 8;
  thread_local detail::AlignedFloats xp_buf, xq_buf, d_buf, e_buf, xt_buf;
  float* xp = xp_buf.get((size_t)(n_tok * P));
  int32_t* xq = (int32_t*)xq_buf.get((size_t)(n_tok * nb * 64));
  float* d = d_buf.get((size_t)(n_tok * nb * 16));
  float* e = e_buf.get((size_t)(n_tok * nb * 16));
  float* xt = xt_buf.get((size_t)(P * ld));
  pool.parallel_for(n_tok, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; t++) {
      float *dt = d + t * nb * 16, *et = e + t * nb * 16;
      detail::spqr_avx2_quantize_acts(w, x + t * w.cols, xp + t * P, xq + t * nb * 64, dt, et);
      for (int64_t g = 0; g < nb * 16; g++) et[g] *= dt[g];  // e = d · Σq
    }
  });
  pool.parallel_for(P, 64, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; c++) {
      for (int64_t t = 0; t < n_tok; t++) xt[c * ld + t] = xp[t * P + c];
      for (int64_t t = n_tok; t < ld; t++) xt[c * ld + t] = 0.0f;
    }
  });
  constexpr int64_t kRows = 16;  // the kernel's row chunk
  pool.parallel_for((w.rows + kRows - 1) / kRows, 1, [&](int64_t b0, int64_t b1) {
    detail::spqr_prefill_avx2(
        detail::SpqrPrefillJob{&w, packed, xq, d, e, xt, n_tok, ld, b0 * kRows, std::min(w.rows, b1 * kRows), y});
  });
}

void spqr_matmul(const SpqrLayer& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool) {
  const Family fam = family();
  if (n_tok == 1 && w.rows > 0 && spqr_decode_int8_active(w)) {
    const SpqrLayer* one = &w;
    return spqr_decode_int8_many(&one, 1, x, &y, pool);
  }
  if (n_tok > 1 && w.rows > 0 && prefill_int8(w)) return spqr_prefill_int8(w, x, n_tok, y, pool);
  if (n_tok >= kGemmMinTokens && fam != Family::Scalar && detail::spqr_gemm_avx2_supports(w))
    return spqr_gemm(w, x, n_tok, y, pool, fam);
  std::vector<float> xp, gsum;
  gather(w, x, n_tok, xp, gsum);
  const auto kernel = fam == Family::Scalar ? &detail::spqr_rows_scalar : &detail::spqr_rows_avx2;
  const int64_t gs = w.p.groupsize, padded = w.n_groups * gs, rg_rows = w.p.stat_groupsize;
  // Work is split by row groups, which share their second-level statistics.
  pool.parallel_for(w.n_row_groups, 1, [&](int64_t q0, int64_t q1) {
    std::vector<float> s2((size_t)(4 * w.n_groups));
    for (int64_t q = q0; q < q1; q++) {
      const SpqrStats2* st = w.stats2 + q * w.n_groups;
      float *ss = s2.data(), *sz = ss + w.n_groups, *zs = sz + w.n_groups, *zz = zs + w.n_groups;
      for (int64_t g = 0; g < w.n_groups; g++) {
        ss[g] = f16_to_f32(st[g].scale_scale);
        sz[g] = f16_to_f32(st[g].scale_zero);
        zs[g] = f16_to_f32(st[g].zero_scale);
        zz[g] = f16_to_f32(st[g].zero_zero);
      }
      detail::SpqrRowsJob job{&w, q * rg_rows, std::min(w.rows, (q + 1) * rg_rows), ss, sz, zs, zz,
                              xp.data(), gsum.data(), n_tok, y};
      kernel(job);
      // Outliers: replace the quantized value by the stored one (delta = value − dequantized).
      if ((int64_t)w.outlier_delta.size() == w.n_outliers) {
        for (int64_t r = job.r0; r < job.r1; r++)
          for (int32_t k = w.outlier_rowptr[r]; k < w.outlier_rowptr[r + 1]; k++) {
            const int64_t c = w.outliers[k] >> 16;
            const float delta = w.outlier_delta[k];
            for (int64_t t = 0; t < n_tok; t++) y[t * w.rows + r] += delta * xp[t * padded + c];
          }
      } else {
        for (int64_t r = job.r0; r < job.r1; r++)
          for (int32_t k = w.outlier_rowptr[r]; k < w.outlier_rowptr[r + 1]; k++) {
            const int64_t c = w.outliers[k] >> 16, g = c / gs;
            const float delta =
                f16_to_f32((uint16_t)(w.outliers[k] & 0xffff)) - w.scale(r, g) * ((float)w.code(r, c) - w.zero(r, g));
            for (int64_t t = 0; t < n_tok; t++) y[t * w.rows + r] += delta * xp[t * padded + c];
          }
      }
    }
  });
}

void spqr_matmul_transposed(const SpqrLayer& w, const float* dy, int64_t n_tok, float* dx, ThreadPool& pool) {
  // dX[t][perm c'] = Σ_r dY[t][r] W[r][c']. Threads own disjoint slices of column
  // groups, so no two write the same output. The kernels want dY with tokens
  // contiguous per row (a broadcast per (row, token) in the tile) and, per column
  // group, its outliers in row order: both are built here once per call (O(rows·n)
  // and O(outliers), against the O(rows·cols·n) product).
  if (n_tok <= 0 || w.cols == 0) return;
  const int64_t T = n_tok, R = w.rows, G = w.n_groups, gs = w.p.groupsize;
  if (R == 0) {
    std::fill(dx, dx + T * w.cols, 0.0f);
    return;
  }
  thread_local std::vector<float> dyt_buf;
  float* dyt = scratch(dyt_buf, (size_t)(R * T));
  pool.parallel_for(R, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; r++)
      for (int64_t t = 0; t < T; t++) dyt[r * T + t] = dy[t * R + r];
  });
  // Outliers bucketed by column group (a counting sort; rows stay ascending).
  thread_local std::vector<int32_t> optr_buf, orow_buf, next_buf;
  thread_local std::vector<uint16_t> ocol_buf, oval_buf;
  const size_t no = (size_t)w.n_outliers;
  int32_t *optr = scratch(optr_buf, (size_t)G + 1), *orow = scratch(orow_buf, no), *next = scratch(next_buf, (size_t)G);
  uint16_t *ocol = scratch(ocol_buf, no), *oval = scratch(oval_buf, no);
  const int gshift = (gs & (gs - 1)) == 0 ? __builtin_ctzll((unsigned long long)gs) : -1;
  auto group_of = [&](int64_t c) { return gshift >= 0 ? c >> gshift : c / gs; };
  std::fill(optr, optr + G + 1, 0);
  for (int64_t k = 0; k < w.n_outliers; k++) optr[group_of(w.outliers[k] >> 16) + 1]++;
  for (int64_t g = 0; g < G; g++) optr[g + 1] += optr[g];
  std::copy(optr, optr + G, next);
  for (int64_t r = 0; r < R; r++)
    for (int32_t k = w.outlier_rowptr[r]; k < w.outlier_rowptr[r + 1]; k++) {
      const int64_t c = w.outliers[k] >> 16, g = group_of(c);
      const int32_t at = next[g]++;
      orow[at] = (int32_t)r;
      ocol[at] = (uint16_t)(c - g * gs);
      oval[at] = (uint16_t)(w.outliers[k] & 0xffff);
    }
  const Family fam = family();
  const auto kernel = fam == Family::Avx512 ? &detail::spqr_cols_avx512
                      : fam == Family::Avx2 ? &detail::spqr_cols_avx2
                                            : &detail::spqr_cols_scalar;
  pool.parallel_for(G, 2, [&](int64_t g0, int64_t g1) {
    detail::SpqrColsJob job{&w, dyt, T, optr, orow, ocol, oval, g0, g1, dx};
    kernel(job);
  });
}

}  // namespace engine::cpu
