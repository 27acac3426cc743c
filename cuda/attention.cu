// Causal grouped-query attention, forward (prefill and decode against the KV
// cache) and backward, flash-attention style: scores are computed tile by tile
// in shared memory and never stored as an n×n matrix.
//
// Layouts (as cpu::attention): q, out, dq, dout [n][n_head][hd] f32;
// k, v [n_ctx][n_head_kv][hd] (F32 or F16 forward; F32 backward), key j at
// position j; query t at position pos0 + t sees keys 0 .. pos0 + t.
//
// attn_rows_kernel: one warp per (query token, query head). A block holds the
// heads of one KV head's group (up to 16) for tq tokens (tq·heads <= 16 warps),
// so a K/V tile loaded into shared memory serves the whole group (GQA reuse).
// Per tile of 32 keys each lane scores one key (dot product over hd from shared
// memory, rows padded to hd+1 floats so the 32 lanes hit 32 banks), then the
// warp updates its online softmax (running max m, sum l) and the lanes, each
// owning hd/32 output dims, accumulate Σ p_j·v_j. Three modes:
//   FWD   out = Σ softmax·v (or, split over keys, partial (acc, m, l) per split:
//         flash-decoding, combined by attn_combine_kernel)
//   STATS (backward pass 1) lse = m + log l and D = dout·out per (token, head)
//   DQ    (backward pass 2) dq += scale·Σ_j P_j(dP_j − D)·k_j, P_j = exp(s_j − lse)
// attn_dkv_kernel (backward pass 3): one warp per key j (8 per block, one KV
// head); the query rows (token, head of the group) stream through shared memory
// in tiles of 32, one lane per row scoring, then lanes over hd accumulate
//   dv_j += Σ P·dout,  dk_j += scale·Σ P(dP − D)·q.
#include <algorithm>
#include <cmath>
#include <string>

#include "cuda/common.cuh"
#include "cuda/ops.h"

namespace engine::cuda {

using namespace dev;

namespace {

constexpr int kTile = 32;     // keys per tile (one per lane)
constexpr int kMaxHd = 256;   // 8 output dims per lane
constexpr int kMaxWarps = 16;
constexpr int kDkvWarps = 8;  // keys per block in the dk/dv pass

enum Mode { FWD = 0, STATS = 1, DQ = 2 };

struct RowsArgs {
  const float* q;
  const void* k;
  const void* v;
  const float* dout;  // STATS, DQ
  float* out;         // FWD, one split
  float* part;        // FWD, several splits: [split][n][n_head][hd + 2] (acc, m, l)
  float* stats;       // STATS writes, DQ reads: lse [n][n_head], then D [n][n_head]
  float* dq;          // DQ
  int n, pos0, n_head, n_head_kv, hd, group, hg, n_hsub, tq, kps;
  float scale;
};

template <typename KV, int MODE>
__global__ void attn_rows_kernel(RowsArgs a) {
  extern __shared__ float sm[];
  const int hd = a.hd, ld = hd + 1;
  const int W = blockDim.x / 32, w = threadIdx.x / 32, lane = threadIdx.x & 31;
  float* Ks = sm;                   // [32][hd+1]
  float* Vs = Ks + kTile * ld;      // [32][hd+1]
  float* Qs = Vs + kTile * ld;      // [W][hd]
  float* Ds = Qs + W * hd;          // [W][hd]   (DQ: dout rows)
  float* Ps = Ds + (MODE == DQ ? W * hd : 0);  // [W][32]

  const int tile_t = blockIdx.x / a.n_hsub, hsub = blockIdx.x % a.n_hsub;
  const int kvh = blockIdx.y, split = blockIdx.z;
  const int t0 = tile_t * a.tq;
  const int tt = w / a.hg, hh = hsub * a.hg + w % a.hg;
  const int t = t0 + tt, h = kvh * a.group + hh;
  const bool active = t < a.n && hh < a.group;  // warp-uniform
  const int limit = a.pos0 + t + 1;             // keys 0 .. limit-1
  const int t_last = min(a.n, t0 + a.tq) - 1;
  const int j_lo = split * a.kps;
  const int j_hi = min(j_lo + a.kps, a.pos0 + t_last + 1);
  const KV* K = (const KV*)a.k;
  const KV* V = (const KV*)a.v;
  const int64_t kv_stride = (int64_t)a.n_head_kv * hd;
  const int64_t row = ((int64_t)t * a.n_head + h) * hd;

  if (active) {
    for (int i = lane; i < hd; i += 32) {
      float qv = a.q[row + i];
      if (MODE == FWD && sizeof(KV) == 2) qv = round_f16(qv);  // q in the cache's precision, as the CPU
      Qs[w * hd + i] = qv;
      if (MODE == DQ) Ds[w * hd + i] = a.dout[row + i];
    }
  }
  float lse = 0, Dv = 0;
  if (MODE == DQ && active) {
    lse = a.stats[(int64_t)t * a.n_head + h];
    Dv = a.stats[(int64_t)a.n * a.n_head + (int64_t)t * a.n_head + h];
  }
  float acc[kMaxHd / 32];
#pragma unroll
  for (int c = 0; c < kMaxHd / 32; c++) acc[c] = 0.0f;
  float m = -INFINITY, l = 0.0f;

  for (int j0 = j_lo; j0 < j_hi; j0 += kTile) {
    __syncthreads();  // previous tile fully consumed
    for (int idx = threadIdx.x; idx < kTile * hd; idx += blockDim.x) {
      const int jj = idx / hd, i = idx % hd, j = j0 + jj;
      float kv_k = 0, kv_v = 0;
      if (j < j_hi) {
        const int64_t off = (int64_t)j * kv_stride + (int64_t)kvh * hd + i;
        kv_k = load_f32(K, off);
        kv_v = load_f32(V, off);
      }
      Ks[jj * ld + i] = kv_k;
      Vs[jj * ld + i] = kv_v;
    }
    __syncthreads();
    if (!active || j0 >= limit) continue;  // warp-uniform
    const int j = j0 + lane;
    const bool valid = j < limit && j < j_hi;
    float s = 0;
    const float* qr = Qs + w * hd;
    const float* kr = Ks + lane * ld;
    for (int i = 0; i < hd; i++) s += qr[i] * kr[i];
    s *= a.scale;
    if (MODE == DQ) {
      float dp = 0;
      const float* dr = Ds + w * hd;
      const float* vr = Vs + lane * ld;
      for (int i = 0; i < hd; i++) dp += dr[i] * vr[i];
      const float p = valid ? expf(s - lse) : 0.0f;
      Ps[w * 32 + lane] = p * (dp - Dv) * a.scale;
      __syncwarp();
#pragma unroll
      for (int c = 0; c < kMaxHd / 32; c++) {
        const int i = lane + 32 * c;
        if (i < hd) {
          float sum = 0;
          for (int jj = 0; jj < kTile; jj++) sum += Ps[w * 32 + jj] * Ks[jj * ld + i];
          acc[c] += sum;
        }
      }
      __syncwarp();
    } else {
      s = valid ? s : -INFINITY;
      const float m_new = fmaxf(m, warp_max(s));
      const float p = valid ? expf(s - m_new) : 0.0f;
      const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
      l = l * corr + warp_sum(p);
      m = m_new;
      Ps[w * 32 + lane] = p;
      __syncwarp();
#pragma unroll
      for (int c = 0; c < kMaxHd / 32; c++) {
        const int i = lane + 32 * c;
        if (i < hd) {
          float sum = 0;
          for (int jj = 0; jj < kTile; jj++) sum += Ps[w * 32 + jj] * Vs[jj * ld + i];
          acc[c] = acc[c] * corr + sum;
        }
      }
      __syncwarp();
    }
  }
  if (!active) return;

  if (MODE == FWD) {
    if (gridDim.z == 1) {
      const float inv = 1.0f / l;
#pragma unroll
      for (int c = 0; c < kMaxHd / 32; c++)
        if (lane + 32 * c < hd) a.out[row + lane + 32 * c] = acc[c] * inv;
    } else {
      float* pr = a.part + (((int64_t)split * a.n + t) * a.n_head + h) * (hd + 2);
#pragma unroll
      for (int c = 0; c < kMaxHd / 32; c++)
        if (lane + 32 * c < hd) pr[lane + 32 * c] = acc[c];
      if (lane == 0) pr[hd] = m, pr[hd + 1] = l;
    }
  } else if (MODE == STATS) {
    const float inv = 1.0f / l;
    float d = 0;
#pragma unroll
    for (int c = 0; c < kMaxHd / 32; c++)
      if (lane + 32 * c < hd) d += a.dout[row + lane + 32 * c] * acc[c] * inv;
    d = warp_sum(d);
    if (lane == 0) {
      a.stats[(int64_t)t * a.n_head + h] = m + logf(l);
      a.stats[(int64_t)a.n * a.n_head + (int64_t)t * a.n_head + h] = d;
    }
  } else {
#pragma unroll
    for (int c = 0; c < kMaxHd / 32; c++)
      if (lane + 32 * c < hd) a.dq[row + lane + 32 * c] += acc[c];
  }
}

// Flash-decoding combine: out = Σ_s e^{m_s − M} acc_s / Σ_s e^{m_s − M} l_s. One warp per (t, h).
__global__ void attn_combine_kernel(const float* part, float* out, int n_rows, int n_split, int hd) {
  const int r = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32, lane = threadIdx.x & 31;
  if (r >= n_rows) return;
  const int64_t stride = (int64_t)n_rows * (hd + 2);
  float M = -INFINITY;
  for (int s = 0; s < n_split; s++) M = fmaxf(M, part[s * stride + (int64_t)r * (hd + 2) + hd]);
  float L = 0;
  for (int s = 0; s < n_split; s++) {
    const float* p = part + s * stride + (int64_t)r * (hd + 2);
    if (p[hd] != -INFINITY) L += p[hd + 1] * expf(p[hd] - M);
  }
  const float inv = 1.0f / L;
  for (int i = lane; i < hd; i += 32) {
    float acc = 0;
    for (int s = 0; s < n_split; s++) {
      const float* p = part + s * stride + (int64_t)r * (hd + 2);
      if (p[hd] != -INFINITY) acc += p[i] * expf(p[hd] - M);
    }
    out[(int64_t)r * hd + i] = acc * inv;
  }
}

__global__ void attn_dkv_kernel(const float* q, const float* k, const float* v, const float* dout, const float* stats,
                                float* dk, float* dv, int n, int pos0, int n_head, int n_head_kv, int hd, int group,
                                float scale) {
  extern __shared__ float sm[];
  const int ld = hd + 1, KB = blockDim.x / 32;
  const int w = threadIdx.x / 32, lane = threadIdx.x & 31;
  float* Kw = sm;                  // [KB][hd]
  float* Vw = Kw + KB * hd;        // [KB][hd]
  float* Qs = Vw + KB * hd;        // [32][hd+1]
  float* Os = Qs + 32 * ld;        // [32][hd+1]  dout rows
  float* Ls = Os + 32 * ld;        // [32] lse
  float* Dl = Ls + 32;             // [32] D
  float* Pw = Dl + 32;             // [KB][32]
  float* Sw = Pw + KB * 32;        // [KB][32]
  const int kvh = blockIdx.y;
  const int jb = blockIdx.x * KB, j = jb + w;
  const int n_keys = pos0 + n;
  const bool key_ok = j < n_keys;  // warp-uniform
  const int64_t kv_stride = (int64_t)n_head_kv * hd;
  for (int idx = threadIdx.x; idx < KB * hd; idx += blockDim.x) {
    const int ww = idx / hd, i = idx % hd, jj = jb + ww;
    const bool ok = jj < n_keys;
    Kw[idx] = ok ? k[(int64_t)jj * kv_stride + (int64_t)kvh * hd + i] : 0.0f;
    Vw[idx] = ok ? v[(int64_t)jj * kv_stride + (int64_t)kvh * hd + i] : 0.0f;
  }
  float dka[kMaxHd / 32], dva[kMaxHd / 32];
#pragma unroll
  for (int c = 0; c < kMaxHd / 32; c++) dka[c] = dva[c] = 0.0f;
  const int R = n * group;                          // query rows of this KV head: r = t·group + hh
  const int r_start = max(0, jb - pos0) * group;    // earlier tokens cannot see any key of the block
  for (int r0 = r_start; r0 < R; r0 += 32) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < 32 * hd; idx += blockDim.x) {
      const int rr = idx / hd, i = idx % hd, r = r0 + rr;
      float qv = 0, ov = 0;
      if (r < R) {
        const int64_t off = ((int64_t)(r / group) * n_head + (int64_t)kvh * group + r % group) * hd + i;
        qv = q[off];
        ov = dout[off];
      }
      Qs[rr * ld + i] = qv;
      Os[rr * ld + i] = ov;
    }
    if (threadIdx.x < 32) {
      const int r = r0 + threadIdx.x;
      float lv = INFINITY, dvv = 0;
      if (r < R) {
        const int64_t sr = (int64_t)(r / group) * n_head + (int64_t)kvh * group + r % group;
        lv = stats[sr];
        dvv = stats[(int64_t)n * n_head + sr];
      }
      Ls[threadIdx.x] = lv;
      Dl[threadIdx.x] = dvv;
    }
    __syncthreads();
    if (!key_ok) continue;
    const int r = r0 + lane;
    const bool vis = r < R && j <= pos0 + r / group;
    float s = 0, dp = 0;
    const float* qr = Qs + lane * ld;
    const float* orow = Os + lane * ld;
    const float* kr = Kw + w * hd;
    const float* vr = Vw + w * hd;
    for (int i = 0; i < hd; i++) {
      s += qr[i] * kr[i];
      dp += orow[i] * vr[i];
    }
    const float p = vis ? expf(s * scale - Ls[lane]) : 0.0f;
    Pw[w * 32 + lane] = p;
    Sw[w * 32 + lane] = p * (dp - Dl[lane]) * scale;
    __syncwarp();
#pragma unroll
    for (int c = 0; c < kMaxHd / 32; c++) {
      const int i = lane + 32 * c;
      if (i < hd) {
        float sv = 0, sk = 0;
        for (int rr = 0; rr < 32; rr++) {
          sv += Pw[w * 32 + rr] * Os[rr * ld + i];
          sk += Sw[w * 32 + rr] * Qs[rr * ld + i];
        }
        dva[c] += sv;
        dka[c] += sk;
      }
    }
    __syncwarp();
  }
  if (!key_ok) return;
  const int64_t base = (int64_t)j * kv_stride + (int64_t)kvh * hd;
#pragma unroll
  for (int c = 0; c < kMaxHd / 32; c++) {
    const int i = lane + 32 * c;
    if (i < hd) {
      if (dk) dk[base + i] += dka[c];
      if (dv) dv[base + i] += dva[c];
    }
  }
}

struct Plan {
  int group, hg, n_hsub, tq, warps;
  unsigned gx;
};

Plan plan_rows(int64_t n, int64_t n_head, int64_t n_head_kv, int64_t hd) {
  if (n_head_kv <= 0 || n_head % n_head_kv != 0)
    throw Error("cuda attention: n_head (" + std::to_string(n_head) + ") must be a multiple of n_head_kv (" +
                std::to_string(n_head_kv) + ")");
  if (hd <= 0 || hd > kMaxHd) throw Error("cuda attention: head_dim must be 1.." + std::to_string(kMaxHd));
  if (n + 1 >= (1LL << 31) || n_head * n >= (1LL << 31)) throw Error("cuda attention: too many tokens");
  Plan p;
  p.group = (int)(n_head / n_head_kv);
  p.hg = std::min(p.group, kMaxWarps);
  p.n_hsub = (p.group + p.hg - 1) / p.hg;
  p.tq = (int)std::max<int64_t>(1, std::min<int64_t>(kMaxWarps / p.hg, n));
  p.warps = p.tq * p.hg;
  p.gx = (unsigned)(((n + p.tq - 1) / p.tq) * p.n_hsub);
  return p;
}

template <typename Kern>
void set_smem(Kern kernel, size_t bytes) {
  if (bytes > 48 * 1024) CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

size_t rows_smem(int hd, int warps, bool dq) {
  return sizeof(float) * ((size_t)2 * kTile * (hd + 1) + (size_t)warps * hd * (dq ? 2 : 1) + (size_t)warps * 32);
}

template <typename KV, int MODE>
void launch_rows(const Plan& p, const RowsArgs& a, int n_split, cudaStream_t s) {
  const size_t smem = rows_smem(a.hd, p.warps, MODE == DQ);
  auto kern = attn_rows_kernel<KV, MODE>;
  set_smem(kern, smem);
  kern<<<dim3(p.gx, (unsigned)a.n_head_kv, (unsigned)n_split), p.warps * 32, smem, s>>>(a);
  CUDA_CHECK_LAUNCH("attn_rows_kernel");
}

}  // namespace

void attention(Context& ctx, const float* q, const void* k, const void* v, DType kv_type, float* out, int64_t n,
               int64_t pos0, int64_t n_head, int64_t n_head_kv, int64_t hd) {
  if (kv_type != DType::F32 && kv_type != DType::F16)
    throw Error(std::string("cuda attention: the KV cache must be F32 or F16, not ") + dtype_name(kv_type));
  if (n <= 0) return;
  const Plan p = plan_rows(n, n_head, n_head_kv, hd);
  const int64_t n_keys = pos0 + n;
  if (n_keys >= (1LL << 31)) throw Error("cuda attention: context too long");
  // Split the keys over blocks when the grid alone would leave SMs idle (decode).
  const int64_t blocks = (int64_t)p.gx * n_head_kv;
  const int64_t want = 2LL * ctx.props().multiProcessorCount;
  int n_split = 1;
  int64_t kps = ((n_keys + kTile - 1) / kTile) * kTile;
  if (blocks < want && n_keys > 512) {
    int64_t ns = std::min<int64_t>({(n_keys + 255) / 256, (want + blocks - 1) / blocks, 1024});
    kps = (((n_keys + ns - 1) / ns + kTile - 1) / kTile) * kTile;
    n_split = (int)((n_keys + kps - 1) / kps);
  }
  RowsArgs a{};
  a.q = q, a.k = k, a.v = v, a.out = out;
  a.n = (int)n, a.pos0 = (int)pos0, a.n_head = (int)n_head, a.n_head_kv = (int)n_head_kv, a.hd = (int)hd;
  a.group = p.group, a.hg = p.hg, a.n_hsub = p.n_hsub, a.tq = p.tq, a.kps = (int)kps;
  a.scale = 1.0f / std::sqrt((float)hd);
  if (n_split > 1)
    a.part = (float*)ctx.workspace(sizeof(float) * (size_t)n_split * (size_t)n * (size_t)n_head * (size_t)(hd + 2));
  if (kv_type == DType::F16) launch_rows<__half, FWD>(p, a, n_split, ctx.stream());
  else launch_rows<float, FWD>(p, a, n_split, ctx.stream());
  if (n_split > 1) {
    const int rows = (int)(n * n_head);
    attn_combine_kernel<<<(unsigned)((rows + 3) / 4), 128, 0, ctx.stream()>>>(a.part, out, rows, n_split, (int)hd);
    CUDA_CHECK_LAUNCH("attn_combine_kernel");
  }
}

void attention_backward(Context& ctx, const float* dout, const float* q, const float* k, const float* v, float* dq,
                        float* dk, float* dv, int64_t n, int64_t pos0, int64_t n_head, int64_t n_head_kv,
                        int64_t hd) {
  if (n <= 0) return;
  const Plan p = plan_rows(n, n_head, n_head_kv, hd);
  const int64_t n_keys = pos0 + n;
  RowsArgs a{};
  a.q = q, a.k = k, a.v = v, a.dout = dout, a.dq = dq;
  a.n = (int)n, a.pos0 = (int)pos0, a.n_head = (int)n_head, a.n_head_kv = (int)n_head_kv, a.hd = (int)hd;
  a.group = p.group, a.hg = p.hg, a.n_hsub = p.n_hsub, a.tq = p.tq;
  a.kps = (int)(((n_keys + kTile - 1) / kTile) * kTile);
  a.scale = 1.0f / std::sqrt((float)hd);
  a.stats = (float*)ctx.workspace(sizeof(float) * 2 * (size_t)n * (size_t)n_head);
  cudaStream_t s = ctx.stream();
  launch_rows<float, STATS>(p, a, 1, s);
  if (dq) launch_rows<float, DQ>(p, a, 1, s);
  if (dk || dv) {
    const size_t smem = sizeof(float) * ((size_t)2 * kDkvWarps * hd + (size_t)2 * 32 * (hd + 1) + 64 +
                                         (size_t)2 * kDkvWarps * 32);
    set_smem(attn_dkv_kernel, smem);
    const unsigned gx = (unsigned)((n_keys + kDkvWarps - 1) / kDkvWarps);
    attn_dkv_kernel<<<dim3(gx, (unsigned)n_head_kv), kDkvWarps * 32, smem, s>>>(
        q, k, v, dout, a.stats, dk, dv, (int)n, (int)pos0, (int)n_head, (int)n_head_kv, (int)hd, p.group, a.scale);
    CUDA_CHECK_LAUNCH("attn_dkv_kernel");
  }
}

}  // namespace engine::cuda
