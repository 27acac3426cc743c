// Memory read bandwidth of this machine, measured the way decode reads
// weights: every thread of the pool streams its own contiguous part of a
// buffer far larger than the caches, summing it with the widest SIMD loads
// available. `engine bench` divides decode's weight traffic by this number.
#pragma once
#include <cstddef>

#include "core/thread_pool.h"

namespace engine::cpu {

// Bytes per second, best of a few repetitions (after one warm-up pass that also
// faults the pages in). `bytes` is rounded down to a multiple of 4 KiB·threads.
double measure_read_bandwidth(ThreadPool& pool, size_t bytes = (size_t)512 << 20);

}  // namespace engine::cpu
