// A fixed pool of worker threads for data-parallel kernels.
//
// Decode calls into the pool ~10 times per layer per token, each call doing
// well under a millisecond of work, so dispatch must be cheap: workers are
// started once, spin briefly after each job (a new job usually arrives within
// microseconds), and only then sleep on a futex (C++20 atomic wait).
//
// Work is claimed, not assigned: a job's parts (run) or chunks (parallel_for) are
// taken from an atomic counter by whichever threads are awake, the caller
// included, and the caller waits only for threads that actually joined. When
// another process holds a core, its sleeping or preempted worker simply misses
// the job instead of stalling every call by a scheduler time slice (measured on a
// loaded 2-core machine: a 1 MiB matrix-vector product went from ~300 us to the
// one-thread time).
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

  // Calls fn(ith, nth) exactly once for each part ith in [0, nth), nth == size(),
  // each on some pool thread or the caller (parts are claimed in order; one thread
  // may run several); returns when all have finished. The first exception thrown
  // by any fn is rethrown here. A call made from inside a pool task (nesting) runs
  // all nth parts one after another on the current thread instead of deadlocking.
  void run(const std::function<void(int ith, int nth)>& fn);

  // Splits [0, n) into contiguous chunks of at least `grain` items (one chunk when
  // n < 2·grain; at most 4 per thread) and calls fn(begin, end) for each, on any
  // thread, chunks claimed in order; blocks until done. n <= 0 calls nothing. A
  // single chunk, a one-thread pool or a nested call runs fn(0, n) on the caller.
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t begin, int64_t end)>& fn);

  // Splits [0, n) into chunks of `chunk` items (the last may be shorter), each
  // claimed by whichever thread is free, one at a time: for long compute-bound
  // jobs, where parallel_for's few chunks a thread would leave the others waiting
  // on one that lost its core for a while. A single chunk, a one-thread pool or a
  // nested call runs fn(0, n) on the caller. n <= 0 calls nothing.
  void parallel_chunks(int64_t n, int64_t chunk, const std::function<void(int64_t begin, int64_t end)>& fn);

 private:
  void worker_main();
  void work_parts();  // claim and run parts of the open job until none are left

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex dispatch_mu_;  // one run() at a time from outside threads

  // The open job. Written by the caller before open_ is set; read by workers only
  // between active_++ and seeing open_ == true, and the caller closes the job and
  // waits for active_ == 0 before it returns, so a late worker never sees a stale job.
  const std::function<void(int, int)>* job_fn_ = nullptr;
  int job_nth_ = 0;
  alignas(64) std::atomic<int> next_part_{0};
  alignas(64) std::atomic<bool> open_{false};
  alignas(64) std::atomic<int> active_{0};        // workers inside the job
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped per job: wakes workers
  alignas(64) std::atomic<int> sleepers_{0};        // workers blocked in generation_.wait()
  std::atomic<bool> stop_{false};
  std::mutex err_mu_;
  std::exception_ptr error_;
};

}  // namespace engine
