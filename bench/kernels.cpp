// CPU kernel benchmark: memory read bandwidth, then for issue 2's layer shapes
// and every weight type, matrix-vector throughput (GB/s of weights and its
// fraction of the measured bandwidth) and 64-token GEMM GFLOP/s.
//
//   kernels [-t THREADS] [-f FAMILY]... [-n GEMM_TOKENS] [--quick] [--no-shapes]
//           [-m TYPE]... [-r REPS]
//
// -m TYPE adds a decode-like sweep over a whole model of that type (f16, q8_0, ...).
//
// Matrix-vector runs cycle through enough copies of the weight (≥ 1 GiB in
// all) that every call reads from DRAM, as decode does with a whole model.
// GEMM runs reuse one copy: prefill is compute-bound.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/thread_pool.h"
#include "cpu/bandwidth.h"
#include "cpu/matmul.h"

using namespace engine;

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  int threads = 2, gemm_tok = 64;
  bool quick = false, shapes_on = true;
  int model_reps = 5;
  std::vector<DType> model_types;
  std::vector<std::string> fams;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-t" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "-f" && i + 1 < argc) fams.push_back(argv[++i]);
    else if (a == "-n" && i + 1 < argc) gemm_tok = std::atoi(argv[++i]);
    else if (a == "--quick") quick = true;
    else if (a == "--no-shapes") shapes_on = false;
    else if (a == "-m" && i + 1 < argc) {
      DType t;
      if (!dtype_from_name(argv[++i], &t)) return 2;
      model_types.push_back(t);
    } else if (a == "-r" && i + 1 < argc) model_reps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr,
                   "usage: kernels [-t THREADS] [-f scalar|avx2|avx512]... [-n GEMM_TOKENS] [--quick] [--no-shapes] "
                   "[-m f16|q8_0|...]... [-r REPS]\n");
      return 2;
    }
  }
  if (fams.empty()) fams.push_back(cpu::kernel_name());
  ThreadPool pool(threads);
  // Other processes may share this machine's cores and memory: every timing below
  // is a best-of, and bandwidth is re-measured alongside each shape's sweeps, so the
  // ratios compare undisturbed runs with each other.
  const double bw = cpu::measure_read_bandwidth(pool);
  std::printf("threads %d, measured read bandwidth %.2f GB/s (before)\n", pool.size(), bw / 1e9);
  struct Row {
    std::string fam;
    DType type;
    int64_t rows, cols;
    double mv_s, mm_s;
    size_t bytes;
    double bw;
  };
  std::vector<Row> results;

  const int64_t shapes[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0};
  std::mt19937 rng(1);
  std::normal_distribution<float> N(0, 0.02f);
  for (const std::string& fam : shapes_on ? fams : std::vector<std::string>{}) {
    if (!cpu::set_kernel_family(fam.c_str())) {
      std::printf("%s: not available on this CPU\n", fam.c_str());
      continue;
    }
    for (DType type : types) {
      for (auto& s : shapes) {
        const int64_t rows = s[0], cols = s[1];
        const size_t rb = dtype_row_bytes(type, cols), bytes = rb * rows;
        // One random copy, replicated to >= 1 GiB (at least 2 copies) for the DRAM-bound matvec.
        const size_t copies = std::max<size_t>(2, ((size_t)1 << 30) / bytes + 1);
        std::vector<uint8_t> mem(bytes * copies);
        {
          std::vector<float> row(cols);
          for (int64_t r = 0; r < rows; r++) {
            for (auto& v : row) v = N(rng);
            quantize_row(type, row.data(), mem.data() + r * rb, cols);
          }
          for (size_t c = 1; c < copies; c++) std::memcpy(mem.data() + c * bytes, mem.data(), bytes);
        }
        std::vector<float> x(gemm_tok * cols), y(gemm_tok * rows);
        for (auto& v : x) v = N(rng) * 50;

        // Matrix-vector: best of several sweeps over all copies, alternating with
        // bandwidth measurements, so each row's ratio compares moments close in time.
        double best_mv = 1e30, row_bw = 0;
        const int sweeps = quick ? 2 : 4;
        for (int sweep = 0; sweep < sweeps; sweep++) {
          row_bw = std::max(row_bw, cpu::measure_read_bandwidth(pool, (size_t)256 << 20));
          const double t0 = now_s();
          for (size_t c = 0; c < copies; c++) {
            cpu::WeightView w{type, rows, cols, mem.data() + c * bytes, rb};
            cpu::matmul(w, x.data(), 1, y.data(), pool);
          }
          best_mv = std::min(best_mv, (now_s() - t0) / copies);
        }
        // GEMM: best of a few calls on one copy (after a warm-up call).
        cpu::WeightView w{type, rows, cols, mem.data(), rb};
        cpu::matmul(w, x.data(), gemm_tok, y.data(), pool);
        double best_mm = 1e30;
        const int reps = fam == "scalar" ? 1 : (quick ? 2 : 5);
        for (int i = 0; i < reps; i++) {
          const double t0 = now_s();
          cpu::matmul(w, x.data(), gemm_tok, y.data(), pool);
          best_mm = std::min(best_mm, now_s() - t0);
        }
        results.push_back({fam, type, rows, cols, best_mv, best_mm, bytes, row_bw});
        std::fprintf(stderr, ".");
      }
    }
  }
  const double bw_after = cpu::measure_read_bandwidth(pool);
  std::fprintf(stderr, "\n");
  std::printf("measured read bandwidth %.2f GB/s (after)\n", bw_after / 1e9);
  std::printf("%-7s %-5s %-12s %11s %8s %7s %10s %12s\n", "family", "type", "rows x cols", "matvec GB/s", "bw GB/s",
              "of bw", "matvec ms", "gemm GFLOP/s");
  for (const Row& r : results) {
    const double gbs = r.bytes / r.mv_s;
    char shape[32];
    std::snprintf(shape, sizeof shape, "%ldx%ld", (long)r.rows, (long)r.cols);
    // Each row's ratio uses the bandwidth measured alongside its own sweeps.
    std::printf("%-7s %-5s %-12s %11.2f %8.2f %6.1f%% %10.3f %12.1f\n", r.fam.c_str(), dtype_name(r.type), shape,
                gbs / 1e9, r.bw / 1e9, 100 * gbs / r.bw, r.mv_s * 1e3, 2.0 * r.rows * r.cols * gemm_tok / r.mm_s / 1e9);
  }

  // Decode-like sweep: one matrix-vector product per weight of issue 2's benchmark
  // model (8 layers of q, k, v, o, gate, up, down, then the 32000-row head), in
  // order, as one decode step reads them. Bandwidth and sweeps alternate and the
  // best of each is compared, which filters out other processes' interference.
  if (!model_types.empty()) {
    cpu::set_kernel_family(fams[0].c_str());
    const int64_t D = 2048, F = 5632, KV = 256, V = 32000, L = 8;
    const int64_t mshapes[][2] = {{D, D}, {KV, D}, {KV, D}, {D, D}, {F, D}, {F, D}, {D, F}};
    for (DType type : model_types) {
      std::vector<std::vector<uint8_t>> store;
      std::vector<cpu::WeightView> ws;
      size_t total = 0;
      for (int64_t l = 0; l <= L; l++) {
        for (auto& s : mshapes) {
          const int64_t rows = l == L ? V : s[0], cols = l == L ? D : s[1];
          const size_t rb = dtype_row_bytes(type, cols);
          store.emplace_back(rb * rows);
          std::vector<float> row(cols);
          for (int64_t r = 0; r < rows; r++) {
            for (int64_t c = 0; c < cols; c += 97) row[c] = N(rng);  // sparse refresh: fast, still varied
            quantize_row(type, row.data(), store.back().data() + r * rb, cols);
          }
          ws.push_back({type, rows, cols, store.back().data(), rb});
          total += rb * rows;
          if (l == L) break;
        }
      }
      std::vector<float> x(F, 0.01f), y(V);
      double best_tok = 1e30, best_bw = 0;
      for (int rep = 0; rep < model_reps; rep++) {
        best_bw = std::max(best_bw, cpu::measure_read_bandwidth(pool));
        for (int i = 0; i < 3; i++) {
          const double t0 = now_s();
          for (const auto& w : ws) cpu::matmul(w, x.data(), 1, y.data(), pool);
          best_tok = std::min(best_tok, now_s() - t0);
        }
      }
      std::printf("decode sweep %-5s %s: %.1f MiB/token, %.2f ms/token (%.1f tok/s), %.2f GB/s = %.1f%% of %.2f GB/s\n",
                  dtype_name(type), fams[0].c_str(), total / 1048576.0, best_tok * 1e3, 1 / best_tok,
                  total / best_tok / 1e9, 100 * total / best_tok / best_bw, best_bw / 1e9);
    }
  }
  return 0;
}
