// A fixed pool of worker threads for data-parallel kernels.
//
// Decode calls into the pool ~10 times per layer per token, each call doing
// well under a millisecond of work, so dispatch must be cheap: workers are
// started once, spin briefly on a generation counter after each job (a new
// job usually arrives within microseconds), and only then sleep on a futex
// (C++20 atomic wait). The caller always takes part as thread 0.
#pragma once
#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace engine {

class ThreadPool {
 public:
  // n_threads counts the calling thread; <= 0 means std::thread::hardware_concurrency().
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Calls fn(ith, nth) once for each ith in [0, nth) with nth == size(), the caller
  // running ith = 0; returns when all have finished. The first exception thrown
  // by any fn is rethrown here. A call made from inside a pool task (nesting) runs
  // all nth parts one after another on the current thread instead of deadlocking.
  void run(const std::function<void(int ith, int nth)>& fn);

  // Splits [0, n) into at most size() contiguous chunks of at least `grain` items
  // (except when n < grain: then one chunk) and calls fn(begin, end) for each;
  // blocks until done. n <= 0 calls nothing.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker_main(int ith);
  void run_job(int ith);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex dispatch_mu_;  // one run() at a time from outside threads

  // Job hand-off: the caller publishes job_fn_/job_nth_, then bumps generation_.
  const std::function<void(int, int)>* job_fn_ = nullptr;
  int job_nth_ = 0;
  alignas(64) std::atomic<uint32_t> generation_{0};
  alignas(64) std::atomic<int> pending_{0};   // workers still running the current job
  alignas(64) std::atomic<int> sleepers_{0};  // workers blocked in generation_.wait()
  std::atomic<bool> stop_{false};
  std::mutex err_mu_;
  std::exception_ptr error_;
};

}  // namespace engine
