// Full-parameter training throughput and its model-FLOPs utilisation (issue 16):
// in one run, interleaved so that load from other processes hits both alike,
//   step   model_loss_and_grad + AdamW on a batch (what `engine train` does per step),
//          as tokens/s;
//   gemm   the engine's own F32 matrix product (cpu::matmul) on the model's largest
//          shape, [batch·seqlen tokens] × [n_ff × n_embd], as FLOP/s;
//   MFU    6 · parameters · tokens/s over the gemm's FLOP/s: the share of what the
//          engine's own GEMM could do that the training step achieves (attention's
//          FLOPs are not counted, as in the usual 6·N·T estimate).
//
//   pretrain_bench [--dim D --ffn F --layers L --heads H --vocab V] [--batch B]
//                  [--seqlen T] [-t THREADS] [-r REPEATS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/thread_pool.h"
#include "cpu/matmul.h"
#include "train/model_params.h"
#include "train/optimizer.h"

using namespace engine;
using namespace engine::train;

static double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main(int argc, char** argv) {
  int64_t dim = 256, ffn = 0, layers = 4, heads = 8, vocab = kByteVocabSize, batch = 8, seqlen = 128;
  int threads = 2, repeats = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (a == "--dim") dim = v;
    else if (a == "--ffn") ffn = v;
    else if (a == "--layers") layers = v;
    else if (a == "--heads") heads = v;
    else if (a == "--vocab") vocab = v;
    else if (a == "--batch") batch = v;
    else if (a == "--seqlen") seqlen = v;
    else if (a == "-t") threads = (int)v;
    else if (a == "-r") repeats = (int)v;
    else {
      std::fprintf(stderr, "usage: pretrain_bench [--dim D --ffn F --layers L --heads H --vocab V] [--batch B] "
                           "[--seqlen T] [-t THREADS] [-r REPEATS]\n");
      return 2;
    }
  }
  if (ffn == 0) ffn = ((dim * 8 / 3) + 31) / 32 * 32;
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_vocab = vocab, hp.n_embd = dim, hp.n_ff = ffn, hp.n_layer = layers, hp.n_head = heads, hp.n_head_kv = heads;
  hp.head_dim = dim / heads, hp.n_rot = dim / heads, hp.n_ctx_train = seqlen;
  ModelParams p = ModelParams::init_random(hp, 1, 0.02f);
  ThreadPool pool(threads);

  // A batch of random windows (the numbers do not depend on what the tokens are).
  std::mt19937 rng(1);
  std::vector<Window> windows((size_t)batch);
  for (auto& w : windows) {
    w.inputs.resize((size_t)seqlen), w.targets.resize((size_t)seqlen);
    for (int64_t t = 0; t < seqlen; t++) w.inputs[t] = (int32_t)(rng() % vocab), w.targets[t] = (int32_t)(rng() % vocab);
  }
  std::vector<float> grad((size_t)p.size()), m((size_t)p.size()), v((size_t)p.size());
  AdamWConfig adam;
  int64_t t_adam = 0;
  auto step = [&] {
    std::fill(grad.begin(), grad.end(), 0.0f);
    model_loss_and_grad(p, windows, 1.0f / (float)(batch * seqlen), grad.data(), pool);
    adamw_update(p.data.data(), grad.data(), m.data(), v.data(), p.size(), ++t_adam, adam, 1e-4f, 0.0f);
  };

  // The GEMM: the FFN's up projection over the batch's tokens.
  const int64_t n = batch * seqlen;
  std::vector<float> W((size_t)(ffn * dim)), X((size_t)(n * dim)), Y((size_t)(n * ffn));
  std::normal_distribution<float> N(0.0f, 1.0f);
  for (auto& x : W) x = N(rng);
  for (auto& x : X) x = N(rng);
  const cpu::WeightView wv{DType::F32, ffn, dim, W.data(), (size_t)dim * sizeof(float)};
  auto gemm = [&] { cpu::matmul(wv, X.data(), n, Y.data(), pool); };

  step(), gemm();  // warm-up
  double best_step = 1e30, best_gemm = 1e30;
  for (int r = 0; r < repeats; r++) {
    double t0 = now_s();
    step();
    best_step = std::min(best_step, now_s() - t0);
    t0 = now_s();
    for (int k = 0; k < 3; k++) gemm();
    best_gemm = std::min(best_gemm, (now_s() - t0) / 3);
  }
  const double params = (double)p.size();
  const double tok_s = (double)n / best_step;
  const double gemm_flops = 2.0 * (double)n * (double)ffn * (double)dim / best_gemm;
  const double model_flops = 6.0 * params * tok_s;
  std::printf("pretrain_bench: dim %lld, ffn %lld, %lld layers, %lld heads, vocab %lld: %.2f M parameters; batch %lld x "
              "%lld tokens, %d threads, best of %d\n",
              (long long)dim, (long long)ffn, (long long)layers, (long long)heads, (long long)vocab, params / 1e6,
              (long long)batch, (long long)seqlen, threads, repeats);
  std::printf("  training step   %8.3f s   %9.0f tokens/s   %7.2f GFLOP/s (6 x params x tokens/s)\n", best_step,
              tok_s, model_flops / 1e9);
  std::printf("  engine F32 GEMM [%lld x %lld] x [%lld x %lld]: %7.2f GFLOP/s\n", (long long)n, (long long)dim,
              (long long)dim, (long long)ffn, gemm_flops / 1e9);
  std::printf("  MFU against the engine's own GEMM: %.1f%%\n", 100.0 * model_flops / gemm_flops);
  return 0;
}
