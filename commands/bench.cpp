// engine bench: prefill and decode speed of a local model, and how close decode
// comes to the machine's memory bandwidth (measured in the same run): decode
// reads every weight once per token, so bytes/token × tokens/s ÷ bandwidth is
// the fraction of the hardware limit we reach.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "commands/model_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "cpu/bandwidth.h"
#include "cpu/matmul.h"
#include "models/loaded_model.h"

using namespace engine;

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

static int cmd_bench(int argc, char** argv) {
  ModelFlags mf;
  int n_prompt = 64, n_gen = 32, reps = 3;
  bool json = false;
  ArgParser p("bench", "Measure prefill and decode speed, and decode's share of the measured memory bandwidth.");
  mf.add_to(p);
  p.add("-p,--n-prompt", "N", "prompt tokens for the prefill test", &n_prompt);
  p.add("-n,--n-gen", "N", "tokens for the decode test", &n_gen);
  p.add("-r,--repetitions", "N", "repetitions (the best is reported)", &reps);
  p.flag("--json", "print results as JSON", &json);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    if (n_prompt < 1 || n_gen < 1 || reps < 1) throw Error("-p, -n and -r must be >= 1");
    LoadedModel m = load_model(mf.model, {}, false);
    const LlamaHParams& hp = m.model->hparams();
    ThreadPool pool(mf.threads);
    const int64_t ctx = n_prompt + n_gen + 1;
    std::mt19937 rng(1234);
    std::uniform_int_distribution<int32_t> tok(0, (int32_t)hp.n_vocab - 1);
    std::vector<int32_t> prompt(n_prompt);
    for (auto& t : prompt) t = tok(rng);

    std::fprintf(stderr, "bench: measuring memory read bandwidth with %d threads...\n", pool.size());
    double bw = cpu::measure_read_bandwidth(pool);

    double best_pp = 0, best_tg = 0;
    for (int r = 0; r < reps; r++) {
      LocalRunner runner(*m.model, ctx, pool, mf.kv_type());
      double t0 = now_s();
      runner.eval(prompt);
      double t1 = now_s();
      best_pp = std::max(best_pp, n_prompt / (t1 - t0));
      runner.reset();
      runner.eval({prompt[0]});
      double t2 = now_s();
      for (int i = 0; i < n_gen; i++) runner.eval({tok(rng)});
      double t3 = now_s();
      best_tg = std::max(best_tg, n_gen / (t3 - t2));
      std::fprintf(stderr, "bench: repetition %d/%d: prefill %.1f tok/s, decode %.2f tok/s\n", r + 1, reps,
                   n_prompt / (t1 - t0), n_gen / (t3 - t2));
    }
    const size_t bytes_per_token = m.model->weight_bytes(0, hp.n_layer, true);
    const double eff_bw = (double)bytes_per_token * best_tg;
    const double frac = eff_bw / bw;
    const char* kernels = cpu::kernel_name();
    if (json) {
      std::printf("{\"model\":\"%s\",\"threads\":%d,\"kernels\":\"%s\",\"prefill_tokens\":%d,\"prefill_tok_s\":%.2f,"
                  "\"decode_tokens\":%d,\"decode_tok_s\":%.3f,\"weight_bytes_per_token\":%zu,"
                  "\"decode_bandwidth_gb_s\":%.3f,\"measured_bandwidth_gb_s\":%.3f,\"bandwidth_fraction\":%.4f}\n",
                  mf.model.c_str(), pool.size(), kernels, n_prompt, best_pp, n_gen, best_tg, bytes_per_token,
                  eff_bw / 1e9, bw / 1e9, frac);
    } else {
      std::printf("model                 %s\n", mf.model.c_str());
      std::printf("threads / kernels     %d / %s\n", pool.size(), kernels);
      std::printf("prefill (%3d tokens)  %.1f tokens/s\n", n_prompt, best_pp);
      std::printf("decode  (%3d tokens)  %.2f tokens/s\n", n_gen, best_tg);
      std::printf("weights per token     %.1f MiB\n", bytes_per_token / 1048576.0);
      std::printf("decode bandwidth      %.2f GB/s\n", eff_bw / 1e9);
      std::printf("measured bandwidth    %.2f GB/s\n", bw / 1e9);
      std::printf("ratio                 %.1f%% of measured bandwidth\n", 100 * frac);
    }
    return 0;
  });
}

ENGINE_COMMAND("bench", "prefill/decode speed and decode's share of memory bandwidth", cmd_bench);
