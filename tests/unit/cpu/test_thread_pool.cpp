// ThreadPool: every index covered exactly once, edge sizes, repeated and nested
// calls, exceptions.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <stdexcept>
#include <vector>

#include "core/thread_pool.h"

using engine::ThreadPool;

namespace {
void expect_each_once(ThreadPool& pool, int64_t n, int64_t grain) {
  std::vector<std::atomic<int>> hits(n > 0 ? n : 0);
  std::atomic<int> calls{0};
  pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
    calls++;
    EXPECT_LE(0, b);
    EXPECT_LT(b, e);
    EXPECT_LE(e, n);
    if (e - b < std::max<int64_t>(grain, 1)) {
      EXPECT_EQ(e - b, n) << "a chunk below the grain must be the whole range";
    }
    for (int64_t i = b; i < e; i++) hits[i]++;
  });
  for (int64_t i = 0; i < n; i++) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " grain=" << grain << " i=" << i;
  EXPECT_LE(calls.load(), 4 * pool.size());
  if (n <= 0) {
    EXPECT_EQ(calls.load(), 0);
  }
}
}  // namespace

TEST(ThreadPool, ParallelChunksCoverEachIndexOnceInWholeChunks) {
  for (int nth : {1, 2, 3, 5}) {
    ThreadPool pool(nth);
    for (int64_t n : {0, 1, 5, 64, 100, 1001})
      for (int64_t chunk : {0, 1, 7, 64, 2000}) {
        std::vector<std::atomic<int>> hits(n);
        std::atomic<int> calls{0};
        pool.parallel_chunks(n, chunk, [&](int64_t b, int64_t e) {
          calls++;
          EXPECT_LT(b, e);
          EXPECT_LE(e, n);
          // One chunk of `chunk` items at a boundary, the last shorter; or the whole range.
          const int64_t c = std::max<int64_t>(chunk, 1);
          if (!(b == 0 && e == n)) {
            EXPECT_EQ(b % c, 0);
            EXPECT_EQ(e, std::min(n, b + c));
          }
          for (int64_t i = b; i < e; i++) hits[i]++;
        });
        for (int64_t i = 0; i < n; i++) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " chunk=" << chunk;
        const int64_t c = std::max<int64_t>(chunk, 1);
        if (n == 0) {
          EXPECT_EQ(calls.load(), 0);
        } else if (nth > 1) {
          EXPECT_EQ(calls.load(), (n + c - 1) / c);
        }
      }
  }
}

TEST(ThreadPool, SizeAndDefault) {
  ThreadPool a(3);
  EXPECT_EQ(a.size(), 3);
  ThreadPool b(0);
  EXPECT_GE(b.size(), 1);
  ThreadPool c(-5);
  EXPECT_GE(c.size(), 1);
}

TEST(ThreadPool, RunCallsEveryIndexOnce) {
  for (int nth : {1, 2, 3, 8}) {
    ThreadPool pool(nth);
    std::vector<std::atomic<int>> hits(nth);
    pool.run([&](int ith, int n) {
      EXPECT_EQ(n, nth);
      hits[ith]++;
    });
    for (int i = 0; i < nth; i++) EXPECT_EQ(hits[i].load(), 1);
  }
}

TEST(ThreadPool, ParallelForCoversEachIndexOnce) {
  for (int nth : {1, 2, 3, 5}) {
    ThreadPool pool(nth);
    for (int64_t n : {0, 1, 2, 3, 4, 5, 7, 100, 1001})
      for (int64_t grain : {0, 1, 3, 16, 1000}) expect_each_once(pool, n, grain);
    expect_each_once(pool, -3, 1);
  }
}

TEST(ThreadPool, ManyRepeatedCalls) {
  ThreadPool pool(2);
  std::atomic<int64_t> sum{0};
  for (int it = 0; it < 5000; it++) {
    pool.parallel_for(10, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; i++) sum += i;
    });
  }
  EXPECT_EQ(sum.load(), 5000 * 45);
}

TEST(ThreadPool, CallsAfterIdleSleep) {
  // Workers go to sleep after spinning ~200 us; calls must still wake them.
  ThreadPool pool(3);
  for (int it = 0; it < 5; it++) {
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
    expect_each_once(pool, 99, 1);
  }
}

TEST(ThreadPool, NestedCallsRunSerially) {
  ThreadPool pool(2);
  std::atomic<int> inner{0};
  pool.parallel_for(4, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; i++)
      pool.parallel_for(10, 1, [&](int64_t ib, int64_t ie) { inner += (int)(ie - ib); });
  });
  EXPECT_EQ(inner.load(), 40);
}

TEST(ThreadPool, ExceptionsPropagateAndPoolSurvives) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.run([](int ith, int) {
    if (ith == 2) throw std::runtime_error("boom");
  }),
               std::runtime_error);
  EXPECT_THROW(pool.run([](int ith, int) {
    if (ith == 0) throw std::runtime_error("boom");
  }),
               std::runtime_error);
  expect_each_once(pool, 50, 1);
}

TEST(ThreadPool, ConcurrentCallersAreSerialised) {
  ThreadPool pool(2);
  std::atomic<int64_t> total{0};
  auto caller = [&] {
    for (int i = 0; i < 500; i++)
      pool.parallel_for(8, 1, [&](int64_t b, int64_t e) { total += e - b; });
  };
  std::thread a(caller), b(caller);
  a.join();
  b.join();
  EXPECT_EQ(total.load(), 2 * 500 * 8);
}
