#include "cuda/device.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace engine::cuda {

namespace {
const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_MAPPING_ERROR: return "CUBLAS_STATUS_MAPPING_ERROR";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    case CUBLAS_STATUS_LICENSE_ERROR: return "CUBLAS_STATUS_LICENSE_ERROR";
    default: return "unknown cuBLAS status";
  }
}

bool sync_after_launch() {
  static const bool on = [] {
    const char* e = std::getenv("ENGINE_CUDA_SYNC");
    return e && *e && std::strcmp(e, "0") != 0;
  }();
  return on;
}

std::string base_name(const char* file) {
  const char* s = std::strrchr(file, '/');
  return s ? s + 1 : file;
}
}  // namespace

int device_count() noexcept {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return n < 0 ? 0 : n;
}

std::string device_summary() noexcept {
  try {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return std::string("no CUDA device (cudaGetDeviceCount: ") + cudaGetErrorString(e) + ")";
    }
    if (n <= 0) return "no CUDA device (cudaGetDeviceCount returned 0)";
    std::string s;
    for (int i = 0; i < n; i++) {
      cudaDeviceProp p{};
      if (cudaGetDeviceProperties(&p, i) != cudaSuccess) continue;
      char line[512];
      std::snprintf(line, sizeof line, "%s%d: %s, sm_%d%d, %.0f GiB, %d SMs", s.empty() ? "" : "; ", i, p.name,
                    p.major, p.minor, (double)p.totalGlobalMem / (1024.0 * 1024 * 1024), p.multiProcessorCount);
      s += line;
    }
    return s;
  } catch (...) {
    return "no CUDA device (error while querying)";
  }
}

void throw_cuda_error(cudaError_t e, const char* call, const char* file, int line) {
  throw Error("CUDA error at " + base_name(file) + ":" + std::to_string(line) + ": " + call + ": " +
              cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
}

void throw_cublas_error(cublasStatus_t s, const char* call, const char* file, int line) {
  throw Error("cuBLAS error at " + base_name(file) + ":" + std::to_string(line) + ": " + call + ": " +
              cublas_status_name(s));
}

void check_launch(const char* what, const char* file, int line) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw_cuda_error(e, (std::string("launch of ") + what).c_str(), file, line);
  if (sync_after_launch()) {
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess) throw_cuda_error(e, (std::string("kernel ") + what + " (synchronised)").c_str(), file, line);
  }
}

bool parse_device(const std::string& s, DeviceChoice* out, std::string* err) {
  if (s == "cpu") {
    *out = DeviceChoice{false, -1};
    return true;
  }
  if (s == "cuda") {
    *out = DeviceChoice{true, 0};
    return true;
  }
  if (s.rfind("cuda:", 0) == 0 && s.size() > 5 && s.size() <= 8) {
    int v = 0;
    for (size_t i = 5; i < s.size(); i++) {
      if (s[i] < '0' || s[i] > '9') goto bad;
      v = v * 10 + (s[i] - '0');
    }
    *out = DeviceChoice{true, v};
    return true;
  }
bad:
  if (err) *err = "--device must be cpu, cuda or cuda:N (got '" + s + "')";
  return false;
}

DeviceChoice default_device() noexcept {
  return device_count() > 0 ? DeviceChoice{true, 0} : DeviceChoice{false, -1};
}

DeviceBuffer::DeviceBuffer(size_t bytes) {
  if (bytes == 0) return;
  CUDA_CHECK(cudaMalloc(&p_, bytes));
  n_ = bytes;
}

DeviceBuffer::~DeviceBuffer() { reset(); }

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    reset();
    p_ = o.p_, n_ = o.n_;
    o.p_ = nullptr, o.n_ = 0;
  }
  return *this;
}

void DeviceBuffer::reset() {
  if (p_) (void)cudaFree(p_);  // a destructor must not throw; a failed free is reported by the next checked call
  p_ = nullptr;
  n_ = 0;
}

void to_device(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (!bytes) return;
  if (s) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  } else {
    // From pageable memory cudaMemcpy may return before the DMA lands, and our
    // streams do not wait for the legacy stream: wait for it here.
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaStreamSynchronize(0));
  }
}

void to_host(void* dst, const void* src, size_t bytes, cudaStream_t s) {
  if (!bytes) return;
  if (s) {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
    CUDA_CHECK(cudaStreamSynchronize(s));
  } else {
    CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
  }
}

DevicePool::DevicePool(size_t bytes, const char* name) : buf_(bytes), name_(name) {}

void* DevicePool::alloc(size_t bytes) {
  const size_t start = (used_ + 255) & ~(size_t)255;
  if (start + bytes > buf_.bytes())
    throw Error(name_ + " exhausted: " + std::to_string(bytes) + " bytes requested, " +
                std::to_string(buf_.bytes() - std::min(start, buf_.bytes())) + " of " + std::to_string(buf_.bytes()) +
                " left");
  used_ = start + bytes;
  if (used_ > high_) high_ = used_;
  return (char*)buf_.get() + start;
}

Context::Context(int device) : device_(device) {
  const int n = device_count();
  if (device < 0 || device >= n)
    throw Error("CUDA device " + std::to_string(device) + " requested, but " +
                (n ? std::to_string(n) + " device(s) present" : device_summary()));
  CUDA_CHECK(cudaSetDevice(device));
  CUDA_CHECK(cudaGetDeviceProperties(&props_, device));
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  CUBLAS_CHECK(cublasCreate(&blas_));
  CUBLAS_CHECK(cublasSetStream(blas_, stream_));
  // f32 products stay f32 (no TF32): the tests compare with the CPU to f32 accuracy.
  CUBLAS_CHECK(cublasSetMathMode(blas_, CUBLAS_DEFAULT_MATH));
}

Context::~Context() {
  if (stream_) (void)cudaStreamSynchronize(stream_);
  ws_.reset();
  if (blas_) (void)cublasDestroy(blas_);
  if (stream_) (void)cudaStreamDestroy(stream_);
}

void* Context::workspace(size_t bytes) {
  if (bytes > ws_.bytes()) {
    sync();
    ws_.reset();
    ws_ = DeviceBuffer(bytes + bytes / 4);
  }
  return ws_.get();
}

void Context::sync() { CUDA_CHECK(cudaStreamSynchronize(stream_)); }

}  // namespace engine::cuda
