// Attention kernels against cpu::attention / cpu::attention_backward on random
// inputs (fresh each run), outputs poisoned with NaN; the backward also against
// central differences of a double-precision attention for small shapes.
//
// Shapes cover: MHA and GQA groups (1, 2, 4, 32 > 16 warps per block), prefill
// (n > 1, pos0 0 or not), decode against a long cache (n = 1, the key-split path
// with its combine), head dims 32/64/80/128/256 (80: not a multiple of 32).
// Bounds (max |gpu − cpu| / max |cpu|): F32 cache 2e-5 (online vs two-pass softmax,
// f32); F16 cache 2e-3 (the CPU also rounds the probabilities to f16; the GPU does
// not); backward 1e-4 against the CPU, 2e-4 against finite differences.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "cpu/ops.h"
#include "gpu_test_util.h"

using namespace engine;
using namespace engine::testing_gpu;

namespace {

struct Shape {
  int64_t n, pos0, n_head, n_head_kv, hd;
};
std::string str(const Shape& s) {
  return "n=" + std::to_string(s.n) + " pos0=" + std::to_string(s.pos0) + " heads=" + std::to_string(s.n_head) + "/" +
         std::to_string(s.n_head_kv) + " hd=" + std::to_string(s.hd);
}

}  // namespace

TEST(CudaAttention, ForwardMatchesCpu) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  for (const Shape& s : {Shape{7, 0, 4, 2, 64}, Shape{33, 40, 6, 6, 32}, Shape{1, 1500, 8, 2, 128},
                         Shape{3, 700, 32, 1, 64}, Shape{1, 2100, 4, 4, 256}, Shape{70, 0, 4, 1, 80},
                         Shape{2, 900, 16, 4, 128}, Shape{1, 0, 2, 2, 64}})
    for (DType kv : {DType::F32, DType::F16}) {
      SCOPED_TRACE(str(s) + " kv=" + dtype_name(kv));
      const int64_t n_ctx = s.pos0 + s.n + 3;  // a little unused cache at the end
      const int64_t kvd = s.n_head_kv * s.hd;
      std::vector<float> q = randn((size_t)(s.n * s.n_head * s.hd), rng), kf = randn((size_t)(n_ctx * kvd), rng),
                         vf = randn((size_t)(n_ctx * kvd), rng), out(q.size());
      std::vector<uint8_t> kb = convert_rows(DType::F32, kf.data(), kv, kvd, n_ctx);
      std::vector<uint8_t> vb = convert_rows(DType::F32, vf.data(), kv, kvd, n_ctx);
      cpu::attention(q.data(), kb.data(), vb.data(), kv, out.data(), s.n, s.pos0, s.n_head, s.n_head_kv, s.hd, pool);
      cuda::DeviceBuffer dq = dev(q), dk = cuda::upload(kb), dv = cuda::upload(vb), dout = poisoned(out.size());
      cuda::attention(ctx(), dq.as<float>(), dk.get(), dv.get(), kv, dout.as<float>(), s.n, s.pos0, s.n_head,
                      s.n_head_kv, s.hd);
      EXPECT_CLOSE(host(dout, out.size()), out, kv == DType::F32 ? 2e-5 : 2e-3, "attention");
    }
}

TEST(CudaAttention, BackwardMatchesCpu) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  ThreadPool pool(2);
  for (const Shape& s : {Shape{9, 0, 4, 2, 32}, Shape{5, 37, 4, 1, 64}, Shape{40, 3, 2, 2, 80},
                         Shape{70, 0, 8, 2, 128}, Shape{3, 5, 32, 1, 64}, Shape{4, 0, 2, 1, 256}}) {
    SCOPED_TRACE(str(s));
    const int64_t nk = s.pos0 + s.n, kvd = s.n_head_kv * s.hd, qd = s.n_head * s.hd;
    std::vector<float> q = randn((size_t)(s.n * qd), rng), k = randn((size_t)(nk * kvd), rng),
                       v = randn((size_t)(nk * kvd), rng), g = randn((size_t)(s.n * qd), rng);
    // Accumulate into random starting gradients (backward ops add).
    std::vector<float> gq = randn(q.size(), rng), gk = randn(k.size(), rng), gv = randn(v.size(), rng);
    cuda::DeviceBuffer dq = dev(q), dk = dev(k), dv = dev(v), dg = dev(g), dgq = dev(gq), dgk = dev(gk), dgv = dev(gv);
    cpu::attention_backward(g.data(), q.data(), k.data(), v.data(), gq.data(), gk.data(), gv.data(), s.n, s.pos0,
                            s.n_head, s.n_head_kv, s.hd, pool);
    cuda::attention_backward(ctx(), dg.as<float>(), dq.as<float>(), dk.as<float>(), dv.as<float>(), dgq.as<float>(),
                             dgk.as<float>(), dgv.as<float>(), s.n, s.pos0, s.n_head, s.n_head_kv, s.hd);
    EXPECT_CLOSE(host(dgq, gq.size()), gq, 1e-4, "dq");
    EXPECT_CLOSE(host(dgk, gk.size()), gk, 1e-4, "dk");
    EXPECT_CLOSE(host(dgv, gv.size()), gv, 1e-4, "dv");
  }
}

TEST(CudaAttention, BackwardFiniteDifferences) {
  REQUIRE_CUDA_DEVICE();
  const uint64_t seed = test_seed();
  GPU_SEED_TRACE(seed);
  std::mt19937_64 rng(seed);
  for (const Shape& s : {Shape{4, 0, 2, 1, 8}, Shape{3, 2, 4, 2, 6}, Shape{5, 0, 2, 2, 40}}) {
    SCOPED_TRACE(str(s));
    const int64_t nk = s.pos0 + s.n, kvd = s.n_head_kv * s.hd, qd = s.n_head * s.hd, grp = s.n_head / s.n_head_kv;
    std::vector<float> q = randn((size_t)(s.n * qd), rng), k = randn((size_t)(nk * kvd), rng),
                       v = randn((size_t)(nk * kvd), rng), r = randn((size_t)(s.n * qd), rng);
    std::vector<double> qd_(q.begin(), q.end()), kd(k.begin(), k.end()), vd(v.begin(), v.end());
    auto loss = [&] {
      double L = 0;
      const double scale = 1 / std::sqrt((double)s.hd);
      std::vector<double> p((size_t)nk);
      for (int64_t t = 0; t < s.n; t++)
        for (int64_t h = 0; h < s.n_head; h++) {
          const int64_t kvh = h / grp, keys = s.pos0 + t + 1;
          double mx = -1e300, sum = 0;
          for (int64_t j = 0; j < keys; j++) {
            double dot = 0;
            for (int64_t i = 0; i < s.hd; i++) dot += qd_[(t * s.n_head + h) * s.hd + i] * kd[j * kvd + kvh * s.hd + i];
            p[j] = dot * scale;
            mx = std::max(mx, p[j]);
          }
          for (int64_t j = 0; j < keys; j++) sum += (p[j] = std::exp(p[j] - mx));
          for (int64_t i = 0; i < s.hd; i++) {
            double o = 0;
            for (int64_t j = 0; j < keys; j++) o += p[j] / sum * vd[j * kvd + kvh * s.hd + i];
            L += r[(t * s.n_head + h) * s.hd + i] * o;
          }
        }
      return L;
    };
    auto numeric = [&](std::vector<double>& x) {
      std::vector<double> gr(x.size());
      for (size_t i = 0; i < x.size(); i++) {
        const double x0 = x[i];
        x[i] = x0 + 1e-5;
        const double lp = loss();
        x[i] = x0 - 1e-5;
        const double lm = loss();
        x[i] = x0;
        gr[i] = (lp - lm) / 2e-5;
      }
      return gr;
    };
    const std::vector<double> nq = numeric(qd_), nkk = numeric(kd), nv = numeric(vd);
    cuda::DeviceBuffer dq = dev(q), dk = dev(k), dv = dev(v), dr = dev(r),
                       gq = dev(std::vector<float>(q.size(), 0.0f)), gk = dev(std::vector<float>(k.size(), 0.0f)),
                       gv = dev(std::vector<float>(v.size(), 0.0f));
    cuda::attention_backward(ctx(), dr.as<float>(), dq.as<float>(), dk.as<float>(), dv.as<float>(), gq.as<float>(),
                             gk.as<float>(), gv.as<float>(), s.n, s.pos0, s.n_head, s.n_head_kv, s.hd);
    EXPECT_CLOSE(host(gq, q.size()), nq, 2e-4, "dq vs finite differences");
    EXPECT_CLOSE(host(gk, k.size()), nkk, 2e-4, "dk vs finite differences");
    EXPECT_CLOSE(host(gv, v.size()), nv, 2e-4, "dv vs finite differences");
  }
}
