// GPU benchmark: SpQR kernels against cuBLAS F16 on 7B-shaped layers, and a
// synthetic dim-2048 model (8 blocks, ffn 5632, 32 heads, 4 KV heads, as
// bench/run.sh's CPU model) composed from the cuda/ ops: one decode step and a
// 128-token prefill, SpQR w3 against F16. Prints ratios measured in this run;
// no verdicts. Exits 0 with a message when there is no CUDA device.
//
//   cuda_bench [--reps N] [--quick]
//
// Layers are random packed SpQR layers (w3, groupsize 16, 3-bit statistics, ~1%
// outliers; tests/gpu/random_spqr.h), not quantized weights: the kernels' speed
// does not depend on the values. Every layer is replicated in device memory until
// the copies exceed 4× the L2 cache, and consecutive calls rotate through them,
// so the weights come from HBM as they would in a real model.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "cuda/device.h"
#include "cuda/ops.h"
#include "cuda/spqr.h"
#include "tests/gpu/random_spqr.h"

using namespace engine;
using namespace engine::cuda;

namespace {

int g_reps = 200;

// Mean time of fn() in microseconds over g_reps calls (after warm-up), CUDA events on the stream.
double time_us(Context& ctx, const std::function<void(int)>& fn, int reps = -1) {
  if (reps < 0) reps = g_reps;
  for (int i = 0; i < std::min(reps, 10); i++) fn(i);
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  CUDA_CHECK(cudaEventRecord(a, ctx.stream()));
  for (int i = 0; i < reps; i++) fn(i);
  CUDA_CHECK(cudaEventRecord(b, ctx.stream()));
  CUDA_CHECK(cudaEventSynchronize(b));
  float ms = 0;
  CUDA_CHECK(cudaEventElapsedTime(&ms, a, b));
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  return 1000.0 * ms / reps;
}

// Device-to-device copy bandwidth (bytes read + written per second), 1 GiB buffers.
double copy_bandwidth(Context& ctx) {
  const size_t bytes = (size_t)1 << 30;
  DeviceBuffer a(bytes), b(bytes);
  CUDA_CHECK(cudaMemsetAsync(a.get(), 1, bytes, ctx.stream()));
  const double us = time_us(ctx, [&](int) {
    CUDA_CHECK(cudaMemcpyAsync(b.get(), a.get(), bytes, cudaMemcpyDeviceToDevice, ctx.stream()));
  }, 20);
  return 2.0 * (double)bytes / (us * 1e-6);
}

std::vector<uint16_t> random_f16(size_t n, std::mt19937_64& rng, float scale) {
  std::normal_distribution<float> N(0.0f, scale);
  std::vector<uint16_t> v(n);
  for (auto& h : v) h = f32_to_f16(N(rng));
  return v;
}

DeviceBuffer random_f32_dev(size_t n, std::mt19937_64& rng) {
  std::normal_distribution<float> N(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v) x = N(rng);
  return upload(v);
}

size_t copies_for(Context& ctx, size_t bytes) {
  const size_t l2 = (size_t)std::max(ctx.props().l2CacheSize, 1 << 20);
  return std::max<size_t>(2, (4 * l2 + bytes - 1) / bytes);
}

SpqrParams w3() { return SpqrParams{3, 16, 3, 16}; }

// Y = X·Wᵀ with f16 X and W, f32 Y: what cuda::linear does after converting X.
void f16_gemm(Context& ctx, const void* W, int64_t rows, int64_t cols, const void* xh, int64_t n, float* y) {
  const float one = 1.0f, zero = 0.0f;
  CUBLAS_CHECK(cublasGemmEx(ctx.blas(), CUBLAS_OP_T, CUBLAS_OP_N, (int)rows, (int)n, (int)cols, &one, W, CUDA_R_16F,
                            (int)cols, xh, CUDA_R_16F, (int)cols, &zero, y, CUDA_R_32F, (int)rows, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

void layer_bench(Context& ctx, double copy_bw, bool quick) {
  std::mt19937_64 rng(1234);
  std::printf("\nSpQR w3 (groupsize 16, 3-bit stats, ~1%% outliers) vs cuBLAS F16, one token (GEMV) and 128 (GEMM)\n");
  std::printf("%-12s %9s %9s %8s %10s %7s %10s %7s %10s %10s %8s\n", "rows x cols", "spqr_us", "f16_us", "speedup",
              "spqr_GB/s", "%copy", "f16_GB/s", "%copy", "spqr128_us", "f16_128_us", "ratio");
  const std::pair<int64_t, int64_t> shapes[] = {{4096, 4096}, {11008, 4096}, {4096, 11008}};
  for (auto [rows, cols] : shapes) {
    const SpqrLayer L = testing_gpu::random_spqr(rows, cols, w3(), 0.01, rng());
    std::vector<DeviceSpqr> S;
    S.push_back(DeviceSpqr::upload(L));
    const size_t sb = S[0].packed_bytes();
    for (size_t i = 1; i < (quick ? 2 : copies_for(ctx, sb)); i++) S.push_back(DeviceSpqr::upload(L));
    const std::vector<uint16_t> wh = random_f16((size_t)(rows * cols), rng, 0.02f);
    const size_t fb = wh.size() * 2;
    std::vector<DeviceBuffer> F;
    for (size_t i = 0; i < (quick ? 2 : copies_for(ctx, fb)); i++) F.push_back(upload(wh));
    const int64_t nmax = 128;
    DeviceBuffer x = random_f32_dev((size_t)(nmax * cols), rng), xh((size_t)(nmax * cols) * 2),
                 y((size_t)(nmax * rows) * 4);
    convert_f32(x.as<float>(), xh.get(), DType::F16, nmax * cols, ctx.stream());
    const double t_s = time_us(ctx, [&](int i) { spqr_linear(ctx, S[i % S.size()], x.as<float>(), 1, y.as<float>()); });
    std::vector<float> check = download<float>(y.get(), (size_t)rows);
    bool finite = std::all_of(check.begin(), check.end(), [](float v) { return std::isfinite(v); });
    const double t_f = time_us(ctx, [&](int i) { f16_gemm(ctx, F[i % F.size()].get(), rows, cols, xh.get(), 1, y.as<float>()); });
    const int reps_g = std::max(10, g_reps / 10);
    const double t_s128 = time_us(ctx, [&](int i) { spqr_linear(ctx, S[i % S.size()], x.as<float>(), nmax, y.as<float>()); }, reps_g);
    const double t_f128 = time_us(ctx, [&](int i) { f16_gemm(ctx, F[i % F.size()].get(), rows, cols, xh.get(), nmax, y.as<float>()); }, reps_g);
    const double bs = (double)sb / (t_s * 1e-6), bf = (double)fb / (t_f * 1e-6);
    char name[32];
    std::snprintf(name, sizeof name, "%ldx%ld", (long)rows, (long)cols);
    std::printf("%-12s %9.2f %9.2f %7.2fx %10.1f %6.1f%% %10.1f %6.1f%% %10.1f %10.1f %7.2fx%s\n", name, t_s, t_f,
                t_f / t_s, bs / 1e9, 100.0 * bs / copy_bw, bf / 1e9, 100.0 * bf / copy_bw, t_s128, t_f128,
                t_f128 / t_s128, finite ? "" : "  (NON-FINITE OUTPUT)");
  }
  std::printf("(speedup = f16_us / spqr_us; %%copy = achieved bytes/s over the measured copy bandwidth; SpQR bytes are\n"
              " the packed layer: codes, stats, second-level stats, perm, row pointers, outliers; spqr_us includes the\n"
              " activation gather kernel; 128-token columns: spqr_gemm (f32 SIMT tiles) vs cuBLAS F16 tensor cores)\n");
}

// ---- synthetic dim-2048 model composed from the cuda ops ---------------------------------

struct Lin {
  std::unique_ptr<DeviceSpqr> s;
  DeviceBuffer f;
  DenseWeight w;
  size_t bytes = 0;
  void apply(Context& ctx, const float* x, int64_t n, float* y) const {
    if (s) spqr_linear(ctx, *s, x, n, y);
    else linear(ctx, w, x, n, y);
  }
};

Lin make_lin(int64_t rows, int64_t cols, bool spqr, std::mt19937_64& rng) {
  Lin l;
  if (spqr) {
    l.s = std::make_unique<DeviceSpqr>(DeviceSpqr::upload(testing_gpu::random_spqr(rows, cols, w3(), 0.01, rng())));
    l.bytes = l.s->packed_bytes();
  } else {
    l.f = upload(random_f16((size_t)(rows * cols), rng, 0.02f));
    l.w = DenseWeight{DType::F16, rows, cols, l.f.get()};
    l.bytes = (size_t)(rows * cols * 2);
  }
  return l;
}

struct Block {
  DeviceBuffer attn_norm, ffn_norm;
  Lin q, k, v, o, gate, up, down;
};

void model_bench(Context& ctx, double copy_bw, bool quick) {
  const int64_t d = 2048, ff = 5632, n_layer = quick ? 2 : 8, n_head = 32, n_kv = 4, hd = 64, ctx_len = 1024;
  const int64_t kvd = n_kv * hd, prefill = 128, past = 512;
  std::printf("\nsynthetic model: dim %ld, ffn %ld, %ld blocks, %ld heads / %ld KV heads, F16 KV cache; composed from the\n"
              "cuda ops (rmsnorm, linears, rope, attention, swiglu, adds), not through LlamaModel\n",
              (long)d, (long)ff, (long)n_layer, (long)n_head, (long)n_kv);
  std::printf("%-6s %12s %12s %10s %8s %14s\n", "format", "decode_ms", "decode_tok/s", "GB/s", "%copy", "prefill_tok/s");
  double dec_ms[2] = {0, 0};
  for (int fmt = 0; fmt < 2; fmt++) {
    const bool spqr = fmt == 0;
    std::mt19937_64 rng(99);
    std::vector<Block> blocks((size_t)n_layer);
    size_t wbytes = 0;
    for (auto& b : blocks) {
      std::vector<float> ones((size_t)d, 1.0f);
      b.attn_norm = upload(ones);
      b.ffn_norm = upload(ones);
      b.q = make_lin(n_head * hd, d, spqr, rng);
      b.k = make_lin(kvd, d, spqr, rng);
      b.v = make_lin(kvd, d, spqr, rng);
      b.o = make_lin(d, n_head * hd, spqr, rng);
      b.gate = make_lin(ff, d, spqr, rng);
      b.up = make_lin(ff, d, spqr, rng);
      b.down = make_lin(d, ff, spqr, rng);
      for (const Lin* l : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.up, &b.down}) wbytes += l->bytes;
    }
    DevicePool pool((size_t)n_layer * ctx_len * kvd * 2 * 2 + ((size_t)prefill * (4 * d + 3 * ff) * 4) + (64u << 20),
                    "bench pool");
    std::vector<uint16_t*> kc, vc;
    for (int64_t l = 0; l < n_layer; l++) {
      kc.push_back(pool.alloc_n<uint16_t>((size_t)(ctx_len * kvd)));
      vc.push_back(pool.alloc_n<uint16_t>((size_t)(ctx_len * kvd)));
      CUDA_CHECK(cudaMemsetAsync(kc.back(), 0, (size_t)(ctx_len * kvd) * 2, ctx.stream()));
      CUDA_CHECK(cudaMemsetAsync(vc.back(), 0, (size_t)(ctx_len * kvd) * 2, ctx.stream()));
    }
    float* x = pool.alloc_n<float>((size_t)(prefill * d));
    float* h = pool.alloc_n<float>((size_t)(prefill * d));
    float* q = pool.alloc_n<float>((size_t)(prefill * d));
    float* k = pool.alloc_n<float>((size_t)(prefill * kvd));
    float* v = pool.alloc_n<float>((size_t)(prefill * kvd));
    float* att = pool.alloc_n<float>((size_t)(prefill * d));
    float* g = pool.alloc_n<float>((size_t)(prefill * ff));
    float* u = pool.alloc_n<float>((size_t)(prefill * ff));
    int32_t* pos = pool.alloc_n<int32_t>((size_t)ctx_len);
    std::vector<int32_t> hp((size_t)ctx_len);
    for (int64_t i = 0; i < ctx_len; i++) hp[i] = (int32_t)i;
    to_device(pos, hp.data(), hp.size() * 4);
    {
      std::mt19937_64 r2(5);
      DeviceBuffer xi = random_f32_dev((size_t)(prefill * d), r2);
      CUDA_CHECK(cudaMemcpyAsync(x, xi.get(), xi.bytes(), cudaMemcpyDeviceToDevice, ctx.stream()));
      ctx.sync();
    }
    cudaStream_t s = ctx.stream();
    auto step = [&](int64_t n, int64_t pos0) {
      for (int64_t l = 0; l < n_layer; l++) {
        const Block& b = blocks[l];
        rmsnorm(x, b.attn_norm.as<float>(), h, n, d, 1e-5f, s);
        b.q.apply(ctx, h, n, q);
        b.k.apply(ctx, h, n, k);
        b.v.apply(ctx, h, n, v);
        rope(q, n, n_head, hd, hd, pos + pos0, 10000.0f, RopeLayout::Adjacent, s);
        rope(k, n, n_kv, hd, hd, pos + pos0, 10000.0f, RopeLayout::Adjacent, s);
        convert_f32(k, kc[l] + pos0 * kvd, DType::F16, n * kvd, s);
        convert_f32(v, vc[l] + pos0 * kvd, DType::F16, n * kvd, s);
        attention(ctx, q, kc[l], vc[l], DType::F16, att, n, pos0, n_head, n_kv, hd);
        b.o.apply(ctx, att, n, h);
        add_inplace(x, h, n * d, s);
        rmsnorm(x, b.ffn_norm.as<float>(), h, n, d, 1e-5f, s);
        b.gate.apply(ctx, h, n, g);
        b.up.apply(ctx, h, n, u);
        swiglu(g, u, g, n * ff, s);
        b.down.apply(ctx, g, n, h);
        add_inplace(x, h, n * d, s);
      }
    };
    // x grows without bound over many steps (random weights, no final norm): renormalise each step.
    auto renorm = [&](int64_t n) {
      rmsnorm(x, blocks[0].attn_norm.as<float>(), x, n, d, 1e-5f, s);
    };
    const int reps = quick ? 5 : 50;
    const double dec_us = time_us(ctx, [&](int) { step(1, past); renorm(1); }, reps);
    const double pre_us = time_us(ctx, [&](int) { step(prefill, 0); renorm(prefill); }, std::max(3, reps / 10));
    std::vector<float> xo = download<float>(x, (size_t)d);
    const bool finite = std::all_of(xo.begin(), xo.end(), [](float f) { return std::isfinite(f); });
    dec_ms[fmt] = dec_us / 1000.0;
    const double gbs = (double)wbytes / (dec_us * 1e-6);
    std::printf("%-6s %12.3f %12.1f %10.1f %7.1f%% %14.0f%s\n", spqr ? "spqr3" : "f16", dec_us / 1000.0,
                1e6 / dec_us, gbs / 1e9, 100.0 * gbs / copy_bw, prefill * 1e6 / pre_us,
                finite ? "" : "  (NON-FINITE OUTPUT)");
  }
  std::printf("decode step: F16 / SpQR time = %.2fx (weights only in the GB/s column; context %ld tokens)\n",
              dec_ms[1] / dec_ms[0], (long)past);
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; i++) {
    if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) g_reps = std::max(1, std::atoi(argv[++i]));
    else {
      std::fprintf(stderr, "usage: cuda_bench [--reps N] [--quick]\n");
      return 1;
    }
  }
  if (device_count() == 0) {
    std::printf("cuda_bench: skipped: %s\n", device_summary().c_str());
    return 0;
  }
  try {
    Context ctx(0);
    const cudaDeviceProp& p = ctx.props();
    std::printf("device: %s, sm_%d%d, %d SMs, %.0f GiB, L2 %.0f MiB\n", p.name, p.major, p.minor,
                p.multiProcessorCount, (double)p.totalGlobalMem / (1 << 30), (double)p.l2CacheSize / (1 << 20));
    const double bw = copy_bandwidth(ctx);
    std::printf("copy bandwidth (cudaMemcpy device to device, read + write): %.1f GB/s\n", bw / 1e9);
    layer_bench(ctx, bw, quick);
    model_bench(ctx, bw, quick);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
