// Training throughput of a span of blocks (issue 7): for each model, in one run,
//   fwd       the training forward (llama_span_forward_train, f32, no checkpoints):
//             what a server's stateless forward RPC does per sequence;
//   fwd+bwd   llama_span_backward_from_input: the forward with checkpoints, then the
//             backward, which recomputes each block's activations (what a server's
//             stateless backward RPC does per sequence);
//   infer     the inference forward (LlamaModel::forward_span with an f16 KV cache),
//             for reference;
// as tokens/s (B sequences of n tokens, best of -r repeats after a warm-up; the
// three are interleaved within each repeat so that load from other processes hits
// them alike). Base weights are frozen, so the backward computes only dX = dY·W
// (no weight gradient): forward + recomputed forward + backward ≈ 3 forwards, the
// "theoretical 3x" the ratio is compared with.
//
//   train_bench -m MODEL [-m MODEL | -m A,B ...] [--first A] [--last B] [--tokens N]
//               [--batch B] [-t THREADS] [-r REPEATS] [--json] [--kernels]
//
// --last is exclusive: the default span is blocks [0, 2). --kernels adds, per model,
// the time of the products behind it: the first block's ffn_gate (n_ff × n_embd) and
// ffn_down (n_embd × n_ff), forward (linear) and transposed (linear_backward_input),
// at 1, 4, 16, 64 and 128 tokens, best of -r.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/error.h"
#include "core/thread_pool.h"
#include "cpu/linear.h"
#include "cpu/matmul.h"
#include "models/llama_backward.h"
#include "models/loaded_model.h"

using namespace engine;

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static const char* usage =
    "usage: train_bench -m MODEL [-m MODEL | -m A,B ...] [--first A] [--last B] [--tokens N] [--batch B]\n"
    "                   [-t THREADS] [-r REPEATS] [--json] [--kernels]\n"
    "  blocks [first, last) (default 0, 2); N tokens per sequence (128); B sequences (1);\n"
    "  2 threads; best of 3 repeats after one warm-up.\n";

// "F16", "Q8_0", "SpQR w3" ...: the format of the span's first linear.
static std::string weight_type(const LlamaModel& m, int64_t blk) {
  const cpu::Linear& l = m.block(blk).wq;
  if (l.spqr) return "SpQR w" + std::to_string(l.spqr->p.wbits);
  std::string s = dtype_name(l.dense.type);
  for (auto& c : s) c = (char)std::toupper((unsigned char)c);
  return s;
}

struct Stat {
  double best = 0, worst = 1e300;  // tokens/s
  void add(double v) { best = std::max(best, v), worst = std::min(worst, v); }
};

// The products a span's training spends its time in, one linear at a time.
static void kernel_table(const LlamaModel& m, int64_t blk, const std::string& type, ThreadPool& pool, int reps,
                         FILE* out) {
  const LlamaBlockWeights& w = m.block(blk);
  const struct {
    const char* name;
    const cpu::Linear* lin;
  } layers[] = {{"ffn_gate", &w.w_gate}, {"ffn_down", &w.w_down}};
  std::fprintf(out, "%-10s %-9s %11s %6s %10s %9s %10s %9s\n", "weights", "linear", "shape", "tokens", "fwd ms",
               "GFLOP/s", "bwd ms", "GFLOP/s");
  std::mt19937 rng(7);
  std::normal_distribution<float> N(0, 1);
  for (const auto& l : layers) {
    const int64_t rows = l.lin->rows(), cols = l.lin->cols();
    for (int64_t n : {1, 4, 16, 64, 128}) {
      std::vector<float> x((size_t)(n * cols)), y((size_t)(n * rows)), dy((size_t)(n * rows)), dx((size_t)(n * cols));
      for (auto& v : x) v = N(rng);
      for (auto& v : dy) v = N(rng);
      cpu::linear(*l.lin, x.data(), n, y.data(), pool);  // warm-up
      cpu::linear_backward_input(*l.lin, dy.data(), n, dx.data(), pool);
      double f = 1e30, b = 1e30;
      for (int r = 0; r < std::max(reps, 3); r++) {
        const double t0 = now_s();
        cpu::linear(*l.lin, x.data(), n, y.data(), pool);
        const double t1 = now_s();
        cpu::linear_backward_input(*l.lin, dy.data(), n, dx.data(), pool);
        const double t2 = now_s();
        f = std::min(f, t1 - t0), b = std::min(b, t2 - t1);
      }
      const double flop = 2.0 * (double)rows * (double)cols * (double)n;
      char shape[32];
      std::snprintf(shape, sizeof shape, "%lldx%lld", (long long)rows, (long long)cols);
      std::fprintf(out, "%-10s %-9s %11s %6lld %10.3f %9.1f %10.3f %9.1f\n", type.c_str(), l.name, shape,
                   (long long)n, f * 1e3, flop / f / 1e9, b * 1e3, flop / b / 1e9);
    }
  }
}

int main(int argc, char** argv) {
  std::vector<std::string> models;
  int64_t first = 0, last = 2, n = 128, B = 1;
  int threads = 2, reps = 3;
  bool json = false, kernels = false;
  for (int i = 1; i < argc; i++) {
    const std::string a = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "error: %s needs a value\n%s", a.c_str(), usage);
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "-m" || a == "--model") {
      std::stringstream ss(val());
      for (std::string s; std::getline(ss, s, ',');)
        if (!s.empty()) models.push_back(s);
    } else if (a == "--first") first = std::atoll(val().c_str());
    else if (a == "--last") last = std::atoll(val().c_str());
    else if (a == "--tokens" || a == "-n") n = std::atoll(val().c_str());
    else if (a == "--batch" || a == "-b") B = std::atoll(val().c_str());
    else if (a == "-t" || a == "--threads") threads = std::atoi(val().c_str());
    else if (a == "-r" || a == "--repetitions") reps = std::atoi(val().c_str());
    else if (a == "--json") json = true;
    else if (a == "--kernels") kernels = true;
    else if (a == "-h" || a == "--help") {
      std::printf("%s", usage);
      return 0;
    } else {
      std::fprintf(stderr, "error: unknown argument '%s'\n%s", a.c_str(), usage);
      return 2;
    }
  }
  if (models.empty() || n < 1 || B < 1 || reps < 1 || first < 0 || last <= first) {
    std::fprintf(stderr, "error: need -m, --tokens/--batch/-r >= 1 and --first < --last\n%s", usage);
    return 2;
  }

  ThreadPool pool(threads);
  struct Result {
    std::string path, type;
    int64_t d, n_layer;
    Stat fwd, fwdbwd, infer;
  };
  std::vector<Result> results;
  try {
    for (const std::string& path : models) {
      LlamaLoadOptions opts;
      opts.first_block = first;
      opts.last_block = last;
      opts.embeddings = false;
      opts.head = false;
      LoadedModel lm = load_model(path, opts, false);
      const LlamaModel& m = *lm.model;
      const LlamaHParams& hp = m.hparams();
      const int64_t d = hp.n_embd;
      Result res{path, weight_type(m, first), d, hp.n_layer, {}, {}, {}};
      std::fprintf(stderr, "train_bench: %s (%s), blocks [%lld, %lld), %lld x %lld tokens, %d threads, kernels %s\n",
                   path.c_str(), res.type.c_str(), (long long)first, (long long)last, (long long)B, (long long)n,
                   pool.size(), cpu::kernel_name());

      std::mt19937 rng(42);
      std::normal_distribution<float> N(0, 1);
      std::vector<float> x_in((size_t)(B * n * d)), dy_in((size_t)(B * n * d));
      for (auto& v : x_in) v = N(rng);
      for (auto& v : dy_in) v = N(rng) * 1e-2f;
      std::vector<float> x((size_t)(n * d)), dx((size_t)(n * d));
      KVCache cache(hp, first, last, n, DType::F16);

      auto run_fwd = [&] {
        for (int64_t s = 0; s < B; s++) {
          std::copy(x_in.begin() + s * n * d, x_in.begin() + (s + 1) * n * d, x.begin());
          llama_span_forward_train(m, first, last, x.data(), n, pool);
        }
      };
      auto run_fwdbwd = [&] {
        for (int64_t s = 0; s < B; s++) {
          std::copy(dy_in.begin() + s * n * d, dy_in.begin() + (s + 1) * n * d, dx.begin());
          llama_span_backward_from_input(m, first, last, x_in.data() + s * n * d, dx.data(), n, pool);
        }
      };
      auto run_infer = [&] {
        for (int64_t s = 0; s < B; s++) {
          std::copy(x_in.begin() + s * n * d, x_in.begin() + (s + 1) * n * d, x.begin());
          cache.clear();
          m.forward_span(first, last, cache, x.data(), n, pool);
        }
      };
      auto timed = [&](auto& fn) {
        const double t0 = now_s();
        fn();
        return (double)(B * n) / (now_s() - t0);
      };
      // Warm-up: page the weights in, size the allocators' arenas.
      run_fwd(), run_fwdbwd(), run_infer();
      for (int r = 0; r < reps; r++) {
        const double f = timed(run_fwd), fb = timed(run_fwdbwd), inf = timed(run_infer);
        res.fwd.add(f), res.fwdbwd.add(fb), res.infer.add(inf);
        std::fprintf(stderr, "train_bench: repeat %d/%d: fwd %.2f, fwd+bwd %.2f, infer %.2f tok/s (ratio %.2fx)\n",
                     r + 1, reps, f, fb, inf, f / fb);
      }
      results.push_back(res);
      // With --json the products go to stderr, so that stdout stays one JSON document.
      if (kernels) kernel_table(m, first, res.type, pool, reps, json ? stderr : stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }

  if (json) {
    std::printf("[");
    for (size_t i = 0; i < results.size(); i++) {
      const Result& r = results[i];
      std::printf("%s{\"model\":\"%s\",\"type\":\"%s\",\"first\":%lld,\"last\":%lld,\"tokens\":%lld,\"batch\":%lld,"
                  "\"threads\":%d,\"kernels\":\"%s\",\"repeats\":%d,"
                  "\"fwd_tok_s\":%.3f,\"fwd_tok_s_worst\":%.3f,\"fwdbwd_tok_s\":%.3f,\"fwdbwd_tok_s_worst\":%.3f,"
                  "\"infer_tok_s\":%.3f,\"infer_tok_s_worst\":%.3f,\"fwdbwd_over_fwd\":%.4f,\"over_theory\":%.4f}",
                  i ? "," : "", r.path.c_str(), r.type.c_str(), (long long)first, (long long)last, (long long)n,
                  (long long)B, pool.size(), cpu::kernel_name(), reps, r.fwd.best, r.fwd.worst, r.fwdbwd.best,
                  r.fwdbwd.worst, r.infer.best, r.infer.worst, r.fwd.best / r.fwdbwd.best,
                  r.fwd.best / r.fwdbwd.best / 3.0);
    }
    std::printf("]\n");
    return 0;
  }
  std::printf("blocks [%lld, %lld), %lld x %lld tokens, %d threads, kernels %s; tokens/s, best of %d (worst)\n",
              (long long)first, (long long)last, (long long)B, (long long)n, pool.size(), cpu::kernel_name(), reps);
  std::printf("%-10s %20s %20s %20s %13s %12s\n", "weights", "fwd (train)", "fwd+bwd", "infer (f16 KV)",
              "fwd+bwd/fwd", "vs 3x");
  for (const Result& r : results) {
    char f[40], fb[40], inf[40];
    std::snprintf(f, sizeof f, "%.1f (%.1f)", r.fwd.best, r.fwd.worst);
    std::snprintf(fb, sizeof fb, "%.1f (%.1f)", r.fwdbwd.best, r.fwdbwd.worst);
    std::snprintf(inf, sizeof inf, "%.1f (%.1f)", r.infer.best, r.infer.worst);
    const double ratio = r.fwd.best / r.fwdbwd.best;
    std::printf("%-10s %20s %20s %20s %12.2fx %11.2fx\n", r.type.c_str(), f, fb, inf, ratio, ratio / 3.0);
  }
  return 0;
}
