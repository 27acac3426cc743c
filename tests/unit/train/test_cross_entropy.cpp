// The fused, chunked head + cross-entropy against a double-precision reference and
// central finite differences. Bounds: loss 1e-5 relative (f32 logits, double
// log-sum-exp); dh vs finite differences 1e-3 (f32 through norm, product, softmax).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <random>

#include "models/loaded_model.h"
#include "tests/unit/models/block_reference.h"
#include "train/cross_entropy.h"

using namespace engine;
using testref::Vec;

namespace {

std::vector<float> randn(size_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> N(0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = N(rng);
  return v;
}

// Σ_t −log softmax(W·norm(h_t)·g)[target_t] in double.
double ref_loss(const Vec& h, const Vec& W, const Vec& g, const std::vector<int32_t>& tg, int64_t d, int64_t V,
                double eps) {
  double loss = 0;
  for (size_t t = 0; t < tg.size(); t++) {
    if (tg[t] < 0) continue;
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += h[t * d + i] * h[t * d + i];
    double s = 1 / std::sqrt(ss / d + eps);
    std::vector<double> l((size_t)V);
    double mx = -1e300;
    for (int64_t v = 0; v < V; v++) {
      double z = 0;
      for (int64_t i = 0; i < d; i++) z += W[v * d + i] * h[t * d + i] * s * g[i];
      l[v] = z;
      mx = std::max(mx, z);
    }
    double sum = 0;
    for (double z : l) sum += std::exp(z - mx);
    loss += std::log(sum) + mx - l[tg[t]];
  }
  return loss;
}

}  // namespace

TEST(CrossEntropy, MatchesReferenceAndFiniteDifferences) {
  ThreadPool pool(2);
  for (DType type : {DType::F32, DType::F16, DType::Q8_0}) {
    std::mt19937 rng(3);
    const int64_t d = 32, V = 37, n = 7;
    auto wf = randn((size_t)(V * d), rng, 0.5f);
    const size_t rb = dtype_row_bytes(type, d);
    std::vector<uint8_t> store(V * rb);
    for (int64_t v = 0; v < V; v++) quantize_row(type, &wf[v * d], store.data() + v * rb, d);
    auto g = randn((size_t)d, rng, 0.2f);
    for (auto& x : g) x += 1;
    train::LmHead head;
    head.n_embd = d, head.n_vocab = V, head.norm = g.data();
    head.out = cpu::WeightView{type, V, d, store.data(), rb};
    auto h = randn((size_t)(n * d), rng, 1.0f);
    std::vector<int32_t> tg = {3, -1, 36, 0, 12, -1, 5};

    cpu::Linear lin;
    lin.dense = head.out;
    Vec W = testref::dequantized(lin, pool), gd(g.begin(), g.end()), hd(h.begin(), h.end());
    const double want = ref_loss(hd, W, gd, tg, d, V, head.eps);
    // Q8_0 products of fewer than 16 tokens round the activations (see cpu/matmul.h): looser bound.
    const double bound = type == DType::Q8_0 ? 1e-2 : 1e-3;
    for (int64_t chunk : {1, 3, 64}) {
      std::vector<float> dh((size_t)(n * d), 0.0f);
      auto r = train::head_cross_entropy(head, h.data(), tg.data(), n, 1.0f, dh.data(), pool, chunk);
      EXPECT_EQ(r.n_scored, 5);
      EXPECT_NEAR(r.loss_sum, want, (type == DType::Q8_0 ? 1e-2 : 1e-5) * want) << dtype_name(type);
      Vec num(hd.size());
      for (size_t i = 0; i < hd.size(); i++) {
        Vec p = hd, m = hd;
        p[i] += 1e-5, m[i] -= 1e-5;
        num[i] = (ref_loss(p, W, gd, tg, d, V, head.eps) - ref_loss(m, W, gd, tg, d, V, head.eps)) / 2e-5;
      }
      EXPECT_LT(testref::rel_err(dh, num), bound) << dtype_name(type) << " chunk " << chunk;
    }
  }
}

// On the real model the fused loss equals cross-entropy of LlamaModel::head's logits.
TEST(CrossEntropy, AgreesWithTheModelHead) {
  const std::string path = std::string(ENGINE_SHARED_DIR) + "/models/stories260K.gguf";
  if (!std::fopen(path.c_str(), "rb")) GTEST_SKIP() << "no " << path;
  LoadedModel m = load_model(path, {}, false);
  ThreadPool pool(2);
  const auto& hp = m.model->hparams();
  train::LmHead head = train::LmHead::from_model(*m.model);
  const int64_t n = 20;
  std::mt19937 rng(1);
  auto h = randn((size_t)(n * hp.n_embd), rng, 1.0f);
  std::vector<int32_t> tg(n);
  for (auto& t : tg) t = (int32_t)(rng() % hp.n_vocab);
  std::vector<float> logits((size_t)(n * hp.n_vocab));
  m.model->head(h.data(), n, logits.data(), pool);
  double want = 0;
  for (int64_t t = 0; t < n; t++) {
    const float* l = &logits[t * hp.n_vocab];
    double mx = *std::max_element(l, l + hp.n_vocab), s = 0;
    for (int64_t v = 0; v < hp.n_vocab; v++) s += std::exp(l[v] - mx);
    want += std::log(s) + mx - l[tg[t]];
  }
  auto r = train::head_cross_entropy(head, h.data(), tg.data(), n, 1.0f, nullptr, pool, 7);
  EXPECT_NEAR(r.loss_sum, want, 1e-5 * want);
}
