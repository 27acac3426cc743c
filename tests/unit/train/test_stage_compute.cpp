// Pipeline-parallel (SWARM) training: parts of a model (train/model_params.h PartSpec,
// layout_part, extract/insert, init_random_part, part states) and the stage compute
// (train/stage_compute.h). The chain embed → stages forward → head + loss → stages
// backward (reverse) → embedding backward must give model_loss_and_grad's loss and
// gradient BIT FOR BIT, with 1 thread and with 2 (windows in parallel): the two share
// their code and their per-window gradient buffers, added in window order.
#include <gtest/gtest.h>
#include <xxhash.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/error.h"
#include "train/pretrain.h"
#include "train/stage_compute.h"

using namespace engine;
using namespace engine::train;

namespace {

LlamaHParams stage_hp(int64_t n_layer = 4) {
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_vocab = 260, hp.n_embd = 64, hp.n_ff = 160, hp.n_layer = n_layer, hp.n_head = 4, hp.n_head_kv = 2;
  hp.n_ctx_train = 16;
  return hp;
}

// Random init, with norms that are not all ones (so their gradients are general).
ModelParams stage_model(uint64_t seed, int64_t n_layer = 4) {
  ModelParams p = ModelParams::init_random(stage_hp(n_layer), seed, 0.1f);
  std::mt19937 rng((uint32_t)seed);
  std::normal_distribution<float> N(0.0f, 0.1f);
  for (const ParamTensor& t : p.tensors)
    if (!t.is_matrix())
      for (int64_t i = 0; i < t.numel(); i++) p.data[t.offset + i] += N(rng);
  return p;
}

std::vector<Window> windows(int64_t count, int64_t len, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<Window> ws((size_t)count);
  for (auto& w : ws)
    for (int64_t t = 0; t < len; t++) {
      w.inputs.push_back((int32_t)(rng() % vocab));
      w.targets.push_back((int32_t)(rng() % vocab));
    }
  if (len > 5) {
    ws[0].targets[3] = -1;  // an unscored position
    if (count > 1) ws[1].inputs[5] = ws[1].inputs[2];  // a token twice: its embedding row sums two rows of dx
  }
  return ws;
}

// A part's values laid into a whole-model-shaped vector (the rest untouched).
void put_slice(const ModelParams& whole_layout, std::vector<float>& whole, const ModelParams& part,
               const std::vector<float>& values) {
  ModelParams w = whole_layout, p = part;
  w.data = whole;
  p.data = values;
  insert_part(w, p);
  whole = std::move(w.data);
}

std::vector<float> slice_of(const ModelParams& whole_layout, const std::vector<float>& whole, const PartSpec& spec) {
  ModelParams w = whole_layout;
  w.data = whole;
  return extract_part(w, spec).data;
}

struct PipelineRun {
  CrossEntropyResult r;
  std::vector<float> grad;  // whole-model layout
};

// The trainer and `stages` stage peers, each on its own part, chained. The parts'
// gradients start from the slices of `start` and are put together in the whole layout.
PipelineRun run_pipeline(const ModelParams& whole, int stages, const std::vector<Window>& ws, float scale,
                         const std::vector<float>& start, ThreadPool& pool) {
  const LlamaHParams& hp = whole.hp;
  const int64_t B = (int64_t)ws.size(), n = (int64_t)ws[0].inputs.size(), d = hp.n_embd;
  const ModelParams trainer = extract_part(whole, trainer_part());
  std::vector<ModelParams> parts;
  for (int k = 0; k < stages; k++) parts.push_back(extract_part(whole, stage_part(hp, stages, k)));

  std::vector<float> x((size_t)(B * n * d));
  embed_windows(trainer, ws, x.data());
  std::vector<std::vector<float>> inputs;  // what each stage received (the networking keeps these)
  for (int k = 0; k < stages; k++) {
    inputs.push_back(x);
    part_forward(parts[k], x.data(), B, n, pool);
  }
  std::vector<float> tgrad = slice_of(whole, start, trainer.part);
  std::vector<float> dx((size_t)(B * n * d), 123.0f);  // overwritten
  PipelineRun run;
  run.r = head_loss_and_grad(trainer, x.data(), ws, scale, dx.data(), tgrad.data(), pool);
  run.grad = start;
  for (int k = stages - 1; k >= 0; k--) {
    std::vector<float> g = slice_of(whole, start, parts[k].part);
    part_backward(parts[k], inputs[k].data(), dx.data(), B, n, g.data(), pool);
    put_slice(whole, run.grad, parts[k], g);
  }
  embed_backward(trainer, ws, dx.data(), tgrad.data(), pool);
  put_slice(whole, run.grad, trainer, tgrad);
  return run;
}

// Names the tensors whose gradients differ, with the largest relative difference.
void expect_same_grad(const ModelParams& p, const std::vector<float>& want, const std::vector<float>& got,
                      const std::string& what) {
  ASSERT_EQ(want.size(), got.size());
  for (const ParamTensor& t : p.tensors) {
    double worst = 0, scale = 0;
    int64_t differ = 0;
    for (int64_t i = t.offset; i < t.offset + t.numel(); i++) {
      scale = std::max(scale, (double)std::fabs(want[i]));
      if (want[i] != got[i]) differ++, worst = std::max(worst, (double)std::fabs(want[i] - got[i]));
    }
    EXPECT_EQ(differ, 0) << what << ": " << t.name << " differs in " << differ << " of " << t.numel()
                         << " values, by up to " << worst / std::max(scale, 1e-30) << " of its largest";
  }
}

}  // namespace

// ---- parts --------------------------------------------------------------------------

TEST(ModelPart, StagePartSplitsEvenly) {
  LlamaHParams hp = stage_hp(5);
  EXPECT_EQ(stage_part(hp, 2, 0), (PartSpec{0, 3, false}));
  EXPECT_EQ(stage_part(hp, 2, 1), (PartSpec{3, 2, false}));
  EXPECT_EQ(stage_part(hp, 1, 0), (PartSpec{0, 5, false}));
  for (int stages = 1; stages <= 5; stages++) {
    int64_t next = 0, most = 0, least = 5;
    for (int k = 0; k < stages; k++) {
      const PartSpec s = stage_part(hp, stages, k);
      EXPECT_EQ(s.first_block, next);
      EXPECT_GE(s.n_blocks, 1);
      EXPECT_FALSE(s.embd_head);
      if (k > 0) {
        EXPECT_LE(s.n_blocks, stage_part(hp, stages, k - 1).n_blocks) << "earlier stages get the extras";
      }
      most = std::max(most, s.n_blocks), least = std::min(least, s.n_blocks);
      next += s.n_blocks;
    }
    EXPECT_EQ(next, 5);
    EXPECT_LE(most - least, 1);
  }
  EXPECT_THROW(stage_part(hp, 0, 0), Error);
  EXPECT_THROW(stage_part(hp, 6, 0), Error);
  EXPECT_THROW(stage_part(hp, -1, 0), Error);
  EXPECT_THROW(stage_part(hp, 2, 2), Error);
  EXPECT_THROW(stage_part(hp, 2, -1), Error);
  EXPECT_EQ(whole_model(hp), (PartSpec{0, 5, true}));
  EXPECT_EQ(trainer_part(), (PartSpec{0, 0, true}));
  EXPECT_EQ(stage_part(hp, 2, 0).describe(), "blocks 0-2");
  EXPECT_EQ(stage_part(hp, 5, 3).describe(), "block 3");
  EXPECT_EQ(trainer_part().describe(), "embedding + head");
  EXPECT_EQ(whole_model(hp).describe(5), "whole model");
  EXPECT_EQ(whole_model(hp).describe(), "embedding + head + blocks 0-4");
  EXPECT_EQ(stage_part(hp, 2, 1).describe(5), "blocks 3-4");
}

TEST(ModelPart, LayoutPartIsCompactInWholeModelOrder) {
  const LlamaHParams hp = stage_hp();
  const ModelParams whole = ModelParams::layout(hp);
  EXPECT_EQ(whole.part, whole_model(whole.hp));
  EXPECT_TRUE(whole.is_whole());
  const ModelParams s = ModelParams::layout_part(hp, stage_part(hp, 2, 1));  // blocks 2-3
  ASSERT_EQ(s.tensors.size(), 18u);
  EXPECT_FALSE(s.is_whole());
  EXPECT_EQ(s.tensors[0].name, "blk.2.attn_norm.weight");
  EXPECT_EQ(s.tensors.back().name, "blk.3.ffn_down.weight");
  int64_t off = 0;
  for (const ParamTensor& t : s.tensors) {
    EXPECT_EQ(t.offset, off) << t.name;
    EXPECT_EQ(t.ne, whole.tensor(t.name).ne) << t.name;
    off += t.numel();
  }
  EXPECT_EQ(off, s.size());
  EXPECT_EQ(s.hp.n_layer, 4) << "a part keeps the whole model's hyper-parameters";
  // Blocks by their global index; others refused.
  EXPECT_EQ(s.block(2).wq.dense.data, s.ptr("blk.2.attn_q.weight"));
  EXPECT_EQ(s.block(3).ffn_norm, s.ptr("blk.3.ffn_norm.weight"));
  EXPECT_THROW(s.block(1), Error);
  EXPECT_THROW(s.block(4), Error);
  std::vector<float> g((size_t)s.size());
  EXPECT_EQ(s.block_grads(3, g.data()).dw_down, g.data() + s.tensor("blk.3.ffn_down.weight").offset);
  EXPECT_THROW(s.block_grads(0, g.data()), Error);
  EXPECT_THROW(s.tensor("token_embd.weight"), Error);

  const ModelParams t = ModelParams::layout_part(hp, trainer_part());
  ASSERT_EQ(t.tensors.size(), 3u);
  EXPECT_EQ(t.tensors[0].name, "token_embd.weight");
  EXPECT_EQ(t.tensors[2].name, "output.weight");
  EXPECT_EQ(t.size(), 2 * 260 * 64 + 64);
  EXPECT_THROW(t.block(0), Error);
  // The whole model's layout is layout_part of the whole model.
  const ModelParams w2 = ModelParams::layout_part(hp, whole_model(whole.hp));
  ASSERT_EQ(w2.tensors.size(), whole.tensors.size());
  for (size_t i = 0; i < whole.tensors.size(); i++) {
    EXPECT_EQ(w2.tensors[i].name, whole.tensors[i].name);
    EXPECT_EQ(w2.tensors[i].offset, whole.tensors[i].offset);
  }
  // Specs that are not parts of this model.
  EXPECT_THROW(ModelParams::layout_part(hp, PartSpec{0, 0, false}), Error);
  EXPECT_THROW(ModelParams::layout_part(hp, PartSpec{3, 2, false}), Error);
  EXPECT_THROW(ModelParams::layout_part(hp, PartSpec{-1, 2, false}), Error);
  EXPECT_THROW(ModelParams::layout_part(hp, PartSpec{0, -1, true}), Error);
  EXPECT_THROW(ModelParams::layout_part(hp, PartSpec{5, 0, true}), Error);
  // Parts are not model files, and model_loss_and_grad wants the whole model.
  ThreadPool pool(1);
  EXPECT_THROW(model_loss_and_grad(t, windows(1, 4, 260, 1), 1.0f, nullptr, pool), Error);
  EXPECT_THROW(write_model_gguf(t, ::testing::TempDir() + "/part-never-written.gguf", DType::F32, nullptr), Error);
}

TEST(ModelPart, ExtractInsertRoundTripAndInitRandomPart) {
  const ModelParams whole = stage_model(3);
  const LlamaHParams& hp = whole.hp;
  std::vector<PartSpec> specs = {trainer_part(), stage_part(hp, 3, 0), stage_part(hp, 3, 1), stage_part(hp, 3, 2)};
  ModelParams rebuilt = ModelParams::layout(hp);
  int64_t total = 0;
  for (const PartSpec& spec : specs) {
    const ModelParams p = extract_part(whole, spec);
    EXPECT_EQ(p.part, spec);
    for (const ParamTensor& t : p.tensors) {
      const ParamTensor& w = whole.tensor(t.name);
      ASSERT_EQ(std::memcmp(p.data.data() + t.offset, whole.data.data() + w.offset, (size_t)t.numel() * 4), 0) << t.name;
    }
    total += p.size();
    insert_part(rebuilt, p);
  }
  EXPECT_EQ(total, whole.size());
  EXPECT_EQ(rebuilt.data, whole.data);
  EXPECT_EQ(rebuilt.checksum(), whole.checksum());
  // From a larger part; a part lacking a tensor is refused.
  const ModelParams blocks = extract_part(whole, PartSpec{0, 4, false});
  EXPECT_EQ(extract_part(blocks, PartSpec{1, 2, false}).data, extract_part(whole, PartSpec{1, 2, false}).data);
  EXPECT_THROW(extract_part(blocks, trainer_part()), Error);
  EXPECT_THROW(extract_part(extract_part(whole, PartSpec{0, 2, false}), PartSpec{1, 2, false}), Error);
  // Into a larger part works; into a model of another shape (or lacking the tensors) not.
  ModelParams b2 = ModelParams::layout_part(hp, PartSpec{0, 4, false});
  insert_part(b2, extract_part(whole, stage_part(hp, 2, 1)));
  EXPECT_EQ(extract_part(b2, stage_part(hp, 2, 1)).data, extract_part(whole, stage_part(hp, 2, 1)).data);
  EXPECT_THROW(insert_part(b2, extract_part(whole, trainer_part())), Error);
  LlamaHParams other = hp;
  other.n_ff = 128;
  ModelParams o = ModelParams::layout(other);
  EXPECT_THROW(insert_part(o, extract_part(whole, stage_part(hp, 2, 0))), Error);
  // Shape and part comparisons.
  EXPECT_NO_THROW(blocks.check_same_shape(extract_part(whole, PartSpec{0, 4, false}), "peer"));
  EXPECT_THROW(blocks.check_same_shape(extract_part(whole, PartSpec{0, 3, false}), "peer"), Error);
  EXPECT_THROW(whole.check_same_shape(o, "peer"), Error);

  // init_random_part == extract_part(init_random), bit for bit (projections scaled by
  // the whole model's depth).
  const ModelParams full = ModelParams::init_random(hp, 17, 0.02f);
  for (const PartSpec& spec : {trainer_part(), stage_part(hp, 3, 0), stage_part(hp, 3, 2), PartSpec{1, 2, true}}) {
    const ModelParams a = ModelParams::init_random_part(hp, spec, 17, 0.02f);
    const ModelParams b = extract_part(full, spec);
    EXPECT_EQ(a.part, spec);
    EXPECT_EQ(a.data, b.data) << spec.describe();
    EXPECT_EQ(a.checksum(), b.checksum());
  }
  EXPECT_EQ(ModelParams::init_random_part(hp, whole_model(full.hp), 17, 0.02f).data, full.data);
}

// ---- state bytes and the optimizer on a part ----------------------------------------

namespace {

TrainState part_state(const PartSpec& spec) {
  TrainState s;
  s.params = ModelParams::init_random_part(stage_hp(), spec, 5, 0.05f);
  std::mt19937 rng(9);
  std::normal_distribution<float> N;
  for (auto* v : {&s.opt.m, &s.opt.v}) {
    v->resize(s.params.data.size());
    for (float& x : *v) x = std::fabs(N(rng));
  }
  s.step = s.opt.t = 11, s.seed = 42, s.samples = 99;
  return s;
}

// Header: magic 8, version 4, 9 shape int64, 2 floats, step, seed, samples, n, then
// the part: first block, block count (int64), embedding + head (one byte), then the
// expert counts (2 int64).
constexpr size_t kPartAt = 12 + 8 * 9 + 8 + 8 * 4;

}  // namespace

TEST(ModelPart, StateBytesRoundTripAndRefusals) {
  const LlamaHParams hp = stage_hp();
  for (const PartSpec& spec : {stage_part(hp, 2, 1), trainer_part(), PartSpec{0, 4, true}}) {
    const TrainState s = part_state(spec);
    const std::string bytes = serialize_state(s);
    EXPECT_EQ(bytes.size(), kPartAt + 17 + 16 + (size_t)s.params.size() * 12);
    const TrainState r = deserialize_state(bytes);
    EXPECT_EQ(r.params.part, spec);
    EXPECT_EQ(r.params.data, s.params.data);
    EXPECT_EQ(r.opt.m, s.opt.m);
    EXPECT_EQ(r.opt.v, s.opt.v);
    EXPECT_EQ(r.step, 11);
    EXPECT_EQ(r.opt.t, 11);
    EXPECT_EQ(r.samples, 99);
    EXPECT_EQ(r.params.checksum(), s.params.checksum());
    ASSERT_EQ(r.params.tensors.size(), s.params.tensors.size());
    for (size_t i = 0; i < r.params.tensors.size(); i++) EXPECT_EQ(r.params.tensors[i].name, s.params.tensors[i].name);
    EXPECT_NO_THROW(r.params.check_same_shape(s.params, "round trip"));
    EXPECT_EQ(serialize_state(r), bytes);
  }
  const TrainState s = part_state(stage_part(hp, 2, 1));  // blocks 2-3
  const std::string bytes = serialize_state(s);
  auto put64 = [](std::string& b, size_t at, int64_t v) { std::memcpy(&b[at], &v, 8); };
  auto refused = [&](const std::string& b) { EXPECT_THROW(deserialize_state(b), Error); };
  std::string bad = bytes;
  put64(bad, kPartAt, 3);  // blocks 3-4 of a 4-block model
  refused(bad);
  bad = bytes, put64(bad, kPartAt, -1);
  refused(bad);
  bad = bytes, put64(bad, kPartAt + 8, 0);  // no blocks, no head: nothing
  refused(bad);
  bad = bytes, put64(bad, kPartAt + 8, 1);  // 1 block: the count and bytes are for 2
  refused(bad);
  bad = bytes, put64(bad, kPartAt + 8, int64_t(1) << 62);
  refused(bad);
  bad = bytes, bad[kPartAt + 16] = 1;  // with the head: more parameters than the count
  refused(bad);
  bad = bytes, bad[kPartAt + 16] = 2;  // not a bool
  refused(bad);
  bad = bytes, bad[12 + 8 * 3] = 3;  // n_layer 4 -> 3: blocks 2-3 do not fit
  refused(bad);
  bad = bytes, bad[12 + 8 * 3] = 8;  // n_layer 4 -> 8: blocks 2-3 of 8 is as large, and fine
  EXPECT_EQ(deserialize_state(bad).params.hp.n_layer, 8);
  // The part's block count agreeing with a hostile parameter count: still bounded by the bytes.
  bad = bytes, bad[12 + 8 * 3] = 0x10, bad[12 + 8 * 3 + 2] = 0x10;  // n_layer 2^20 + 16
  put64(bad, kPartAt + 8, 1 << 20);
  put64(bad, 12 + 8 * 13, (s.params.size() / 2) << 20);
  refused(bad);
  // Truncated anywhere (the header, the part, the values), padded.
  for (size_t len : {(size_t)30, kPartAt, kPartAt + 8, kPartAt + 16, kPartAt + 17, bytes.size() - 4})
    EXPECT_THROW(deserialize_state(std::string_view(bytes).substr(0, len)), Error) << len;
  refused(bytes + "xxxx");
  // A version-1 state (no part) is refused, not misread.
  bad = bytes, bad[8] = 1;
  refused(bad);
}

// The optimizer step on a part is the matching slice of the step on the whole model,
// given the slice of the gradient. Only with clipping off: clip_grad_norm scales by
// the norm of what it is given, and a part's gradient norm is not the whole model's
// (a SWARM run must clip with a global norm gathered from every stage, or not at all).
TEST(ModelPart, ApplyStepOnPartIsSliceOfWholeStep) {
  ThreadPool pool(2);
  TextData data;
  for (int i = 0; i < 200; i++) data.train.push_back(i % 250);
  data.heldout = data.train;
  PretrainConfig cfg;
  cfg.steps = 10, cfg.batch = 2, cfg.seqlen = 8, cfg.lr = 0.01f, cfg.weight_decay = 0.1f, cfg.warmup = 2;
  cfg.clip = 0.0f;
  TrainState ws;
  ws.params = stage_model(4);
  const ModelParams whole0 = ws.params;
  std::mt19937 rng(2);
  std::normal_distribution<float> N(0.0f, 0.01f);
  std::vector<std::vector<float>> grads(3, std::vector<float>((size_t)whole0.size()));
  for (auto& g : grads)
    for (float& x : g) x = N(rng);
  for (const PartSpec& spec : {stage_part(whole0.hp, 3, 1), trainer_part()}) {
    TrainState ps;
    ps.params = extract_part(whole0, spec);
    Trainer part(std::move(ps), data, cfg, pool);
    Trainer w2(TrainState{whole0, {}, 0, 1, 0}, data, cfg, pool);
    for (auto g : grads) {  // copies: apply_step may scale g
      std::vector<float> gp = slice_of(whole0, g, spec);
      w2.apply_step(g.data());
      part.apply_step(gp.data());
    }
    EXPECT_EQ(part.state().params.data, extract_part(w2.state().params, spec).data) << spec.describe();
    EXPECT_EQ(part.state().opt.m, slice_of(whole0, w2.state().opt.m, spec));
    EXPECT_EQ(part.state().opt.v, slice_of(whole0, w2.state().opt.v, spec));
    EXPECT_EQ(part.step(), 3);
  }
}

// ---- stage compute ----------------------------------------------------------------------

// The pipeline reproduces model_loss_and_grad bit for bit: 2 and 3 stages, 1 and 2
// threads (2: windows in parallel, in waves of 2 with 3 windows), from a zero and from
// a non-zero gradient (both accumulate).
TEST(StageCompute, PipelineEqualsModelLossAndGradBitForBit) {
  const ModelParams whole = stage_model(7);
  const std::vector<Window> ws = windows(3, 16, whole.hp.n_vocab, 8);
  const float scale = 1.0f / 47;
  std::vector<float> nonzero((size_t)whole.size());
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0.0f, 0.01f);
  for (float& x : nonzero) x = N(rng);
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    for (bool from_zero : {true, false}) {
      const std::vector<float> start = from_zero ? std::vector<float>((size_t)whole.size(), 0.0f) : nonzero;
      std::vector<float> want = start;
      const CrossEntropyResult r = model_loss_and_grad(whole, ws, scale, want.data(), pool);
      EXPECT_EQ(r.n_scored, 47);
      for (int stages : {2, 3}) {
        const std::string what = std::to_string(threads) + " threads, " + std::to_string(stages) + " stages" +
                                 (from_zero ? "" : ", accumulating");
        const PipelineRun run = run_pipeline(whole, stages, ws, scale, start, pool);
        EXPECT_EQ(run.r.n_scored, r.n_scored) << what;
        EXPECT_EQ(run.r.loss_sum, r.loss_sum) << what;
        expect_same_grad(whole, want, run.grad, what);
      }
    }
    // Recomputed activations (keep_acts_bytes 0) give the same numbers as kept ones.
    std::vector<float> recomputed((size_t)whole.size(), 0.0f);
    model_loss_and_grad(whole, ws, scale, recomputed.data(), pool, 0);
    const PipelineRun run = run_pipeline(whole, 2, ws, scale, std::vector<float>((size_t)whole.size(), 0.0f), pool);
    expect_same_grad(whole, recomputed, run.grad, "recomputed activations, " + std::to_string(threads) + " threads");
  }
}

// Evaluation (no gradients), the input gradient alone, and embed_backward without the pool.
TEST(StageCompute, LossOnlyInputGradOnlyAndEmbedBackward) {
  const ModelParams whole = stage_model(9);
  const std::vector<Window> ws = windows(3, 16, whole.hp.n_vocab, 10);
  const int64_t B = 3, n = 16, d = whole.hp.n_embd;
  const ModelParams trainer = extract_part(whole, trainer_part());
  const ModelParams stage = extract_part(whole, stage_part(whole.hp, 2, 1));
  for (int threads : {1, 2}) {
    ThreadPool pool(threads);
    const CrossEntropyResult want = model_loss_and_grad(whole, ws, 0.0f, nullptr, pool);
    std::vector<float> x((size_t)(B * n * d));
    embed_windows(trainer, ws, x.data());
    part_forward(whole, x.data(), B, n, pool);  // the whole model's blocks as one part
    const CrossEntropyResult r = head_loss_and_grad(trainer, x.data(), ws, 1.0f, nullptr, nullptr, pool);
    EXPECT_EQ(r.loss_sum, want.loss_sum);
    EXPECT_EQ(r.n_scored, want.n_scored);

    // dx alone = dx with weight gradients.
    std::vector<float> xin((size_t)(B * n * d)), dy((size_t)(B * n * d));
    std::mt19937 rng(4);
    std::normal_distribution<float> N;
    for (float& v : xin) v = N(rng);
    for (float& v : dy) v = N(rng);
    std::vector<float> dx1 = dy, dx2 = dy, g((size_t)stage.size(), 0.0f);
    part_backward(stage, xin.data(), dx1.data(), B, n, g.data(), pool);
    part_backward(stage, xin.data(), dx2.data(), B, n, nullptr, pool);
    EXPECT_EQ(dx1, dx2);
    EXPECT_NE(dx1, dy);
    // Head gradient without dx: the same output/output_norm gradients.
    std::vector<float> ga((size_t)trainer.size(), 0.0f), gb((size_t)trainer.size(), 0.0f), dxh((size_t)(B * n * d));
    head_loss_and_grad(trainer, xin.data(), ws, 0.5f, dxh.data(), ga.data(), pool);
    head_loss_and_grad(trainer, xin.data(), ws, 0.5f, nullptr, gb.data(), pool);
    EXPECT_EQ(ga, gb);
    // embed_backward without the pool: windows one after another. The same as with a
    // one-thread pool; with windows in parallel each window's rows are summed first, a
    // different rounding of the same sum.
    std::vector<float> e1((size_t)trainer.size(), 0.0f), e2 = e1;
    embed_backward(trainer, ws, dy.data(), e1.data());
    embed_backward(trainer, ws, dy.data(), e2.data(), pool);
    if (threads == 1) {
      EXPECT_EQ(e1, e2);
    }
    for (size_t i = 0; i < e1.size(); i++) ASSERT_NEAR(e1[i], e2[i], 1e-6 * (1 + std::fabs(e1[i])));
  }
}

TEST(StageCompute, RefusesBadCalls) {
  ThreadPool pool(1);
  const ModelParams whole = stage_model(1);
  const ModelParams trainer = extract_part(whole, trainer_part());
  const ModelParams stage = extract_part(whole, stage_part(whole.hp, 2, 0));
  std::vector<Window> ws = windows(2, 8, whole.hp.n_vocab, 2);
  std::vector<float> x(2 * 8 * 64), dx(x.size());
  EXPECT_THROW(part_forward(trainer, x.data(), 2, 8, pool), Error);  // no blocks
  EXPECT_THROW(part_backward(trainer, x.data(), dx.data(), 2, 8, nullptr, pool), Error);
  EXPECT_THROW(part_forward(stage, x.data(), -1, 8, pool), Error);
  EXPECT_THROW(embed_windows(stage, ws, x.data()), Error);  // no embedding
  EXPECT_THROW(head_loss_and_grad(stage, x.data(), ws, 1.0f, nullptr, nullptr, pool), Error);
  EXPECT_THROW(embed_backward(stage, ws, dx.data(), dx.data()), Error);
  std::vector<Window> uneven = ws;
  uneven[1].inputs.pop_back(), uneven[1].targets.pop_back();
  EXPECT_THROW(embed_windows(trainer, uneven, x.data()), Error);
  EXPECT_THROW(head_loss_and_grad(trainer, x.data(), uneven, 1.0f, nullptr, nullptr, pool), Error);
  std::vector<Window> mismatched = ws;
  mismatched[0].targets.pop_back();
  EXPECT_THROW(embed_windows(trainer, mismatched, x.data()), Error);
  std::vector<Window> oov = ws;
  oov[1].inputs[2] = 260;
  EXPECT_THROW(embed_windows(trainer, oov, x.data()), Error);
  std::vector<float> g((size_t)trainer.size(), 0.0f);
  EXPECT_THROW(embed_backward(trainer, oov, dx.data(), g.data()), Error);
  oov[1].inputs[2] = -3;
  EXPECT_THROW(embed_windows(trainer, oov, x.data()), Error);
  EXPECT_THROW(embed_backward(trainer, oov, dx.data(), g.data(), pool), Error);
  std::vector<Window> bad_target = ws;
  bad_target[0].targets[0] = 260;
  EXPECT_THROW(head_loss_and_grad(trainer, x.data(), bad_target, 1.0f, nullptr, nullptr, pool), Error);
  // Empty batches do nothing.
  EXPECT_NO_THROW(part_forward(stage, nullptr, 0, 8, pool));
  EXPECT_EQ(head_loss_and_grad(trainer, nullptr, {}, 1.0f, nullptr, nullptr, pool).n_scored, 0);
}
