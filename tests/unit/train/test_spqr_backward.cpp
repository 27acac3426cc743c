// Backward through frozen SpQR weights: dX = dY·W straight from the packed codes
// (the transposed tile product, outliers included) equals dY·W_dequantized, and a
// whole block stored in SpQR passes the finite-difference check. Shapes are ragged:
// widths that are not multiples of the 16-column groups or 16-row statistic groups.
// Bounds: dX vs dY·W_deq 1e-5 relative (f32 sums); block vs finite differences 1e-3
// (as for dense formats: the reference uses the same dequantized weights).
#include <gtest/gtest.h>

#include <memory>
#include <random>

#include "models/llama_backward.h"
#include "quant/gptq.h"
#include "tests/unit/models/block_reference.h"

using namespace engine;
using testref::Vec;

namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> N(0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = N(rng);
  return v;
}

std::unique_ptr<SpqrLayer> spqr_random(int64_t rows, int64_t cols, std::mt19937& rng, ThreadPool& pool) {
  auto W = randn((size_t)(rows * cols), rng, 1.0f / std::sqrt((float)cols));
  for (int k = 0; k < 3; k++) W[rng() % W.size()] *= 8.0f;  // a few outliers
  const int64_t n = 64;
  auto X = randn((size_t)(n * cols), rng, 1.0f);
  std::vector<double> H((size_t)(cols * cols));
  for (int64_t i = 0; i < cols; i++)
    for (int64_t j = 0; j < cols; j++) {
      double s = 0;
      for (int64_t t = 0; t < n; t++) s += (double)X[t * cols + i] * X[t * cols + j];
      H[i * cols + j] = 2.0 * s / n;
    }
  QuantConfig cfg;  // SpQR w3, 16-wide groups
  return std::make_unique<SpqrLayer>(quantize_layer(W, rows, cols, H, cfg, pool, nullptr));
}

}  // namespace

TEST(SpqrBackward, InputGradientIsDyTimesDequantizedW) {
  ThreadPool pool(2);
  std::mt19937 rng(1);
  for (auto [rows, cols, n] : {std::tuple<int64_t, int64_t, int64_t>{37, 20, 1}, {24, 53, 5}, {16, 16, 19}}) {
    auto L = spqr_random(rows, cols, rng, pool);
    EXPECT_GT(L->n_outliers, 0);
    cpu::Linear lin;
    lin.spqr = L.get();
    Vec W = testref::dequantized(lin, pool);
    auto dy = randn((size_t)(n * rows), rng, 1.0f);
    std::vector<float> dx((size_t)(n * cols));
    cpu::linear_backward_input(lin, dy.data(), n, dx.data(), pool);
    Vec want((size_t)(n * cols), 0.0);
    for (int64_t t = 0; t < n; t++)
      for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) want[t * cols + c] += dy[t * rows + r] * W[r * cols + c];
    EXPECT_LT(testref::rel_err(dx, want), 1e-5) << rows << "x" << cols;
  }
}

TEST(SpqrBackward, WholeBlockMatchesFiniteDifferences) {
  ThreadPool pool(2);
  std::mt19937 rng(7);
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_embd = 20, hp.n_head = 4, hp.n_head_kv = 2, hp.head_dim = 6, hp.n_rot = 6, hp.n_ff = 36;
  hp.n_layer = 1, hp.n_vocab = 8, hp.rope_freq_base = 100.0f;
  std::vector<std::unique_ptr<SpqrLayer>> layers;
  auto lin = [&](int64_t rows, int64_t cols) {
    layers.push_back(spqr_random(rows, cols, rng, pool));
    cpu::Linear l;
    l.spqr = layers.back().get();
    return l;
  };
  std::vector<float> an = randn(20, rng, 0.2f), fn = randn(20, rng, 0.2f);
  for (auto& x : an) x += 1;
  for (auto& x : fn) x += 1;
  LlamaBlockWeights w;
  w.attn_norm = an.data(), w.ffn_norm = fn.data();
  w.wq = lin(hp.q_dim(), 20), w.wk = lin(hp.kv_dim(), 20), w.wv = lin(hp.kv_dim(), 20);
  w.wo = lin(20, hp.q_dim()), w.w_gate = lin(36, 20), w.w_up = lin(36, 20), w.w_down = lin(20, 36);

  const int64_t n = 5;
  auto x = randn((size_t)(n * 20), rng, 1.0f), r = randn((size_t)(n * 20), rng, 1.0f);
  LlamaBlockActs acts;
  auto y = x;
  llama_block_forward_train(hp, w, y.data(), n, pool, &acts);
  std::vector<float> dx = r;
  llama_block_backward(hp, w, acts, dx.data(), pool);

  testref::RefBlock ref(hp, w, pool);
  Vec yref = ref.forward(Vec(x.begin(), x.end()), n);
  EXPECT_LT(testref::rel_err(y, yref), 1e-4);
  Vec num = testref::numeric_grad([&](const Vec& xx) { return ref.forward(xx, n); }, Vec(x.begin(), x.end()),
                                  Vec(r.begin(), r.end()));
  EXPECT_LT(testref::rel_err(dx, num), 1e-3);
}
