#include "core/thread_pool.h"

#include <algorithm>
#include <chrono>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define ENGINE_CPU_RELAX() _mm_pause()
#else
#define ENGINE_CPU_RELAX() std::this_thread::yield()
#endif

namespace engine {

namespace {
// True while this thread executes a pool task; nested run() calls then go serial.
thread_local bool tl_in_pool = false;

// How long a waiting thread spins before it sleeps: longer than the gap between
// two matmuls of one decode step (tens of microseconds), short enough that an
// idle pool does not hold cores busy. Measured in time, not iterations, because
// the cost of `pause` varies from ~10 to ~140 cycles between x86 generations.
constexpr auto kSpin = std::chrono::microseconds(200);

// Spins until pred() holds or kSpin has passed; returns pred().
template <typename Pred>
bool spin_until(Pred pred) {
  const auto t0 = std::chrono::steady_clock::now();
  for (;;) {
    for (int i = 0; i < 16; i++) {
      if (pred()) return true;
      ENGINE_CPU_RELAX();
    }
    if (std::chrono::steady_clock::now() - t0 > kSpin) return pred();
  }
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = (int)std::max(1u, std::thread::hardware_concurrency());
  n_threads_ = n_threads;
  workers_.reserve(n_threads - 1);
  for (int i = 1; i < n_threads; i++) workers_.emplace_back([this] { worker_main(); });
}

ThreadPool::~ThreadPool() {
  stop_.store(true, std::memory_order_seq_cst);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  generation_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::work_parts() {
  const bool was = tl_in_pool;
  tl_in_pool = true;
  for (int p; (p = next_part_.fetch_add(1, std::memory_order_relaxed)) < job_nth_;) {
    try {
      (*job_fn_)(p, job_nth_);
    } catch (...) {
      std::lock_guard<std::mutex> lk(err_mu_);
      if (!error_) error_ = std::current_exception();
    }
  }
  tl_in_pool = was;
}

void ThreadPool::worker_main() {
  uint32_t seen = 0;
  for (;;) {
    // Wait for a new generation: spin first, then sleep on the futex.
    spin_until([&] { return generation_.load(std::memory_order_acquire) != seen; });
    while (generation_.load(std::memory_order_acquire) == seen) {
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      generation_.wait(seen, std::memory_order_seq_cst);
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load(std::memory_order_seq_cst)) return;
    // Join the job only if it is still open (see the comment on job_fn_). Joining a
    // later job than the one that woke us, or the same job twice, is harmless:
    // parts are claimed atomically.
    active_.fetch_add(1, std::memory_order_seq_cst);
    if (open_.load(std::memory_order_seq_cst)) work_parts();
    active_.fetch_sub(1, std::memory_order_release);
  }
}

void ThreadPool::run(const std::function<void(int ith, int nth)>& fn) {
  const int nth = n_threads_;
  if (nth == 1 || tl_in_pool) {
    for (int i = 0; i < nth; i++) fn(i, nth);
    return;
  }
  std::lock_guard<std::mutex> lk(dispatch_mu_);
  job_fn_ = &fn;
  job_nth_ = nth;
  error_ = nullptr;
  next_part_.store(0, std::memory_order_relaxed);
  open_.store(true, std::memory_order_seq_cst);
  generation_.fetch_add(1, std::memory_order_seq_cst);
  // The futex syscall is only needed when some worker has gone to sleep.
  if (sleepers_.load(std::memory_order_seq_cst) > 0) generation_.notify_all();

  work_parts();

  // Every part is claimed; close the job and wait for the workers still running one.
  open_.store(false, std::memory_order_seq_cst);
  if (!spin_until([&] { return active_.load(std::memory_order_acquire) == 0; })) {
    while (active_.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }
  job_fn_ = nullptr;
  if (error_) {
    std::exception_ptr e = error_;
    error_ = nullptr;
    std::rethrow_exception(e);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // Up to kChunksPerThread contiguous chunks per thread, handed out in order from an
  // atomic counter. On an idle machine this behaves like one long range per thread
  // (what streaming kernels want); when another process takes a core for a while,
  // the other threads pick up its chunks instead of all waiting for it.
  constexpr int64_t kChunksPerThread = 4;
  const int64_t chunks = std::clamp<int64_t>(n / grain, 1, (int64_t)n_threads_ * kChunksPerThread);
  if (chunks == 1 || n_threads_ == 1 || tl_in_pool) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  run([&](int, int) {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;) {
      const int64_t b = n * c / chunks, e = n * (c + 1) / chunks;
      if (b < e) fn(b, e);
    }
  });
}

void ThreadPool::parallel_chunks(int64_t n, int64_t chunk,
                                 const std::function<void(int64_t begin, int64_t end)>& fn) {
  if (n <= 0) return;
  chunk = std::max<int64_t>(chunk, 1);
  const int64_t chunks = (n + chunk - 1) / chunk;
  if (chunks == 1 || n_threads_ == 1 || tl_in_pool) {
    fn(0, n);
    return;
  }
  std::atomic<int64_t> next{0};
  run([&](int, int) {
    for (int64_t c; (c = next.fetch_add(1, std::memory_order_relaxed)) < chunks;)
      fn(c * chunk, std::min(n, (c + 1) * chunk));
  });
}

}  // namespace engine
