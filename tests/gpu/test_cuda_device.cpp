// Device management: --device parsing (no device needed), detection that never
// throws, the pool, and the error path (a failing call becomes an Error naming
// file, line, call and the CUDA error).
#include <gtest/gtest.h>

#include "gpu_test_util.h"

using namespace engine;
using namespace engine::testing_gpu;

TEST(CudaDevice, ParseDeviceFlag) {
  cuda::DeviceChoice d;
  std::string err;
  ASSERT_TRUE(cuda::parse_device("cpu", &d, &err));
  EXPECT_FALSE(d.cuda);
  EXPECT_EQ(d.str(), "cpu");
  ASSERT_TRUE(cuda::parse_device("cuda", &d, &err));
  EXPECT_TRUE(d.cuda);
  EXPECT_EQ(d.index, 0);
  ASSERT_TRUE(cuda::parse_device("cuda:3", &d, &err));
  EXPECT_EQ(d.index, 3);
  EXPECT_EQ(d.str(), "cuda:3");
  for (const char* bad : {"", "gpu", "cuda:", "cuda:x", "cuda:-1", "cuda:1a", "CPU", "cuda:123456"}) {
    EXPECT_FALSE(cuda::parse_device(bad, &d, &err)) << bad;
    EXPECT_NE(err.find("--device"), std::string::npos);
  }
}

TEST(CudaDevice, DetectionNeverThrows) {
  int n = -1;
  EXPECT_NO_THROW(n = cuda::device_count());
  EXPECT_GE(n, 0);
  EXPECT_FALSE(cuda::device_summary().empty());
  const cuda::DeviceChoice d = cuda::default_device();
  EXPECT_EQ(d.cuda, n > 0);
  if (n == 0) {
    EXPECT_THROW(cuda::Context c(0), Error);  // a clear error, not a crash
  }
}

TEST(CudaDevice, PoolAndErrors) {
  REQUIRE_CUDA_DEVICE();
  cuda::Context& c = ctx();
  cuda::DevicePool pool(1 << 20, "test pool");
  void* a = pool.alloc(100);
  void* b = pool.alloc(1000);
  EXPECT_EQ((uintptr_t)a % 256, 0u);
  EXPECT_EQ((uintptr_t)b % 256, 0u);
  EXPECT_GE((char*)b - (char*)a, 100);
  const size_t m = pool.mark();
  pool.alloc(4096);
  pool.reset(m);
  EXPECT_EQ(pool.used(), m);
  try {
    pool.alloc(2 << 20);
    FAIL() << "an oversized allocation must throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("test pool exhausted"), std::string::npos) << e.what();
  }
  // A failing runtime call: the message names the call and the CUDA error.
  try {
    CUDA_CHECK(cudaMemcpy(nullptr, b, 16, cudaMemcpyDeviceToHost));
    FAIL() << "copying to a null pointer must fail";
  } catch (const Error& e) {
    const std::string w = e.what();
    EXPECT_NE(w.find("test_cuda_device.cpp"), std::string::npos) << w;
    EXPECT_NE(w.find("cudaMemcpy"), std::string::npos) << w;
  }
  (void)cudaGetLastError();
  c.sync();
  // Round trip through the workspace.
  std::vector<float> v = {1, 2, 3, 4};
  float* ws = (float*)c.workspace(16);
  cuda::to_device(ws, v.data(), 16);
  EXPECT_EQ(cuda::download<float>(ws, 4), v);
}
