// Shared helpers of the GPU tests: skip without a device, one CUDA context, a seed
// fresh each run (printed; ENGINE_GPU_TEST_SEED=N repeats a run), device buffers,
// NaN poisoning and error measures.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cuda/device.h"
#include "cuda/ops.h"

namespace engine::testing_gpu {

// Every GPU test starts with this: a clean skip (reported as skipped by ctest) without a device.
#define REQUIRE_CUDA_DEVICE()                                                                  \
  do {                                                                                         \
    if (::engine::cuda::device_count() == 0)                                                   \
      GTEST_SKIP() << "skipped: " << ::engine::cuda::device_summary();                         \
  } while (0)

inline cuda::Context& ctx() {
  static std::unique_ptr<cuda::Context> c;
  if (!c) {
    c = std::make_unique<cuda::Context>(0);
    std::fprintf(stderr, "[gpu] %s\n", cuda::device_summary().c_str());
  }
  return *c;
}

// The run's base seed: ENGINE_GPU_TEST_SEED when set, else the clock. Printed once.
inline uint64_t base_seed() {
  static const uint64_t s = [] {
    const char* e = std::getenv("ENGINE_GPU_TEST_SEED");
    uint64_t v = e && *e ? std::strtoull(e, nullptr, 10)
                         : (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count() % 1000000007ULL;
    std::fprintf(stderr, "[gpu] random seed %llu (ENGINE_GPU_TEST_SEED=%llu repeats this run)\n",
                 (unsigned long long)v, (unsigned long long)v);
    return v;
  }();
  return s;
}
// A per-test seed (base seed mixed with the test's name), also put in failure messages.
inline uint64_t test_seed() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  uint64_t h = base_seed() * 0x9E3779B97F4A7C15ULL;
  for (const char* p = info ? info->name() : ""; *p; p++) h = (h ^ (uint8_t)*p) * 0x100000001B3ULL;
  return h;
}
#define GPU_SEED_TRACE(seed) SCOPED_TRACE("base seed " + std::to_string(::engine::testing_gpu::base_seed()) + \
                                          ", test seed " + std::to_string(seed))

inline std::vector<float> randn(size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> N(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = N(rng);
  return v;
}

inline cuda::DeviceBuffer dev(const std::vector<float>& v) { return cuda::upload(v); }
inline cuda::DeviceBuffer dev_i32(const std::vector<int32_t>& v) { return cuda::upload(v); }
inline std::vector<float> host(const cuda::DeviceBuffer& b, size_t n) {
  ctx().sync();
  return cuda::download<float>(b.get(), n);
}
// An output buffer of n floats filled with NaN, so a kernel that skips an element fails.
inline cuda::DeviceBuffer poisoned(size_t n) {
  cuda::DeviceBuffer b(n * sizeof(float));
  cuda::fill(b.as<float>(), std::numeric_limits<float>::quiet_NaN(), (int64_t)n, ctx().stream());
  return b;
}

// max |a − b| / max |b|, and whether a has a NaN/Inf (always a failure).
struct Err {
  double rel = 0;
  bool nonfinite = false;
  size_t worst = 0;
};
template <typename B>
Err rel_err(const std::vector<float>& a, const std::vector<B>& b) {
  Err e;
  double num = 0, den = 1e-30;
  for (size_t i = 0; i < b.size(); i++) {
    if (!std::isfinite(a[i])) e.nonfinite = true;
    const double d = std::fabs((double)a[i] - (double)b[i]);
    if (d > num) num = d, e.worst = i;
    den = std::max(den, std::fabs((double)b[i]));
  }
  e.rel = num / den;
  return e;
}
#define EXPECT_CLOSE(got, want, tol, what)                                                            \
  do {                                                                                                \
    const auto e_ = ::engine::testing_gpu::rel_err(got, want);                                        \
    EXPECT_FALSE(e_.nonfinite) << what << ": NaN/Inf in the output (an element not written?)";        \
    EXPECT_LE(e_.rel, tol) << what << ": worst at " << e_.worst << ": " << (got)[e_.worst] << " vs "  \
                           << (want)[e_.worst];                                                       \
  } while (0)

}  // namespace engine::testing_gpu
