// CUDA kernels of the Llama block ops, forward and backward side by side.
// Shapes and layouts: see cuda/ops.h (they are cpu/ops.h's).
#include "cuda/ops.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "cuda/common.cuh"

namespace engine::cuda {

using namespace dev;

namespace {

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t n, int threads = kThreads) {
  int64_t b = (n + threads - 1) / threads;
  return (unsigned)std::min<int64_t>(std::max<int64_t>(b, 1), 65535LL * 32);
}

inline void require(bool ok, const std::string& what) {
  if (!ok) throw Error("cuda: " + what);
}

}  // namespace

// =====================================================================================
// fill, conversions
// =====================================================================================

__global__ void fill_kernel(float* x, float value, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] = value;
}

void fill(float* x, float value, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  fill_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, value, n);
  CUDA_CHECK_LAUNCH("fill_kernel");
}

__global__ void f32_to_f16_kernel(const float* x, __half* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = __float2half_rn(x[i]);
}
__global__ void f32_to_bf16_kernel(const float* x, __nv_bfloat16* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = __float2bfloat16_rn(x[i]);
}
__global__ void f16_to_f32_kernel(const uint16_t* x, float* y, int64_t n, bool bf16) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = bf16 ? bf16_bits_to_f32(x[i]) : f16_bits_to_f32(x[i]);
}

void convert_f32(const float* x, void* y, DType to, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  if (to == DType::F16) {
    f32_to_f16_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, (__half*)y, n);
    CUDA_CHECK_LAUNCH("f32_to_f16_kernel");
  } else if (to == DType::BF16) {
    f32_to_bf16_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, (__nv_bfloat16*)y, n);
    CUDA_CHECK_LAUNCH("f32_to_bf16_kernel");
  } else if (to == DType::F32) {
    CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * 4, cudaMemcpyDeviceToDevice, s));
  } else {
    throw Error(std::string("cuda: convert_f32 to ") + dtype_name(to) + " is not supported");
  }
}

void convert_to_f32(const void* x, DType from, float* y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  if (from == DType::F16 || from == DType::BF16) {
    f16_to_f32_kernel<<<blocks_for(n), kThreads, 0, s>>>((const uint16_t*)x, y, n, from == DType::BF16);
    CUDA_CHECK_LAUNCH("f16_to_f32_kernel");
  } else if (from == DType::F32) {
    CUDA_CHECK(cudaMemcpyAsync(y, x, (size_t)n * 4, cudaMemcpyDeviceToDevice, s));
  } else {
    throw Error(std::string("cuda: convert_to_f32 from ") + dtype_name(from) + " is not supported");
  }
}

// =====================================================================================
// embedding
//   forward:  out[t][i] = table[tokens[t]][i]         grid (n), threads over i
//   backward: dtable[tokens[t]][i] += dh[t][i]         atomics (tokens repeat)
// =====================================================================================

__global__ void embedding_kernel(const uint8_t* table, int type, size_t row_bytes, const int32_t* tokens, float* out,
                                 int64_t d) {
  const int64_t t = blockIdx.x;
  const uint8_t* row = table + (size_t)tokens[t] * row_bytes;
  float* o = out + t * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float v;
    switch (type) {
      case (int)DType::F32: v = ((const float*)row)[i]; break;
      case (int)DType::F16: v = f16_bits_to_f32(((const uint16_t*)row)[i]); break;
      case (int)DType::BF16: v = bf16_bits_to_f32(((const uint16_t*)row)[i]); break;
      default: {  // Q8_0: 34-byte blocks {fp16 d, int8 q[32]}
        const uint8_t* b = row + (i / 32) * 34;
        const uint16_t dh = (uint16_t)(b[0] | (b[1] << 8));
        v = f16_bits_to_f32(dh) * (float)(int8_t)b[2 + i % 32];
      }
    }
    o[i] = v;
  }
}

void embedding(const void* table, DType type, const int32_t* tokens, float* out, int64_t n, int64_t d,
               cudaStream_t s) {
  require(type == DType::F32 || type == DType::F16 || type == DType::BF16 || type == DType::Q8_0,
          std::string("embedding table type ") + dtype_name(type) + " is not supported");
  require(type != DType::Q8_0 || d % 32 == 0, "Q8_0 embedding rows must be a multiple of 32");
  if (n <= 0) return;
  require(n <= 2147483647LL, "too many tokens");
  embedding_kernel<<<(unsigned)n, kThreads, 0, s>>>((const uint8_t*)table, (int)type, dtype_row_bytes(type, d),
                                                    tokens, out, d);
  CUDA_CHECK_LAUNCH("embedding_kernel");
}

__global__ void embedding_backward_kernel(const int32_t* tokens, const float* dh, float* dtable, int64_t d) {
  const int64_t t = blockIdx.x;
  float* row = dtable + (int64_t)tokens[t] * d;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) atomicAdd(row + i, dh[t * d + i]);
}

void embedding_backward(const int32_t* tokens, const float* dh, float* dtable, int64_t n, int64_t d, cudaStream_t s) {
  if (n <= 0) return;
  embedding_backward_kernel<<<(unsigned)n, kThreads, 0, s>>>(tokens, dh, dtable, d);
  CUDA_CHECK_LAUNCH("embedding_backward_kernel");
}

// =====================================================================================
// rmsnorm: one block (256 threads) per row t of [n][d].
//   forward:  s = 1/sqrt(Σx²/d + eps);  y = x·s·w
//   backward: dx += s·w·dy − (s³/d)·(Σ w·dy·x)·x;   dw += dy·x·s (atomics across rows)
// =====================================================================================

__global__ void rmsnorm_kernel(const float* x, const float* w, float* y, int64_t d, float eps) {
  __shared__ float red[32];
  const float* xr = x + blockIdx.x * d;
  float* yr = y + blockIdx.x * d;
  float ss = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  ss = block_sum(ss, red);
  const float scale = 1.0f / sqrtf(ss / (float)d + eps);
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

void rmsnorm(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps, cudaStream_t s) {
  if (n <= 0) return;
  rmsnorm_kernel<<<(unsigned)n, kThreads, 0, s>>>(x, w, y, d, eps);
  CUDA_CHECK_LAUNCH("rmsnorm_kernel");
}

__global__ void rmsnorm_backward_kernel(const float* dy, const float* x, const float* w, float* dx, float* dw,
                                        int64_t d, float eps) {
  __shared__ float red[32];
  const float* xr = x + blockIdx.x * d;
  const float* dyr = dy + blockIdx.x * d;
  float ss = 0, dot = 0;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    ss += xr[i] * xr[i];
    dot += w[i] * dyr[i] * xr[i];
  }
  ss = block_sum(ss, red);
  dot = block_sum(dot, red);
  const float s = 1.0f / sqrtf(ss / (float)d + eps);
  const float c = s * s * s * dot / (float)d;
  if (dx) {
    float* dxr = dx + blockIdx.x * d;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) dxr[i] += s * w[i] * dyr[i] - c * xr[i];
  }
  if (dw)
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) atomicAdd(dw + i, dyr[i] * xr[i] * s);
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t n, int64_t d,
                      float eps, cudaStream_t s) {
  if (n <= 0 || (!dx && !dw)) return;
  rmsnorm_backward_kernel<<<(unsigned)n, kThreads, 0, s>>>(dy, x, w, dx, dw, d, eps);
  CUDA_CHECK_LAUNCH("rmsnorm_backward_kernel");
}

// =====================================================================================
// rope: one thread per (token t, head h, pair i < n_rot/2) of x [n][n_heads][head_dim].
//   θ = sign · pos[t] · base^(−2i/n_rot)  (double, as the CPU);   sign = −1 is the backward.
//   Adjacent: pair (2i, 2i+1);  NeoX: pair (i, i + n_rot/2).
//   (x0, x1) ← (x0·cos θ − x1·sin θ,  x0·sin θ + x1·cos θ)
// =====================================================================================

__global__ void rope_kernel(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot,
                            const int32_t* pos, double log2_base, bool neox, double sign) {
  const int64_t half = n_rot / 2;
  const int64_t total = n * n_heads * half;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = idx % half, th = idx / half, t = th / n_heads;
    const double theta = sign * (double)pos[t] * exp2(-2.0 * (double)i / (double)n_rot * log2_base);
    double sd, cd;
    sincos(theta, &sd, &cd);
    const float c = (float)cd, sn = (float)sd;
    float* v = x + th * head_dim;
    const int64_t a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    const float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * sn;
    v[b] = x0 * sn + x1 * c;
  }
}

static void rope_launch(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos,
                        float freq_base, RopeLayout layout, double sign, cudaStream_t s) {
  require(n_rot % 2 == 0 && n_rot <= head_dim, "rope: n_rot must be even and <= head_dim");
  const int64_t total = n * n_heads * (n_rot / 2);
  if (total <= 0) return;
  rope_kernel<<<blocks_for(total), kThreads, 0, s>>>(x, n, n_heads, head_dim, n_rot, pos, std::log2((double)freq_base),
                                                     layout == RopeLayout::NeoX, sign);
  CUDA_CHECK_LAUNCH("rope_kernel");
}

void rope(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos, float freq_base,
          RopeLayout layout, cudaStream_t s) {
  rope_launch(x, n, n_heads, head_dim, n_rot, pos, freq_base, layout, 1.0, s);
}

void rope_backward(float* dx, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos,
                   float freq_base, RopeLayout layout, cudaStream_t s) {
  rope_launch(dx, n, n_heads, head_dim, n_rot, pos, freq_base, layout, -1.0, s);
}

// =====================================================================================
// swiglu and the residual add: element-wise, grid-stride.
//   forward:  a = g·σ(g)·u
//   backward: dg += da·u·σ(g)(1 + g(1−σ(g))),  du += da·g·σ(g)
// =====================================================================================

__global__ void swiglu_kernel(const float* g, const float* u, float* a, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    a[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void swiglu(const float* g, const float* u, float* a, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  swiglu_kernel<<<blocks_for(n), kThreads, 0, s>>>(g, u, a, n);
  CUDA_CHECK_LAUNCH("swiglu_kernel");
}

__global__ void swiglu_backward_kernel(const float* da, const float* g, const float* u, float* dg, float* du,
                                       int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float sig = 1.0f / (1.0f + expf(-g[i]));
    if (dg) dg[i] += da[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    if (du) du[i] += da[i] * g[i] * sig;
  }
}

void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du, int64_t n,
                     cudaStream_t s) {
  if (n <= 0 || (!dg && !du)) return;
  swiglu_backward_kernel<<<blocks_for(n), kThreads, 0, s>>>(da, g, u, dg, du, n);
  CUDA_CHECK_LAUNCH("swiglu_backward_kernel");
}

__global__ void add_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] += y[i];
}

void add_inplace(float* x, const float* y, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  add_kernel<<<blocks_for(n), kThreads, 0, s>>>(x, y, n);
  CUDA_CHECK_LAUNCH("add_kernel");
}

// =====================================================================================
// dense linears through cuBLAS (column-major API on row-major data):
//   Y[n][rows] = X[n][cols]·Wᵀ   ⇔ (col-major) Yᵀ(rows×n) = op_T(W: cols×rows) · Xᵀ(cols×n)
//   dX[n][cols] = dY[n][rows]·W  ⇔ dXᵀ(cols×n) = W(cols×rows) · dYᵀ(rows×n)
//   dW[rows][cols] += s·dYᵀ·X    ⇔ dWᵀ(cols×rows) += s · Xᵀ(cols×n) · op_T(dYᵀ: rows×n)
// =====================================================================================

namespace {
cudaDataType_t blas_type(DType t) {
  switch (t) {
    case DType::F32: return CUDA_R_32F;
    case DType::F16: return CUDA_R_16F;
    case DType::BF16: return CUDA_R_16BF;
    default: throw Error(std::string("cuda: dense linears take F32, F16 or BF16 weights, not ") + dtype_name(t));
  }
}
// The activations in the weight's type (a workspace copy), or as they are for F32.
const void* activations_as(Context& ctx, DType t, const float* x, int64_t count) {
  if (t == DType::F32) return x;
  void* buf = ctx.workspace((size_t)count * 2);
  convert_f32(x, buf, t, count, ctx.stream());
  return buf;
}
}  // namespace

void linear(Context& ctx, const DenseWeight& w, const float* x, int64_t n, float* y) {
  const cudaDataType_t ty = blas_type(w.type);
  if (n <= 0 || w.rows <= 0) return;
  require(w.rows < (1LL << 31) && w.cols < (1LL << 31) && n < (1LL << 31), "linear: shape too large for cuBLAS");
  const void* xb = activations_as(ctx, w.type, x, n * w.cols);
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasGemmEx(ctx.blas(), CUBLAS_OP_T, CUBLAS_OP_N, (int)w.rows, (int)n, (int)w.cols, &one, w.data, ty,
                            (int)w.cols, xb, ty, (int)w.cols, &zero, y, CUDA_R_32F, (int)w.rows, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

void linear_backward_input(Context& ctx, const DenseWeight& w, const float* dy, int64_t n, float* dx) {
  const cudaDataType_t ty = blas_type(w.type);
  if (n <= 0 || w.cols <= 0) return;
  require(w.rows < (1LL << 31) && w.cols < (1LL << 31) && n < (1LL << 31), "linear: shape too large for cuBLAS");
  const void* db = activations_as(ctx, w.type, dy, n * w.rows);
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasGemmEx(ctx.blas(), CUBLAS_OP_N, CUBLAS_OP_N, (int)w.cols, (int)n, (int)w.rows, &one, w.data, ty,
                            (int)w.cols, db, ty, (int)w.rows, &zero, dx, CUDA_R_32F, (int)w.cols, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

void linear_backward_weight(Context& ctx, const float* dy, const float* x, float* dw, int64_t n, int64_t rows,
                            int64_t cols, float scale) {
  if (n <= 0 || rows <= 0 || cols <= 0) return;
  const float one = 1.0f;
  CUBLAS_CHECK(cublasSgemm(ctx.blas(), CUBLAS_OP_N, CUBLAS_OP_T, (int)cols, (int)rows, (int)n, &scale, x, (int)cols,
                           dy, (int)rows, &one, dw, (int)cols));
}

}  // namespace engine::cuda
