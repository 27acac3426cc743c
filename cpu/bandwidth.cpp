#include "cpu/bandwidth.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__)
// GCC 12's _mm512_reduce_add_epi64 trips -Wuninitialized inside the header (GCC bug 105593).
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include "core/cpu_features.h"

namespace engine::cpu {

namespace {

// Sum of n 64-byte lines as 64-bit integers. Integer adds (1-cycle latency) with
// four independent accumulators keep the loop bound by the loads alone.
uint64_t read_scalar(const uint64_t* p, size_t lines) {
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (size_t i = 0; i < lines; i++, p += 8) {
    s0 += p[0] + p[4];
    s1 += p[1] + p[5];
    s2 += p[2] + p[6];
    s3 += p[3] + p[7];
  }
  return s0 + s1 + s2 + s3;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) uint64_t read_avx2(const uint64_t* p, size_t lines) {
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  const __m256i* v = (const __m256i*)p;
  size_t i = 0;
  for (; i + 2 <= lines; i += 2, v += 4) {
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(v));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 1));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 2));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 3));
  }
  const __m256i s = _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3));
  alignas(32) uint64_t out[4];
  _mm256_store_si256((__m256i*)out, s);
  return out[0] + out[1] + out[2] + out[3] + (i < lines ? read_scalar(p + 8 * i, lines - i) : 0);
}

__attribute__((target("avx512f"))) uint64_t read_avx512(const uint64_t* p, size_t lines) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  const __m512i* v = (const __m512i*)p;
  size_t i = 0;
  for (; i + 4 <= lines; i += 4, v += 4) {
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(v));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(v + 1));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(v + 2));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(v + 3));
  }
  const uint64_t s = (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
  return s + (i < lines ? read_scalar(p + 8 * i, lines - i) : 0);
}
#endif

using ReadFn = uint64_t (*)(const uint64_t*, size_t);

ReadFn pick_reader() {
#if defined(__x86_64__)
  const CpuFeatures& f = cpu_features();
  if (f.avx512) return read_avx512;
  if (f.avx2) return read_avx2;
#endif
  return read_scalar;
}

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

}  // namespace

double measure_read_bandwidth(ThreadPool& pool, size_t bytes) {
  const size_t nth = (size_t)pool.size();
  const size_t part = std::max<size_t>(bytes / nth / 4096, 1) * 4096;  // per thread, whole pages
  const size_t total = part * nth;
  std::unique_ptr<void, FreeDeleter> mem(std::aligned_alloc(4096, total));
  if (!mem) return 0.0;
  char* base = (char*)mem.get();
  const ReadFn read = pick_reader();

  // Each thread first-touches (writes) its own part, so pages are real and local to it.
  pool.run([&](int ith, int) { std::memset(base + ith * part, 1, part); });

  std::vector<uint64_t> sums(nth);
  double best = 0;
  for (int rep = 0; rep < 6; rep++) {  // rep 0 is a warm-up
    const auto t0 = std::chrono::steady_clock::now();
    pool.run([&](int ith, int) { sums[ith] = read((const uint64_t*)(base + ith * part), part / 64); });
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    // The sums are checked so the reads cannot be optimised away.
    uint64_t s = 0;
    for (uint64_t v : sums) s += v;
    if (s == 0) return 0.0;
    if (rep > 0) best = std::max(best, (double)total / dt);
  }
  return best;
}

}  // namespace engine::cpu
