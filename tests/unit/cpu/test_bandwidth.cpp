#include <gtest/gtest.h>

#include "cpu/bandwidth.h"

TEST(Bandwidth, MeasuresSomethingPlausible) {
  engine::ThreadPool pool(2);
  // Small buffer: this checks the mechanics, not the machine (tests never assert on speed).
  const double bw = engine::cpu::measure_read_bandwidth(pool, 8 << 20);
  EXPECT_GT(bw, 1e8);
  EXPECT_LT(bw, 1e13);
}
