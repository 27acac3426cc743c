// Full-parameter training of a mixture-of-experts model (train/model_params.h with
// hp.moe()): the flat layout of a Mixtral block (router + 3-D expert stacks), its
// views and gradient pointers, the GGUF round trip, the training state, and the flat
// gradient against central differences of the loss on the router and the experts.
//
// Gradient bound: along a random unit direction v of one tensor, |g·v − ΔL/2ε| <
// 2e-2·|g·v| + 5e-3. The loss is f32 (~1e-6 relative of ~40 nats: ~3e-3 after the
// division by 2ε = 2e-2); a missing or misplaced gradient is off by O(1). ε is small
// enough that no token changes its chosen experts for these seeds.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <unistd.h>

#include "core/error.h"
#include "train/model_params.h"
#include "train/pretrain.h"

using namespace engine;
using namespace engine::train;

namespace {

LlamaHParams moe_hp(int64_t vocab = 37) {
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_vocab = vocab, hp.n_embd = 16, hp.n_ff = 12, hp.n_layer = 2, hp.n_head = 4, hp.n_head_kv = 2;
  hp.n_expert = 4, hp.n_expert_used = 2;
  hp.n_ctx_train = 32;
  return hp;
}

std::vector<Window> windows(int64_t count, int64_t len, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Window> ws((size_t)count);
  for (auto& w : ws)
    for (int64_t t = 0; t < len; t++) {
      w.inputs.push_back((int32_t)(rng() % vocab));
      w.targets.push_back((int32_t)(rng() % vocab));
    }
  return ws;
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "/model_params_moe_" + std::to_string(getpid()) + "_" + name;
}

}  // namespace

TEST(ModelParamsMoe, LayoutViewsAndGradientPointers) {
  const LlamaHParams hp = moe_hp();
  ModelParams p = ModelParams::layout(hp);
  ASSERT_EQ(p.tensors.size(), 3u + 10u * 2u);
  const char* block1[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm",
                          "ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
  for (size_t i = 0; i < 10; i++) EXPECT_EQ(p.tensors[13 + i].name, "blk.1." + std::string(block1[i]) + ".weight");
  int64_t off = 0;
  for (const ParamTensor& t : p.tensors) {
    EXPECT_EQ(t.offset, off) << t.name;
    off += t.numel();
  }
  EXPECT_EQ(off, p.size());
  EXPECT_EQ(p.tensor("blk.0.ffn_gate_inp.weight").ne, (std::vector<int64_t>{16, 4}));
  EXPECT_EQ(p.tensor("blk.0.ffn_gate_exps.weight").ne, (std::vector<int64_t>{16, 12, 4}));  // [cols, rows, E]
  EXPECT_EQ(p.tensor("blk.0.ffn_down_exps.weight").ne, (std::vector<int64_t>{12, 16, 4}));
  EXPECT_TRUE(p.tensor("blk.0.ffn_up_exps.weight").is_matrix());  // weight decay applies
  EXPECT_THROW(p.tensor("blk.0.ffn_gate.weight"), Error);

  const LlamaBlockWeights w = p.block(1);
  EXPECT_EQ(w.router.dense.data, p.ptr("blk.1.ffn_gate_inp.weight"));
  ASSERT_EQ(w.exp_gate.size(), 4u);
  ASSERT_EQ(w.exp_down.size(), 4u);
  EXPECT_EQ(w.exp_up[2].dense.data, p.ptr("blk.1.ffn_up_exps.weight") + 2 * 12 * 16);
  EXPECT_EQ(w.exp_down[3].rows(), 16);
  EXPECT_EQ(w.exp_down[3].cols(), 12);
  std::vector<float> g((size_t)p.size());
  const LlamaBlockGrads gr = p.block_grads(1, g.data());
  EXPECT_EQ(gr.dw_gate, nullptr);
  EXPECT_EQ(gr.moe.d_router, g.data() + p.tensor("blk.1.ffn_gate_inp.weight").offset);
  ASSERT_EQ(gr.moe.d_down.size(), 4u);
  EXPECT_EQ(gr.moe.d_down[1], g.data() + p.tensor("blk.1.ffn_down_exps.weight").offset + 16 * 12);

  // A part (SWARM stage) holds blocks of the same shape.
  const ModelParams whole = ModelParams::init_random(hp, 3, 0.2f);
  const ModelParams part = ModelParams::init_random_part(hp, stage_part(hp, 2, 1), 3, 0.2f);
  EXPECT_EQ(part.data, extract_part(whole, stage_part(hp, 2, 1)).data);
  EXPECT_EQ(part.block(1).exp_gate.size(), 4u);

  LlamaHParams bad = hp;
  bad.n_expert_used = 5;
  EXPECT_THROW(ModelParams::layout(bad), Error);
}

TEST(ModelParamsMoe, GradientMatchesFiniteDifferencesOnRouterAndExperts) {
  ThreadPool pool(2);
  ModelParams p = ModelParams::init_random(moe_hp(), 5, 0.4f);
  const std::vector<Window> ws = windows(2, 6, p.hp.n_vocab, 7);
  std::vector<float> g((size_t)p.size(), 0.0f);
  model_loss_and_grad(p, ws, 1.0f, g.data(), pool);
  std::mt19937 rng(13);
  std::normal_distribution<float> N(0.0f, 1.0f);
  const float eps = 1e-2f;
  for (const char* name : {"blk.0.ffn_gate_inp.weight", "blk.1.ffn_gate_inp.weight", "blk.0.ffn_gate_exps.weight",
                           "blk.1.ffn_up_exps.weight", "blk.0.ffn_down_exps.weight", "blk.1.ffn_down_exps.weight",
                           "blk.1.attn_q.weight"}) {
    const ParamTensor& t = p.tensor(name);
    std::vector<float> v((size_t)t.numel());
    double norm = 0;
    for (float& x : v) x = N(rng), norm += (double)x * x;
    double analytic = 0;
    for (int64_t i = 0; i < t.numel(); i++) {
      v[i] = (float)(v[i] / std::sqrt(norm));
      analytic += (double)g[t.offset + i] * v[i];
    }
    const std::vector<float> saved(p.data.begin() + t.offset, p.data.begin() + t.offset + t.numel());
    auto loss_at = [&](float s) {
      for (int64_t i = 0; i < t.numel(); i++) p.data[t.offset + i] = saved[i] + s * v[i];
      const double l = model_loss_and_grad(p, ws, 1.0f, nullptr, pool).loss_sum;
      std::copy(saved.begin(), saved.end(), p.data.begin() + t.offset);
      return l;
    };
    const double numeric = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
    EXPECT_NEAR(analytic, numeric, 2e-2 * std::abs(analytic) + 5e-3) << name;
    EXPECT_GT(std::abs(analytic), 1e-3) << name << ": a gradient this small checks nothing";
  }
}

TEST(ModelParamsMoe, GgufAndStateRoundTrip) {
  ThreadPool pool(2);
  const ModelParams p = ModelParams::init_random(moe_hp(kByteVocabSize), 9, 0.3f);
  const std::string path = temp_path("moe.gguf");
  write_model_gguf(p, path, DType::F32, nullptr);
  std::shared_ptr<const GGUFFile> f = GGUFFile::open(path);
  EXPECT_EQ(f->get_int("llama.expert_count", 0), 4);
  EXPECT_EQ(f->get_int("llama.expert_used_count", 0), 2);
  const ModelParams q = ModelParams::from_gguf(*f);
  EXPECT_EQ(q.hp.n_expert, 4);
  EXPECT_EQ(q.data, p.data);

  // The inference path reads the file; its logits match the training forward's.
  auto m = LlamaModel::load(f);
  const std::vector<int32_t> toks = {1, 72, 101, 108, 108, 111};
  const int64_t n = (int64_t)toks.size(), d = p.hp.n_embd;
  std::vector<float> x((size_t)(n * d)), y((size_t)(n * d));
  m->embed(toks.data(), n, x.data());
  KVCache cache(m->hparams(), 0, p.hp.n_layer, 8, DType::F32);
  m->forward(cache, x.data(), n, pool);
  const float* emb = p.ptr("token_embd.weight");
  for (int64_t t = 0; t < n; t++) std::copy(emb + toks[t] * d, emb + (toks[t] + 1) * d, y.begin() + t * d);
  for (int64_t b = 0; b < p.hp.n_layer; b++) llama_block_forward_train(p.hp, p.block(b), y.data(), n, pool);
  for (size_t i = 0; i < x.size(); i++) ASSERT_NEAR(x[i], y[i], 1e-4f * (1 + std::abs(y[i]))) << i;

  // F16: experts rounded to f16 expert by expert, the router kept F32 (as llama.cpp's quantize).
  const std::string path16 = temp_path("moe_f16.gguf");
  write_model_gguf(p, path16, DType::F16, nullptr);
  auto f16 = GGUFFile::open(path16);
  EXPECT_EQ(f16->require_tensor("blk.0.ffn_up_exps.weight").type, DType::F16);
  EXPECT_EQ(f16->require_tensor("blk.0.ffn_gate_inp.weight").type, DType::F32);
  const ModelParams h = ModelParams::from_gguf(*f16);
  for (const ParamTensor& t : p.tensors) {
    const bool rounded = t.is_matrix() && t.name.find("ffn_gate_inp") == std::string::npos;
    for (int64_t i = 0; i < t.numel(); i++) {
      const float v = p.data[t.offset + i];
      ASSERT_EQ(h.data[t.offset + i], rounded ? f16_to_f32(f32_to_f16(v)) : v) << t.name;
    }
  }
  std::remove(path.c_str());
  std::remove(path16.c_str());

  // The training state keeps the expert counts.
  TrainState s;
  s.params = p;
  s.opt.m.assign((size_t)p.size(), 0.5f), s.opt.v.assign((size_t)p.size(), 0.25f);
  const TrainState r = deserialize_state(serialize_state(s));
  EXPECT_EQ(r.params.hp.n_expert, 4);
  EXPECT_EQ(r.params.hp.n_expert_used, 2);
  EXPECT_EQ(r.params.data, p.data);
}
