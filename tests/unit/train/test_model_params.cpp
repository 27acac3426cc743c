// The flat-parameter model of full-parameter training (train/model_params.h):
// every tensor's gradient against finite differences of a double-precision model,
// the GGUF round trip, and the byte vocabulary.
//
// Gradient bound: |g·v − dL/dε| / |dL/dε| < 1e-3 along random directions v of
// each tensor. The analytic gradient runs in f32 (error ~1e-5 relative); the
// numeric one is a central difference of the exact double model (error ~1e-9);
// a missing or wrong term is off by O(1).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <unistd.h>

#include "core/error.h"
#include "models/tokenizer.h"
#include "tests/unit/models/block_reference.h"
#include "train/model_params.h"

using namespace engine;
using namespace engine::train;
using testref::Vec;

namespace {

LlamaHParams tiny_hp(int64_t vocab = 37) {
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_vocab = vocab, hp.n_embd = 16, hp.n_ff = 24, hp.n_layer = 2, hp.n_head = 4, hp.n_head_kv = 2;
  hp.n_ctx_train = 32;
  hp.rope_freq_base = 100.0f;  // high rotation frequencies even at 6 positions
  return hp;
}

// Random init, with norms that are not all ones (so their gradients are general).
ModelParams tiny_model(uint64_t seed, int64_t vocab = 37) {
  ModelParams p = ModelParams::init_random(tiny_hp(vocab), seed, 0.3f);
  std::mt19937 rng((uint32_t)seed);
  std::normal_distribution<float> N(0.0f, 0.1f);
  for (const ParamTensor& t : p.tensors)
    if (!t.is_matrix())
      for (int64_t i = 0; i < t.numel(); i++) p.data[t.offset + i] += N(rng);
  return p;
}

// `count` windows of `len` tokens, the last one `last_len` (when given).
std::vector<Window> random_windows(int64_t count, int64_t len, int64_t vocab, uint32_t seed, int64_t last_len = 0) {
  std::mt19937 rng(seed);
  std::vector<Window> ws((size_t)count);
  for (auto& w : ws) {
    const int64_t l = &w == &ws.back() && last_len ? last_len : len;
    for (int64_t t = 0; t < l; t++) {
      w.inputs.push_back((int32_t)(rng() % vocab));
      w.targets.push_back((int32_t)(rng() % vocab));
    }
  }
  ws[0].targets[1] = -1;  // an unscored position
  return ws;
}

// Σ cross-entropy of the model whose parameters are theta (p's layout), in double.
double ref_loss(const ModelParams& p, const Vec& theta, const std::vector<Window>& ws, ThreadPool& pool) {
  const LlamaHParams& hp = p.hp;
  const int64_t d = hp.n_embd, V = hp.n_vocab;
  auto slice = [&](const std::string& name) {
    const ParamTensor& t = p.tensor(name);
    return Vec(theta.begin() + t.offset, theta.begin() + t.offset + t.numel());
  };
  std::vector<testref::RefBlock> blocks;
  for (int64_t b = 0; b < hp.n_layer; b++) {
    testref::RefBlock r(hp, p.block(b), pool);
    const std::string pre = "blk." + std::to_string(b) + ".";
    r.attn_norm = slice(pre + "attn_norm.weight"), r.ffn_norm = slice(pre + "ffn_norm.weight");
    r.wq = slice(pre + "attn_q.weight"), r.wk = slice(pre + "attn_k.weight"), r.wv = slice(pre + "attn_v.weight");
    r.wo = slice(pre + "attn_output.weight"), r.wg = slice(pre + "ffn_gate.weight");
    r.wu = slice(pre + "ffn_up.weight"), r.wd = slice(pre + "ffn_down.weight");
    blocks.push_back(std::move(r));
  }
  const Vec emb = slice("token_embd.weight"), out = slice("output.weight"), onorm = slice("output_norm.weight");
  double loss = 0;
  for (const Window& w : ws) {
    const int64_t n = (int64_t)w.inputs.size();
    Vec x((size_t)(n * d));
    for (int64_t t = 0; t < n; t++)
      for (int64_t i = 0; i < d; i++) x[t * d + i] = emb[w.inputs[t] * d + i];
    for (const auto& b : blocks) x = b.forward(x, n);
    const Vec h = blocks[0].norm(x, onorm, n);
    const Vec logits = testref::RefBlock::lin(out, h, n, V, d);
    for (int64_t t = 0; t < n; t++) {
      if (w.targets[t] < 0) continue;
      double mx = -1e300, s = 0;
      for (int64_t v = 0; v < V; v++) mx = std::max(mx, logits[t * V + v]);
      for (int64_t v = 0; v < V; v++) s += std::exp(logits[t * V + v] - mx);
      loss += std::log(s) + mx - logits[t * V + w.targets[t]];
    }
  }
  return loss;
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/model_params_" + std::to_string(getpid()) + "_" + name;
}

}  // namespace

TEST(ModelParams, LayoutIsContiguousInLlamaCppOrder) {
  ModelParams p = ModelParams::layout(tiny_hp());
  ASSERT_EQ(p.tensors.size(), 3u + 9u * 2u);
  EXPECT_EQ(p.tensors[0].name, "token_embd.weight");
  EXPECT_EQ(p.tensors[1].name, "output_norm.weight");
  EXPECT_EQ(p.tensors[2].name, "output.weight");
  EXPECT_EQ(p.tensors[3].name, "blk.0.attn_norm.weight");
  EXPECT_EQ(p.tensors.back().name, "blk.1.ffn_down.weight");
  int64_t off = 0;
  for (const ParamTensor& t : p.tensors) {
    EXPECT_EQ(t.offset, off) << t.name;
    off += t.numel();
  }
  EXPECT_EQ(off, p.size());
  EXPECT_EQ(p.tensor("blk.1.attn_k.weight").ne, (std::vector<int64_t>{16, 8}));  // [cols, rows]: kv_dim 8
  EXPECT_EQ(p.hp.head_dim, 4);
  EXPECT_EQ(p.hp.n_rot, 4);
  EXPECT_THROW(p.tensor("blk.2.attn_q.weight"), Error);
  // Views point into data.
  const LlamaBlockWeights w = p.block(1);
  EXPECT_EQ(w.wv.dense.data, p.ptr("blk.1.attn_v.weight"));
  EXPECT_EQ(w.wo.rows(), 16);
  EXPECT_EQ(w.wo.cols(), 16);
  EXPECT_EQ(w.ffn_norm, p.ptr("blk.1.ffn_norm.weight"));
  EXPECT_THROW(p.block(2), Error);
}

TEST(ModelParams, InitIsDeterministic) {
  ModelParams a = ModelParams::init_random(tiny_hp(), 7, 0.02f), b = ModelParams::init_random(tiny_hp(), 7, 0.02f);
  ModelParams c = ModelParams::init_random(tiny_hp(), 8, 0.02f);
  EXPECT_EQ(a.data, b.data);
  EXPECT_EQ(a.checksum(), b.checksum());
  EXPECT_NE(a.checksum(), c.checksum());
  EXPECT_EQ(a.data[a.tensor("output_norm.weight").offset], 1.0f);
  // Residual projections are scaled by 1/sqrt(2·n_layer) = 1/2.
  auto rms = [&](const std::string& name) {
    const ParamTensor& t = a.tensor(name);
    double s = 0;
    for (int64_t i = 0; i < t.numel(); i++) s += (double)a.data[t.offset + i] * a.data[t.offset + i];
    return std::sqrt(s / t.numel());
  };
  EXPECT_NEAR(rms("token_embd.weight"), 0.02, 0.002);
  EXPECT_NEAR(rms("blk.0.ffn_down.weight"), 0.01, 0.001);
  // Rows are independent streams, not shifted copies of one another.
  const float* e = a.ptr("token_embd.weight");
  for (int64_t r = 0; r + 2 < a.hp.n_vocab; r++) {
    EXPECT_NE(e[(r + 2) * 16 + 1], e[r * 16]);
    EXPECT_NE(e[(r + 1) * 16], e[r * 16]);
  }
  a.data[5] += 1e-7f;
  EXPECT_NE(a.checksum(), b.checksum());
  EXPECT_NO_THROW(a.check_same_shape(tiny_hp(), "peer"));
  LlamaHParams other = tiny_hp();
  other.n_ff = 32;
  EXPECT_THROW(a.check_same_shape(other, "peer"), Error);
}

// Every tensor's gradient against central differences of the double model.
TEST(ModelParams, GradientMatchesFiniteDifferencesEveryTensor) {
  ThreadPool pool(2);
  const ModelParams p = tiny_model(3);
  // 6 and 20 tokens: weight gradients below and above 16 tokens take different
  // paths in cpu::linear_backward_weight (a loop; the matmul kernels).
  const std::vector<Window> ws = random_windows(2, 6, p.hp.n_vocab, 4, 20);
  const float scale = 0.5f;
  // The gradient is accumulated: start from a non-zero vector and subtract it.
  std::vector<float> start((size_t)p.size());
  for (size_t i = 0; i < start.size(); i++) start[i] = 0.01f * (float)(i % 7);
  std::vector<float> grad = start;
  const CrossEntropyResult r = model_loss_and_grad(p, ws, scale, grad.data(), pool);
  for (size_t i = 0; i < grad.size(); i++) grad[i] -= start[i];
  EXPECT_EQ(r.n_scored, 25);

  const Vec theta(p.data.begin(), p.data.end());
  const double L0 = ref_loss(p, theta, ws, pool);
  EXPECT_NEAR(r.loss_sum, L0, 1e-4 * std::abs(L0));

  std::mt19937 rng(5);
  std::normal_distribution<double> N(0, 1);
  const double h = 1e-5;
  for (const ParamTensor& t : p.tensors) {
    for (int dir = 0; dir < 2; dir++) {
      Vec v((size_t)t.numel());
      for (auto& e : v) e = N(rng);
      double analytic = 0;
      Vec tp = theta, tm = theta;
      for (int64_t i = 0; i < t.numel(); i++) {
        analytic += (double)grad[t.offset + i] * v[i];
        tp[t.offset + i] += h * v[i];
        tm[t.offset + i] -= h * v[i];
      }
      const double numeric = scale * (ref_loss(p, tp, ws, pool) - ref_loss(p, tm, ws, pool)) / (2 * h);
      EXPECT_NEAR(analytic, numeric, 1e-3 * std::abs(numeric) + 1e-7) << t.name << " direction " << dir;
    }
  }
  // The embedding gradient is sparse: rows of tokens that never occur stay zero.
  std::vector<bool> used((size_t)p.hp.n_vocab, false);
  for (const Window& w : ws)
    for (int32_t tok : w.inputs) used[tok] = true;
  const ParamTensor& te = p.tensor("token_embd.weight");
  for (int64_t tok = 0; tok < p.hp.n_vocab; tok++) {
    if (used[tok]) continue;
    for (int64_t i = 0; i < p.hp.n_embd; i++) ASSERT_EQ(grad[te.offset + tok * p.hp.n_embd + i], 0.0f);
  }
}

// The head's parameter gradients do not depend on whether dhidden is wanted.
TEST(ModelParams, HeadGradientsWithoutInputGradient) {
  ThreadPool pool(1);
  const ModelParams p = tiny_model(17);
  const int64_t n = 70, d = p.hp.n_embd, V = p.hp.n_vocab;  // two chunks: 64 + 6
  LmHead head;
  head.n_embd = d, head.n_vocab = V, head.eps = p.hp.rms_eps, head.norm = p.ptr("output_norm.weight");
  head.out = cpu::WeightView{DType::F32, V, d, p.ptr("output.weight"), (size_t)d * sizeof(float)};
  std::mt19937 rng(18);
  std::normal_distribution<float> N(0, 1);
  std::vector<float> h((size_t)(n * d)), dh((size_t)(n * d), 0.0f);
  std::vector<int32_t> tg((size_t)n);
  for (auto& e : h) e = N(rng);
  for (auto& t : tg) t = (int32_t)(rng() % V);
  std::vector<float> dout_a((size_t)(V * d), 0.0f), dnorm_a((size_t)d, 0.0f), dout_b = dout_a, dnorm_b = dnorm_a;
  const LmHeadGrads a{dout_a.data(), dnorm_a.data()}, b{dout_b.data(), dnorm_b.data()};
  head_cross_entropy(head, h.data(), tg.data(), n, 0.5f, dh.data(), pool, 64, &a);
  head_cross_entropy(head, h.data(), tg.data(), n, 0.5f, nullptr, pool, 64, &b);
  EXPECT_EQ(dout_a, dout_b);
  EXPECT_EQ(dnorm_a, dnorm_b);
  double s = 0;
  for (float e : dnorm_a) s += std::abs(e);
  EXPECT_GT(s, 0.0);
}

// cpu::linear_backward_weight on the matmul kernels (from 16 tokens), ragged sizes,
// accumulating and scaled, against a double sum.
TEST(ModelParams, WeightGradientOfManyTokens) {
  ThreadPool pool(2);
  for (int64_t n : {16, 45}) {
    const int64_t rows = 37, cols = 21;
    std::mt19937 rng((uint32_t)n);
    std::normal_distribution<float> N(0, 1);
    std::vector<float> dy((size_t)(n * rows)), x((size_t)(n * cols)), dw((size_t)(rows * cols), 0.5f);
    for (auto& e : dy) e = N(rng);
    for (auto& e : x) e = N(rng);
    cpu::linear_backward_weight(dy.data(), x.data(), dw.data(), n, rows, cols, 0.25f, pool);
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) {
        double s = 0;
        for (int64_t t = 0; t < n; t++) s += (double)dy[t * rows + r] * x[t * cols + c];
        ASSERT_NEAR(dw[r * cols + c], 0.5 + 0.25 * s, 1e-5 * (1 + std::abs(s))) << n << " " << r << " " << c;
      }
  }
}

// The parallel path (windows on threads, buffers summed in window order) equals the
// serial one up to f32 summation order, and repeats bit for bit.
TEST(ModelParams, ParallelWindowsAreDeterministic) {
  const ModelParams p = tiny_model(9);
  const std::vector<Window> ws = random_windows(5, 7, p.hp.n_vocab, 10);
  ThreadPool one(1), three(3);
  std::vector<float> g1((size_t)p.size(), 0.0f), g3a = g1, g3b = g1;
  const auto r1 = model_loss_and_grad(p, ws, 1.0f, g1.data(), one);
  const auto r3 = model_loss_and_grad(p, ws, 1.0f, g3a.data(), three);
  model_loss_and_grad(p, ws, 1.0f, g3b.data(), three);
  EXPECT_EQ(g3a, g3b);
  EXPECT_NEAR(r1.loss_sum, r3.loss_sum, 1e-9 * std::abs(r1.loss_sum));
  EXPECT_EQ(r1.n_scored, r3.n_scored);
  for (size_t i = 0; i < g1.size(); i++) ASSERT_NEAR(g1[i], g3a[i], 1e-5f * (1 + std::abs(g1[i]))) << i;
  // Any thread count from 2 sums the same per-window buffers in the same order.
  ThreadPool two(2);
  std::vector<float> g2((size_t)p.size(), 0.0f);
  model_loss_and_grad(p, ws, 1.0f, g2.data(), two);
  EXPECT_EQ(g2, g3a);
  // Recomputing activations instead of keeping them gives the same numbers.
  std::vector<float> g3c((size_t)p.size(), 0.0f);
  model_loss_and_grad(p, ws, 1.0f, g3c.data(), three, 0);
  EXPECT_EQ(g3a, g3c);
  // Loss only: no gradient, same loss.
  const auto r0 = model_loss_and_grad(p, ws, 1.0f, nullptr, three);
  EXPECT_NEAR(r0.loss_sum, r1.loss_sum, 1e-9 * std::abs(r1.loss_sum));
  // Out-of-vocabulary inputs are an Error, not a read past the table.
  std::vector<Window> bad = ws;
  bad[2].inputs[0] = (int32_t)p.hp.n_vocab;
  EXPECT_THROW(model_loss_and_grad(p, bad, 1.0f, g1.data(), three), Error);
}

// write_model_gguf → GGUFFile::open → from_gguf is bit-exact in F32, and the file is
// a model the inference path runs to the same logits.
TEST(ModelParams, GgufRoundTripAndInference) {
  ThreadPool pool(2);
  const ModelParams p = tiny_model(11, kByteVocabSize);
  const std::string path = temp_path("f32.gguf");
  write_model_gguf(p, path, DType::F32, nullptr, [](GGUFWriter& w) { w.set_u64("train.step", 12); });
  std::shared_ptr<const GGUFFile> f = GGUFFile::open(path);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_int("llama.block_count", 0), 2);
  EXPECT_EQ(f->get_int("train.step", 0), 12);
  EXPECT_EQ(f->get_int("llama.vocab_size", 0), kByteVocabSize);
  const ModelParams q = ModelParams::from_gguf(*f);
  EXPECT_EQ(q.size(), p.size());
  EXPECT_EQ(0, std::memcmp(q.data.data(), p.data.data(), p.data.size() * sizeof(float)));
  EXPECT_EQ(q.checksum(), p.checksum());
  EXPECT_NO_THROW(q.check_same_shape(p.hp, "reloaded"));

  // Logits: the inference forward (F32 cache) vs the training forward on the params.
  auto m = LlamaModel::load(f);
  const std::vector<int32_t> toks = {1, 72, 101, 108, 108, 111, 259, 33};
  const int64_t n = (int64_t)toks.size(), d = p.hp.n_embd, V = p.hp.n_vocab;
  std::vector<float> x((size_t)(n * d)), y((size_t)(n * d)), la((size_t)(n * V)), lb((size_t)(n * V));
  m->embed(toks.data(), n, x.data());
  KVCache cache(m->hparams(), 0, p.hp.n_layer, 16, DType::F32);
  m->forward(cache, x.data(), n, pool);
  m->head(x.data(), n, la.data(), pool);
  const float* emb = p.ptr("token_embd.weight");
  for (int64_t t = 0; t < n; t++) std::copy(emb + toks[t] * d, emb + (toks[t] + 1) * d, y.begin() + t * d);
  for (int64_t b = 0; b < p.hp.n_layer; b++) llama_block_forward_train(p.hp, p.block(b), y.data(), n, pool);
  cpu::rmsnorm(y.data(), p.ptr("output_norm.weight"), y.data(), n, d, p.hp.rms_eps);
  cpu::matmul(cpu::WeightView{DType::F32, V, d, p.ptr("output.weight"), (size_t)d * 4}, y.data(), n, lb.data(), pool);
  for (size_t i = 0; i < la.size(); i++) ASSERT_NEAR(la[i], lb[i], 1e-4f * (1 + std::abs(lb[i]))) << i;

  // F16: matrices rounded to f16, norms kept exact.
  const std::string path16 = temp_path("f16.gguf");
  write_model_gguf(p, path16, DType::F16, f.get());
  auto f16 = GGUFFile::open(path16);
  EXPECT_EQ(f16->require_tensor("blk.0.attn_q.weight").type, DType::F16);
  EXPECT_EQ(f16->require_tensor("blk.0.attn_norm.weight").type, DType::F32);
  const ModelParams h = ModelParams::from_gguf(*f16);
  for (const ParamTensor& t : p.tensors)
    for (int64_t i = 0; i < t.numel(); i++) {
      const float v = p.data[t.offset + i];
      ASSERT_EQ(h.data[t.offset + i], t.is_matrix() ? f16_to_f32(f32_to_f16(v)) : v) << t.name;
    }
  std::remove(path.c_str());
  std::remove(path16.c_str());
}

TEST(ModelParams, TiedHeadIsUntiedAndBadFilesAreRefused) {
  // A tied file: no output.weight; from_gguf copies the embedding into the head.
  const ModelParams p = tiny_model(13, kByteVocabSize);
  GGUFWriter w;
  const std::string path = temp_path("tied.gguf");
  write_model_gguf(p, path, DType::F32, nullptr);
  auto full = GGUFFile::open(path);
  w.copy_metadata(*full);
  for (const GGUFTensorInfo& t : full->tensors())
    if (t.name != "output.weight")
      w.add_tensor(t.name, t.type, std::vector<int64_t>(t.ne, t.ne + t.n_dims), t.data, t.nbytes);
  const std::string tied = temp_path("tied2.gguf");
  w.write(tied);
  const ModelParams q = ModelParams::from_gguf(*GGUFFile::open(tied));
  const ParamTensor& te = q.tensor("token_embd.weight");
  EXPECT_EQ(0, std::memcmp(q.ptr("output.weight"), q.ptr("token_embd.weight"), te.numel() * sizeof(float)));
  // A vocabulary that is not the byte vocabulary needs a tokenizer to copy.
  EXPECT_THROW(write_model_gguf(tiny_model(1), temp_path("x.gguf"), DType::F32, nullptr), Error);
  EXPECT_THROW(write_model_gguf(tiny_model(1), temp_path("x.gguf"), DType::F32, full.get()), Error);
  std::remove(path.c_str());
  std::remove(tied.c_str());
}

// Q8_0 and BF16 files load as their dequantized values.
TEST(ModelParams, QuantizedFilesLoadDequantized) {
  LlamaHParams hp = tiny_hp(kByteVocabSize);
  hp.n_embd = 32, hp.n_ff = 64, hp.n_head = 4, hp.n_head_kv = 4;
  const ModelParams p = ModelParams::init_random(hp, 21, 0.05f);
  for (DType type : {DType::Q8_0, DType::BF16}) {
    const std::string path = temp_path("quant.gguf");
    write_model_gguf(p, path, type, nullptr);
    const ModelParams q = ModelParams::from_gguf(*GGUFFile::open(path));
    for (const ParamTensor& t : p.tensors) {
      if (!t.is_matrix()) continue;
      const int64_t cols = t.ne[0], rows = t.ne[1];
      std::vector<uint8_t> row(dtype_row_bytes(type, cols));
      std::vector<float> back((size_t)cols);
      for (int64_t r = 0; r < rows; r++) {
        quantize_row(type, p.data.data() + t.offset + r * cols, row.data(), cols);
        dequantize_row(type, row.data(), back.data(), cols);
        ASSERT_EQ(0, std::memcmp(back.data(), q.data.data() + t.offset + r * cols, cols * sizeof(float))) << t.name;
      }
    }
    std::remove(path.c_str());
  }
  EXPECT_THROW(write_model_gguf(tiny_model(1, kByteVocabSize), temp_path("q.gguf"), DType::Q8_0, nullptr), Error);
}

// The byte vocabulary: any text, UTF-8 and newlines included, round-trips.
TEST(ModelParams, ByteVocabRoundTripsAnyText) {
  GGUFWriter w;
  w.set_string("general.architecture", "llama");
  set_byte_vocab(w);
  const std::string path = temp_path("vocab.gguf");
  w.write(path);
  auto f = GGUFFile::open(path);
  auto tok = Tokenizer::from_gguf(*f);
  EXPECT_EQ(f->find("tokenizer.ggml.tokens")->count, (uint64_t)kByteVocabSize);
  const std::string texts[] = {
      "Hello, world!",
      "  two leading spaces\nand a newline\r\n\ttab",
      "Grüße, 日本語, emoji \xf0\x9f\x98\x80",
      std::string("a nul\0byte", 11),
      "trailing space ",
  };
  for (const std::string& s : texts) {
    std::vector<int32_t> ids = tok->encode(s, true);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], 1);  // <s>
    for (int32_t id : ids) EXPECT_TRUE(id >= 0 && id < kByteVocabSize);
    EXPECT_EQ(tok->decode(ids), s) << s;
  }
  // A space is one token ("▁"), not the three bytes of U+2581; SentencePiece puts
  // one before the text: "▁a▁b". (As in llama.cpp, a literal "▁" in the text
  // decodes as a space: the one text that does not round-trip.)
  const std::vector<int32_t> ab = tok->encode("a b", false);
  EXPECT_EQ(ab, (std::vector<int32_t>{259, 3 + 'a', 259, 3 + 'b'}));
  std::remove(path.c_str());
}
