// SpQR products from the packed form: decode GEMV, prefill/training GEMM and the
// transposed GEMM of the backward pass. See cuda/spqr.h for the scheme.
#include "cuda/spqr.h"

#include <algorithm>
#include <string>
#include <vector>

#include "cuda/common.cuh"

namespace engine::cuda {

using namespace dev;

// ---- upload ---------------------------------------------------------------------------

DeviceSpqr DeviceSpqr::upload(const SpqrLayer& L) {
  L.p.validate();
  if (L.rows <= 0 || L.cols <= 0 || L.rows >= (1LL << 31) || L.cols > 65536)
    throw Error("cuda: SpQR layer shape " + std::to_string(L.rows) + "x" + std::to_string(L.cols) +
                " is outside what the kernels take (cols <= 65536)");
  DeviceSpqr d;
  d.p = L.p;
  d.rows = L.rows, d.cols = L.cols, d.n_groups = L.n_groups, d.group_bytes = L.group_bytes;
  d.n_row_groups = L.n_row_groups;
  d.n_outliers = L.outlier_rowptr[L.rows];
  const size_t nc = (size_t)L.rows * L.n_groups * L.group_bytes, ns = (size_t)L.rows * L.n_groups;
  const size_t ns2 = (size_t)L.n_row_groups * L.n_groups;
  auto up = [](DeviceBuffer& b, const void* src, size_t bytes) {
    b = DeviceBuffer(bytes);
    to_device(b.get(), src, bytes);
  };
  up(d.codes, L.codes, nc);
  up(d.stats, L.stats, ns);
  up(d.stats2, L.stats2, ns2 * sizeof(SpqrStats2));
  up(d.perm, L.perm, (size_t)L.cols * 4);
  up(d.rowptr, L.outlier_rowptr, (size_t)(L.rows + 1) * 4);
  const int64_t no = d.n_outliers;
  // Deltas (value − dequantized code): the loader derives them; a layer built by hand may not have.
  std::vector<float> delta;
  if ((int64_t)L.outlier_delta.size() == no) {
    delta = L.outlier_delta;
  } else {
    delta.resize((size_t)no);
    for (int64_t r = 0; r < L.rows; r++)
      for (int32_t k = L.outlier_rowptr[r]; k < L.outlier_rowptr[r + 1]; k++) {
        const int64_t c = L.outliers[k] >> 16, g = c / L.p.groupsize;
        delta[k] = f16_to_f32((uint16_t)(L.outliers[k] & 0xffff)) - L.scale(r, g) * ((float)L.code(r, c) - L.zero(r, g));
      }
  }
  // CSC copy for the transposed product: outliers by stored column, rows ascending.
  std::vector<int32_t> colptr((size_t)L.cols + 1, 0), crow((size_t)no);
  std::vector<float> cdelta((size_t)no);
  for (int64_t k = 0; k < no; k++) colptr[(L.outliers[k] >> 16) + 1]++;
  for (int64_t c = 0; c < L.cols; c++) colptr[c + 1] += colptr[c];
  std::vector<int32_t> fillp(colptr.begin(), colptr.end() - 1);
  for (int64_t r = 0; r < L.rows; r++)
    for (int32_t k = L.outlier_rowptr[r]; k < L.outlier_rowptr[r + 1]; k++) {
      const int32_t at = fillp[L.outliers[k] >> 16]++;
      crow[at] = (int32_t)r;
      cdelta[at] = delta[k];
    }
  if (no) {
    up(d.outliers, L.outliers, (size_t)no * 4);
    d.odelta = cuda::upload(delta);
    d.crow = cuda::upload(crow);
    d.cdelta = cuda::upload(cdelta);
  }
  d.colptr = cuda::upload(colptr);
  return d;
}

SpqrDeviceView DeviceSpqr::view() const {
  SpqrDeviceView v;
  v.codes = codes.as<uint8_t>();
  v.stats = stats.as<uint8_t>();
  v.stats2 = stats2.as<uint16_t>();
  v.perm = perm.as<int32_t>();
  v.rowptr = rowptr.as<int32_t>();
  v.outliers = outliers.as<uint32_t>();
  v.odelta = odelta.as<float>();
  v.colptr = colptr.as<int32_t>();
  v.crow = crow.as<int32_t>();
  v.cdelta = cdelta.as<float>();
  v.rows = (int)rows, v.cols = (int)cols, v.G = (int)n_groups, v.group_bytes = (int)group_bytes;
  v.groupsize = p.groupsize, v.wbits = p.wbits, v.stat_bits = p.stat_bits, v.stat_groupsize = p.stat_groupsize;
  return v;
}

size_t DeviceSpqr::packed_bytes() const {
  return (size_t)rows * n_groups * group_bytes + (size_t)rows * n_groups + (size_t)n_row_groups * n_groups * 8 +
         (size_t)cols * 4 + (size_t)(rows + 1) * 4 + (size_t)n_outliers * 8;
}

// ---- device-side dequantization (docs/spqr-format.md) -----------------------------------

namespace {

struct GroupStats {
  float scale, zero;
};

__device__ __forceinline__ GroupStats group_stats(const SpqrDeviceView& v, int r, int g) {
  const uint16_t* s2 = v.stats2 + ((size_t)(r / v.stat_groupsize) * v.G + g) * 4;
  const float ss = f16_bits_to_f32(__ldg(s2)), zs = f16_bits_to_f32(__ldg(s2 + 2));
  if (v.stat_bits == 16) return {ss, zs};
  const uint8_t b = __ldg(v.stats + (size_t)r * v.G + g);
  return {ss * ((float)(b & 15) - f16_bits_to_f32(__ldg(s2 + 1))), zs * ((float)(b >> 4) - f16_bits_to_f32(__ldg(s2 + 3)))};
}

// The code of stored column c of row r: bits (c % gs)·wbits … of the group's little-endian stream.
__device__ __forceinline__ int code_at(const SpqrDeviceView& v, int r, int c) {
  const int g = c / v.groupsize;
  const uint8_t* gp = v.codes + ((size_t)r * v.G + g) * v.group_bytes;
  const int bit = (c - g * v.groupsize) * v.wbits;
  uint32_t x = __ldg(gp + bit / 8);
  if (bit / 8 + 1 < v.group_bytes) x |= (uint32_t)__ldg(gp + bit / 8 + 1) << 8;
  return (int)((x >> (bit % 8)) & ((1u << v.wbits) - 1));
}

constexpr int kGemvRows = 8;
constexpr int kGemvThreads = 256;

// xp[t][c] = x[t][perm[c]] for stored columns c < cols, 0 for the padding up to ld = G·gs.
__global__ void spqr_gather_kernel(const float* x, const int32_t* perm, float* xp, int cols, int ld, int n) {
  const int64_t total = (int64_t)n * ld;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t t = i / ld;
    const int c = (int)(i - t * ld);
    xp[i] = c < cols ? x[t * cols + perm[c]] : 0.0f;
  }
}

// GEMV: block = 8 rows × all columns. WB > 0: groupsize 16, wbits WB (codes of a group
// are 2·WB bytes, 2-byte aligned). WB == 0: any layout, element by element.
template <int WB, int NT>
__global__ void __launch_bounds__(kGemvThreads) spqr_gemv_kernel(SpqrDeviceView v, const float* xp, int ld, int n,
                                                                 float* y) {
  constexpr int R = kGemvRows;
  const int r0 = blockIdx.x * R;
  const int nr = min(R, v.rows - r0);
  float acc[R][NT];
#pragma unroll
  for (int rr = 0; rr < R; rr++)
#pragma unroll
    for (int t = 0; t < NT; t++) acc[rr][t] = 0.0f;

  if constexpr (WB > 0) {
    constexpr int GB = 2 * WB;
    constexpr uint32_t mask = (1u << WB) - 1;
    for (int g = threadIdx.x; g < v.G; g += blockDim.x) {
      float xs[NT][16], xsum[NT];
#pragma unroll
      for (int t = 0; t < NT; t++) {
        xsum[t] = 0.0f;
        if (t < n) {
          const float4* p = (const float4*)(xp + (size_t)t * ld + (size_t)g * 16);
#pragma unroll
          for (int q = 0; q < 4; q++) {
            const float4 f = __ldg(p + q);
            xs[t][4 * q] = f.x, xs[t][4 * q + 1] = f.y, xs[t][4 * q + 2] = f.z, xs[t][4 * q + 3] = f.w;
            xsum[t] += (f.x + f.y) + (f.z + f.w);
          }
        } else {
#pragma unroll
          for (int j = 0; j < 16; j++) xs[t][j] = 0.0f;
        }
      }
#pragma unroll
      for (int rr = 0; rr < R; rr++) {
        if (rr < nr) {
          const int r = r0 + rr;
          const uint16_t* cp = (const uint16_t*)(v.codes + ((size_t)r * v.G + g) * GB);
          uint64_t bits = 0;
#pragma unroll
          for (int q = 0; q < GB / 2; q++) bits |= (uint64_t)__ldg(cp + q) << (16 * q);
          const GroupStats st = group_stats(v, r, g);
#pragma unroll
          for (int t = 0; t < NT; t++) {
            float dot = 0.0f;
#pragma unroll
            for (int j = 0; j < 16; j++) dot += (float)((uint32_t)(bits >> (j * WB)) & mask) * xs[t][j];
            acc[rr][t] += st.scale * (dot - st.zero * xsum[t]);
          }
        }
      }
    }
  } else {
    for (int c = threadIdx.x; c < v.cols; c += blockDim.x) {
      float xv[NT];
#pragma unroll
      for (int t = 0; t < NT; t++) xv[t] = t < n ? xp[(size_t)t * ld + c] : 0.0f;
      const int g = c / v.groupsize;
#pragma unroll
      for (int rr = 0; rr < R; rr++) {
        if (rr < nr) {
          const GroupStats st = group_stats(v, r0 + rr, g);
          const float w = st.scale * ((float)code_at(v, r0 + rr, c) - st.zero);
#pragma unroll
          for (int t = 0; t < NT; t++) acc[rr][t] += w * xv[t];
        }
      }
    }
  }
  // Outliers: + delta · x at their stored columns.
#pragma unroll
  for (int rr = 0; rr < R; rr++) {
    if (rr < nr) {
      const int r = r0 + rr;
      for (int k = v.rowptr[r] + threadIdx.x; k < v.rowptr[r + 1]; k += blockDim.x) {
        const int c = (int)(v.outliers[k] >> 16);
        const float d = v.odelta[k];
#pragma unroll
        for (int t = 0; t < NT; t++)
          if (t < n) acc[rr][t] += d * xp[(size_t)t * ld + c];
      }
    }
  }
  // Block reduction per (row, token).
  __shared__ float red[kGemvThreads / 32][R * NT];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int rr = 0; rr < R; rr++)
#pragma unroll
    for (int t = 0; t < NT; t++) {
      const float s = warp_sum(acc[rr][t]);
      if (lane == 0) red[warp][rr * NT + t] = s;
    }
  __syncthreads();
  if (threadIdx.x < R * NT) {
    const int rr = threadIdx.x / NT, t = threadIdx.x % NT;
    if (rr < nr && t < n) {
      float s = 0.0f;
      for (int w = 0; w < kGemvThreads / 32; w++) s += red[w][threadIdx.x];
      y[(size_t)t * v.rows + r0 + rr] = s;
    }
  }
}

// ---- GEMM tiles -------------------------------------------------------------------------

constexpr int BM = 64, BN = 64, BK = 32;

// acc[i][j] += Σ_k A[k][4·ia + i] · B[k][4·ib + j]: one thread's 4×4 outputs of a
// BK-deep chunk held in shared memory (the GEMM and the transposed GEMM share it).
__device__ __forceinline__ void tile_fma_4x4(float (&acc)[4][4], const float (*A)[BM + 4], const float (*B)[BN + 4],
                                             int ia, int ib) {
#pragma unroll 8
  for (int k = 0; k < BK; k++) {
    const float4 a = *(const float4*)&A[k][ia * 4];
    const float4 b = *(const float4*)&B[k][ib * 4];
    const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
      for (int j = 0; j < 4; j++) acc[i][j] += av[i] * bv[j];
  }
}

// Y[t][r] = Σ_c W[r][c]·x[t][perm c]: tile of 64 rows (blockIdx.x) × 64 tokens (blockIdx.y).
__global__ void __launch_bounds__(256) spqr_gemm_kernel(SpqrDeviceView v, const float* x, int n, float* y) {
  __shared__ __align__(16) float Ws[BK][BM + 4];  // [stored column in chunk][row]
  __shared__ __align__(16) float Xs[BK][BN + 4];  // [stored column in chunk][token]
  const int tid = threadIdx.x, tr = tid / 16, tt = tid % 16;
  const int rb = blockIdx.x * BM, tb = blockIdx.y * BN;
  const int lr = tid / 4, lc0 = (tid % 4) * 8;  // loaders: one row (token) × 8 consecutive columns
  float acc[4][4] = {};
  for (int c0 = 0; c0 < v.cols; c0 += BK) {
    {
      const int r = rb + lr;
      int gprev = -1;
      GroupStats st{0.0f, 0.0f};
#pragma unroll
      for (int q = 0; q < 8; q++) {
        const int c = c0 + lc0 + q;
        float w = 0.0f;
        if (r < v.rows && c < v.cols) {
          const int g = c / v.groupsize;
          if (g != gprev) st = group_stats(v, r, g), gprev = g;
          w = st.scale * ((float)code_at(v, r, c) - st.zero);
        }
        Ws[lc0 + q][lr] = w;
      }
      const int t = tb + lr;
#pragma unroll
      for (int q = 0; q < 8; q++) {
        const int c = c0 + lc0 + q;
        Xs[lc0 + q][lr] = (t < n && c < v.cols) ? __ldg(x + (size_t)t * v.cols + __ldg(v.perm + c)) : 0.0f;
      }
    }
    __syncthreads();
    tile_fma_4x4(acc, Ws, Xs, tr, tt);
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int r = rb + tr * 4 + i;
    if (r >= v.rows) continue;
    for (int k = v.rowptr[r]; k < v.rowptr[r + 1]; k++) {
      const int oc = v.perm[v.outliers[k] >> 16];
      const float d = v.odelta[k];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int t = tb + tt * 4 + j;
        if (t < n) acc[i][j] += d * x[(size_t)t * v.cols + oc];
      }
    }
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int t = tb + tt * 4 + j;
      if (t < n) y[(size_t)t * v.rows + r] = acc[i][j];
    }
  }
}

// dX[t][perm c] = Σ_r dY[t][r]·W[r][c]: tile of 64 stored columns (blockIdx.x) × 64 tokens.
__global__ void __launch_bounds__(256) spqr_gemm_t_kernel(SpqrDeviceView v, const float* dy, int n, float* dx) {
  __shared__ __align__(16) float Ws[BK][BM + 4];  // [row in chunk][stored column]
  __shared__ __align__(16) float Ds[BK][BN + 4];  // [row in chunk][token]
  const int tid = threadIdx.x, tc = tid / 16, tt = tid % 16;
  const int cb = blockIdx.x * BM, tb = blockIdx.y * BN;
  const int lr = tid / 8, lc0 = (tid % 8) * 8;     // W loader: one row × 8 consecutive stored columns
  const int dr = tid % 32, dt0 = (tid / 32) * 8;   // dY loader: one row × 8 tokens (rows contiguous in a warp)
  float acc[4][4] = {};
  for (int r0 = 0; r0 < v.rows; r0 += BK) {
    {
      const int r = r0 + lr;
      int gprev = -1;
      GroupStats st{0.0f, 0.0f};
#pragma unroll
      for (int q = 0; q < 8; q++) {
        const int c = cb + lc0 + q;
        float w = 0.0f;
        if (r < v.rows && c < v.cols) {
          const int g = c / v.groupsize;
          if (g != gprev) st = group_stats(v, r, g), gprev = g;
          w = st.scale * ((float)code_at(v, r, c) - st.zero);
        }
        Ws[lr][lc0 + q] = w;
      }
      const int rd = r0 + dr;
#pragma unroll
      for (int q = 0; q < 8; q++) {
        const int t = tb + dt0 + q;
        Ds[dr][dt0 + q] = (t < n && rd < v.rows) ? __ldg(dy + (size_t)t * v.rows + rd) : 0.0f;
      }
    }
    __syncthreads();
    tile_fma_4x4(acc, Ws, Ds, tc, tt);
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; i++) {
    const int c = cb + tc * 4 + i;
    if (c >= v.cols) continue;
    for (int k = v.colptr[c]; k < v.colptr[c + 1]; k++) {
      const int r = v.crow[k];
      const float d = v.cdelta[k];
#pragma unroll
      for (int j = 0; j < 4; j++) {
        const int t = tb + tt * 4 + j;
        if (t < n) acc[i][j] += d * dy[(size_t)t * v.rows + r];
      }
    }
    const int oc = v.perm[c];
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const int t = tb + tt * 4 + j;
      if (t < n) dx[(size_t)t * v.cols + oc] = acc[i][j];
    }
  }
}

template <int WB>
void launch_gemv(const SpqrDeviceView& v, const float* xp, int ld, int n, float* y, cudaStream_t s) {
  const unsigned blocks = (unsigned)((v.rows + kGemvRows - 1) / kGemvRows);
  if (n == 1) spqr_gemv_kernel<WB, 1><<<blocks, kGemvThreads, 0, s>>>(v, xp, ld, n, y);
  else if (n == 2) spqr_gemv_kernel<WB, 2><<<blocks, kGemvThreads, 0, s>>>(v, xp, ld, n, y);
  else spqr_gemv_kernel<WB, 4><<<blocks, kGemvThreads, 0, s>>>(v, xp, ld, n, y);
  CUDA_CHECK_LAUNCH("spqr_gemv_kernel");
}

void check_n(int64_t n, int64_t rows, int64_t cols) {
  if (n >= (1LL << 31) / std::max<int64_t>(rows, cols) || (n + BN - 1) / BN > 65535)
    throw Error("cuda: too many tokens for a SpQR product (" + std::to_string(n) + ")");
}

}  // namespace

void spqr_gemv(Context& ctx, const DeviceSpqr& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  if (n > 4) throw Error("cuda: spqr_gemv takes at most 4 tokens (got " + std::to_string(n) + ")");
  const SpqrDeviceView v = w.view();
  const int ld = (int)(w.n_groups * w.p.groupsize);
  float* xp = (float*)ctx.workspace(sizeof(float) * (size_t)n * ld);
  const int64_t total = n * ld;
  spqr_gather_kernel<<<(unsigned)std::min<int64_t>((total + 255) / 256, 4096), 256, 0, ctx.stream()>>>(
      x, v.perm, xp, v.cols, ld, (int)n);
  CUDA_CHECK_LAUNCH("spqr_gather_kernel");
  const bool fast = w.p.groupsize == 16 && w.p.wbits >= 2 && w.p.wbits <= 4;
  if (!fast) launch_gemv<0>(v, xp, ld, (int)n, y, ctx.stream());
  else if (w.p.wbits == 2) launch_gemv<2>(v, xp, ld, (int)n, y, ctx.stream());
  else if (w.p.wbits == 3) launch_gemv<3>(v, xp, ld, (int)n, y, ctx.stream());
  else launch_gemv<4>(v, xp, ld, (int)n, y, ctx.stream());
}

void spqr_gemm(Context& ctx, const DeviceSpqr& w, const float* x, int64_t n, float* y) {
  if (n <= 0) return;
  check_n(n, w.rows, w.cols);
  const dim3 grid((unsigned)((w.rows + BM - 1) / BM), (unsigned)((n + BN - 1) / BN));
  spqr_gemm_kernel<<<grid, 256, 0, ctx.stream()>>>(w.view(), x, (int)n, y);
  CUDA_CHECK_LAUNCH("spqr_gemm_kernel");
}

void spqr_linear(Context& ctx, const DeviceSpqr& w, const float* x, int64_t n, float* y) {
  if (n <= 4) spqr_gemv(ctx, w, x, n, y);
  else spqr_gemm(ctx, w, x, n, y);
}

void spqr_linear_backward_input(Context& ctx, const DeviceSpqr& w, const float* dy, int64_t n, float* dx) {
  if (n <= 0) return;
  check_n(n, w.rows, w.cols);
  const dim3 grid((unsigned)((w.cols + BM - 1) / BM), (unsigned)((n + BN - 1) / BN));
  spqr_gemm_t_kernel<<<grid, 256, 0, ctx.stream()>>>(w.view(), dy, (int)n, dx);
  CUDA_CHECK_LAUNCH("spqr_gemm_t_kernel");
}

}  // namespace engine::cuda
