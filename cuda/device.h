// CUDA device management: detection, error checking, device choice, a memory
// pool for activations and the KV cache, the stream and the cuBLAS handle.
//
// Every CUDA runtime / cuBLAS call goes through CUDA_CHECK / CUBLAS_CHECK, and
// every kernel launch is followed by CUDA_CHECK_LAUNCH(): a failure throws
// engine::Error with "file:line: call: cudaGetErrorString" (the CLI prints it and
// exits 1). With ENGINE_CUDA_SYNC=1 in the environment each launch is also
// synchronised, so an asynchronous fault is reported at the kernel that caused it.
//
// This header is plain C++ (no device code) so host-only translation units (tests,
// commands) can include it; it pulls in <cuda_runtime_api.h> and <cublas_v2.h> only.
#pragma once
#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"

namespace engine::cuda {

// Number of usable CUDA devices; 0 when there is no driver, no device, or any
// error at all. Never throws, never aborts.
int device_count() noexcept;
// A one-line description of why device_count() is 0 (for skip messages), or the
// device list ("0: NVIDIA H200, sm_90, 139 GiB, 132 SMs").
std::string device_summary() noexcept;

[[noreturn]] void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line);
[[noreturn]] void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line);
void check_launch(const char* what, const char* file, int line);  // cudaGetLastError (+ sync when asked)

#define CUDA_CHECK(call)                                                                  \
  do {                                                                                    \
    cudaError_t engine_cuda_err_ = (call);                                                \
    if (engine_cuda_err_ != cudaSuccess)                                                  \
      ::engine::cuda::throw_cuda_error(engine_cuda_err_, #call, __FILE__, __LINE__);      \
  } while (0)
#define CUBLAS_CHECK(call)                                                                \
  do {                                                                                    \
    cublasStatus_t engine_cublas_st_ = (call);                                            \
    if (engine_cublas_st_ != CUBLAS_STATUS_SUCCESS)                                       \
      ::engine::cuda::throw_cublas_error(engine_cublas_st_, #call, __FILE__, __LINE__);   \
  } while (0)
// After every kernel launch: `kernel<<<...>>>(...); CUDA_CHECK_LAUNCH("kernel");`
#define CUDA_CHECK_LAUNCH(what) ::engine::cuda::check_launch(what, __FILE__, __LINE__)

// --device cpu | cuda | cuda:N. Returns false (and sets *err) on a malformed string.
// `index` is -1 for "cpu". "cuda" means device 0. Pure string parsing: no CUDA call.
struct DeviceChoice {
  bool cuda = false;
  int index = -1;
  std::string str() const { return cuda ? "cuda:" + std::to_string(index) : "cpu"; }
};
bool parse_device(const std::string& s, DeviceChoice* out, std::string* err);
// The default: cuda:0 when a device exists, else cpu.
DeviceChoice default_device() noexcept;

// Device memory owned by one object (cudaMalloc / cudaFree).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr, o.n_ = 0; }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;
  void* get() const { return p_; }
  template <typename T>
  T* as() const { return (T*)p_; }
  size_t bytes() const { return n_; }
  void reset();  // frees
 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Copies. Without a stream: synchronous (to_device waits until the data is on the
// device; to_host does not wait for work queued on other streams: sync them first).
void to_device(void* dst, const void* src, size_t bytes, cudaStream_t s = nullptr);
void to_host(void* dst, const void* src, size_t bytes, cudaStream_t s = nullptr);
template <typename T>
DeviceBuffer upload(const std::vector<T>& v) {
  DeviceBuffer b(v.size() * sizeof(T));
  if (!v.empty()) to_device(b.get(), v.data(), v.size() * sizeof(T));
  return b;
}
template <typename T>
std::vector<T> download(const void* src, size_t n) {
  std::vector<T> v(n);
  if (n) to_host(v.data(), src, n * sizeof(T));
  return v;
}

// A bump allocator over one cudaMalloc'd arena, for the activations of a span
// and the KV cache: allocations are 256-byte aligned, freed all at once by
// reset(mark). No per-allocation cudaMalloc (which synchronises the device).
// Exhaustion throws Error naming the sizes.
class DevicePool {
 public:
  explicit DevicePool(size_t bytes, const char* name = "device pool");
  void* alloc(size_t bytes);
  template <typename T>
  T* alloc_n(size_t n) { return (T*)alloc(n * sizeof(T)); }
  size_t mark() const { return used_; }
  void reset(size_t mark = 0) { used_ = mark; }
  size_t used() const { return used_; }
  size_t capacity() const { return buf_.bytes(); }
  size_t high_water() const { return high_; }
 private:
  DeviceBuffer buf_;
  size_t used_ = 0, high_ = 0;
  std::string name_;
};

// One device, one stream, one cuBLAS handle (bound to the stream), and a growable
// scratch workspace for kernels that need temporaries (attention partials,
// activations converted for cuBLAS). Not thread-safe: one context per thread.
class Context {
 public:
  explicit Context(int device = 0);  // selects the device (cudaSetDevice); throws Error if absent
  ~Context();
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  int device() const { return device_; }
  cudaStream_t stream() const { return stream_; }
  cublasHandle_t blas() const { return blas_; }
  const cudaDeviceProp& props() const { return props_; }
  // A device buffer of at least `bytes`, valid until the next call of workspace().
  // Growing synchronises the stream first (the old buffer may still be in use).
  void* workspace(size_t bytes);
  void sync();  // cudaStreamSynchronize, checked
 private:
  int device_ = 0;
  cudaStream_t stream_ = nullptr;
  cublasHandle_t blas_ = nullptr;
  cudaDeviceProp props_{};
  DeviceBuffer ws_;
};

}  // namespace engine::cuda
