// Matmul driver: picks the kernel family once, prepares activations (Q8 blocks
// for Q8_0 matrix-vector products, a transposed padded copy for GEMM), and
// splits the output rows (columns, for the transposed product) across the pool.
#include "cpu/matmul.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"
#include "cpu/matmul_ggml.h"
#include "cpu/matmul_internal.h"

namespace engine::cpu {

using detail::Kernels;
using detail::kKC;

namespace {

// GEMM from this many tokens on. Below it the matrix-vector kernels (4 tokens per
// pass over the weights) are faster: the GEMM converts a weight panel and pads the
// tokens to whole vectors (16 lanes for AVX-512), which only pays off once a full
// vector of tokens shares each converted weight. Measured on 5632x2048 F16, one
// thread: 8 tokens gemv 88 vs GEMM 51 GFLOP/s, 12: 90 vs 74, 16: 57 vs 81.
constexpr int64_t kGemmMinTokens = 16;
// The dot-product GEMM (F16/BF16 on AVX2) needs no padding and no weight
// conversion pass, so it pays off from fewer tokens: measured on 5632x2048 F16,
// one thread (its first form, with f32 tokens), 8 tokens 46 vs 33 GFLOP/s and 12
// tokens 52 vs 29 against the matrix-vector path.
constexpr int64_t kDotMinTokens = 8;
constexpr int64_t kDotJobRows = 64;  // a multiple of every family's dot_rows

const Kernels* family(const std::string& name) {
  const CpuFeatures& f = cpu_features();
  if (name == "scalar") return &detail::kScalarKernels;
  if (name == "avx2") return f.avx2 ? &detail::kAvx2Kernels : nullptr;
  if (name == "avx512") return f.avx512 ? &detail::kAvx512Kernels : nullptr;
  return nullptr;
}

const Kernels* best_family() {
  const CpuFeatures& f = cpu_features();
  const Kernels* k = f.avx512 ? &detail::kAvx512Kernels : f.avx2 ? &detail::kAvx2Kernels : &detail::kScalarKernels;
  // ENGINE_CPU may only lower the family (a higher one would fault).
  if (const char* env = std::getenv("ENGINE_CPU")) {
    const std::string want = env;
    if (want == "scalar") k = &detail::kScalarKernels;
    else if (want == "avx2" && f.avx2) k = &detail::kAvx2Kernels;
  }
  return k;
}

std::atomic<const Kernels*> g_active{nullptr};

const Kernels& active() {
  const Kernels* k = g_active.load(std::memory_order_acquire);
  if (!k) {
    k = best_family();
    g_active.store(k, std::memory_order_release);
  }
  return *k;
}

int64_t round_up(int64_t a, int64_t b) { return (a + b - 1) / b * b; }

void check(const WeightView& w) {
  const int64_t bs = dtype_block_size(w.type);
  if (w.type != DType::F32 && w.type != DType::F16 && w.type != DType::BF16 && w.type != DType::Q8_0 &&
      w.type != DType::Q6_K)
    throw Error(std::string("matmul: unsupported weight type ") + dtype_name(w.type));
  if (w.rows < 0 || w.cols < 0 || w.cols % bs != 0 || w.row_bytes < dtype_row_bytes(w.type, w.cols))
    throw Error("matmul: malformed weight view");
}

// Scratch that lives as long as the thread (pool workers and callers alike), grown
// on demand, 64-byte aligned: the GEMM loads whole cache lines of X^T, and a
// malloc'd block (16-byte aligned) would split every one of those loads in two.
class Scratch {
 public:
  float* get(size_t n) {
    if (n > cap_) {
      const size_t bytes = (n * sizeof(float) + 63) / 64 * 64;
      p_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!p_) throw std::bad_alloc();
      cap_ = bytes / sizeof(float);
    }
    return p_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> p_;
  size_t cap_ = 0;
};

// The dot-product GEMM on X rounded to f16 once (shared read-only by all
// threads). Returns false, having written nothing, when some activation is beyond
// f16's range (|x| > 65504): the caller then takes the exact f32 path.
bool gemm_dot(const Kernels& ks, const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool,
              bool add) {
  thread_local std::vector<uint16_t> xh_buf;
  if (xh_buf.size() < (size_t)(n_tok * w.cols)) xh_buf.resize((size_t)(n_tok * w.cols));
  uint16_t* const xh = xh_buf.data();
  std::atomic<bool> in_range{true};
  pool.parallel_for(n_tok, 8, [&](int64_t t0, int64_t t1) {
    if (!ks.to_f16(x + t0 * w.cols, (t1 - t0) * w.cols, xh + t0 * w.cols)) in_range.store(false);
  });
  if (!in_range.load()) return false;
  // Jobs of kDotJobRows rows claimed one at a time: a thread that loses its core for
  // a while (another process) leaves little for the others to wait on.
  pool.parallel_chunks(w.rows, kDotJobRows,
                       [&](int64_t r0, int64_t r1) { ks.gemm_dot(w, r0, r1, xh, n_tok, y, add); });
  return true;
}

void matmul_impl(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool, bool add) {
  check(w);
  if (n_tok <= 0 || w.rows == 0) return;
  if (w.cols == 0) {
    if (!add) std::fill(y, y + n_tok * w.rows, 0.0f);
    return;
  }
  if (w.type == DType::F32) {
    // F32 weights: llama.cpp's accumulation order (cpu/matmul_ggml.h), so F32 models give
    // its logits bit for bit. An F32 model is small; its speed matters less than that.
    const ggml::Kernels& gk = ggml::kernels();
    pool.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) { gk.f32_rows(w, r0, r1, x, n_tok, y, add); });
    return;
  }
  const Kernels& ks = active();

  if (ks.gemm_dot && (w.type == DType::F16 || w.type == DType::BF16) && n_tok >= kDotMinTokens &&
      gemm_dot(ks, w, x, n_tok, y, pool, add))
    return;
  if (ks.gemm && n_tok >= kGemmMinTokens) {
    // xt = X^T zero-padded: [kpad][tpad]; built once, shared read-only by all threads.
    const int64_t kpad = round_up(w.cols, kKC), tpad = round_up(n_tok, ks.tv);
    thread_local Scratch xt_buf;
    float* xt = xt_buf.get((size_t)(kpad * tpad));
    pool.parallel_for(kpad / 16, 16, [&](int64_t b0, int64_t b1) {
      for (int64_t k0 = b0 * 16; k0 < b1 * 16; k0 += 16) {
        float* dst = xt + k0 * tpad;
        std::memset(dst, 0, sizeof(float) * 16 * tpad);
        const int64_t kn = std::min<int64_t>(16, w.cols - k0);
        for (int64_t t = 0; t < n_tok; t++)
          for (int64_t k = 0; k < kn; k++) dst[k * tpad + t] = x[t * w.cols + k0 + k];
      }
    });
    const int64_t mr = ks.mr, n_panels = (w.rows + mr - 1) / mr;
    pool.parallel_for(n_panels, 1, [&](int64_t p0, int64_t p1) {
      thread_local Scratch panel_buf;
      float* panel = panel_buf.get((size_t)(mr * kpad));
      ks.gemm(w, p0 * mr, std::min(p1 * mr, w.rows), xt, tpad, n_tok, y, add, panel);
    });
    return;
  }

  detail::QuantAct qa{};
  const detail::QuantAct* xq = nullptr;
  if (w.type == DType::Q8_0 || w.type == DType::Q6_K) {
    thread_local std::vector<int8_t> q_buf;
    thread_local Scratch d_buf;
    if (q_buf.size() < (size_t)(n_tok * w.cols)) q_buf.resize(n_tok * w.cols);
    float* d = d_buf.get((size_t)(n_tok * (w.cols / kQ8Block)));
    for (int64_t t = 0; t < n_tok; t++)
      ks.quantize_q8(x + t * w.cols, w.cols, q_buf.data() + t * w.cols, d + t * (w.cols / kQ8Block));
    qa = {q_buf.data(), d};
    xq = &qa;
  }
  // Rows in contiguous chunks of at least 16 (small matrices stay on one thread).
  pool.parallel_for(w.rows, 16, [&](int64_t r0, int64_t r1) { ks.gemv(w, r0, r1, x, xq, n_tok, y, add); });
}

}  // namespace

void matmul(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool) {
  matmul_impl(w, x, n_tok, y, pool, false);
}

void matmul_add(const WeightView& w, const float* x, int64_t n_tok, float* y, ThreadPool& pool) {
  matmul_impl(w, x, n_tok, y, pool, true);
}

// In 32×32 tiles, so both sides stay in cache.
void transpose_f32(const WeightView& w, float* wt, ThreadPool& pool) {
  constexpr int64_t kT = 32;
  const int64_t row_tiles = (w.rows + kT - 1) / kT;
  pool.parallel_for(row_tiles, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t r0 = b0 * kT; r0 < std::min(b1 * kT, w.rows); r0 += kT)
      for (int64_t c0 = 0; c0 < w.cols; c0 += kT)
        for (int64_t r = r0; r < std::min(r0 + kT, w.rows); r++) {
          const float* src = (const float*)((const uint8_t*)w.data + (size_t)r * w.row_bytes);
          for (int64_t c = c0; c < std::min(c0 + kT, w.cols); c++) wt[c * w.rows + r] = src[c];
        }
  });
}

void matmul_transposed(const WeightView& w, const float* dy, int64_t n_tok, float* dx, ThreadPool& pool) {
  check(w);
  if (n_tok <= 0 || w.cols == 0) return;
  // Training's dX = dY·W on f32 master weights: from 16 tokens, transpose W once
  // (O(rows·cols)) and run the register-blocked GEMM (O(n·rows·cols)) instead of
  // the row-by-row axpy below, which reaches a third of the GEMM's FLOP/s.
  if (w.type == DType::F32 && n_tok >= 16) {
    thread_local std::vector<float> wt;
    wt.resize((size_t)(w.rows * w.cols));
    transpose_f32(w, wt.data(), pool);
    matmul(WeightView{DType::F32, w.cols, w.rows, wt.data(), (size_t)w.rows * sizeof(float)}, dy, n_tok, dx, pool);
    return;
  }
  const Kernels& ks = active();
  // Columns are split across threads in units of 32 (a Q8_0 block; also whole vectors),
  // or of a Q6_K block.
  // Each thread walks column chunks of up to kCW, and for each a tile of kRB weight rows
  // is converted to f32 once and then applied to every token: dx[t][chunk] += Σ_r dy[t][r]·W[r][chunk].
  constexpr int64_t kCW = 256, kRB = 64;
  const int64_t kUnit = std::max<int64_t>(32, dtype_block_size(w.type));
  const int64_t units = (w.cols + kUnit - 1) / kUnit;
  pool.parallel_for(units, 1, [&](int64_t u0, int64_t u1) {
    thread_local Scratch tile_buf;
    float* tile = tile_buf.get((size_t)(kRB * kCW));
    const int64_t c_end = std::min(u1 * kUnit, w.cols);
    for (int64_t c0 = u0 * kUnit; c0 < c_end; c0 += kCW) {
      const int64_t cn = std::min(kCW, c_end - c0);
      for (int64_t t = 0; t < n_tok; t++) std::fill(dx + t * w.cols + c0, dx + t * w.cols + c0 + cn, 0.0f);
      for (int64_t r0 = 0; r0 < w.rows; r0 += kRB) {
        const int64_t rn = std::min(kRB, w.rows - r0);
        for (int64_t i = 0; i < rn; i++) ks.row_to_f32(w, r0 + i, c0, cn, tile + i * kCW);
        for (int64_t t = 0; t < n_tok; t++) ks.axpy_rows(dy + t * w.rows + r0, tile, rn, kCW, cn, dx + t * w.cols + c0);
      }
    }
  });
}

const char* kernel_name() { return active().name; }

bool set_kernel_family(const char* name) {
  const Kernels* k = family(name ? name : "");
  if (!k) return false;
  g_active.store(k, std::memory_order_release);
  return true;
}

}  // namespace engine::cpu
