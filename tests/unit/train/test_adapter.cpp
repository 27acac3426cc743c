// Adapters on the real stories260K model: the prefix / deep-prompt / LoRA gradients
// against finite differences of the whole model's loss, the runner used by
// `generate --adapter` against the training forward, save/load/resume, and a
// short run that lowers held-out loss.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <random>

#include <unistd.h>

#include "core/error.h"
#include "core/io.h"
#include "models/llama_backward.h"
#include "models/loaded_model.h"
#include "train/finetune.h"

using namespace engine;
using namespace engine::train;

namespace {

std::string model_path() { return std::string(ENGINE_SHARED_DIR) + "/models/stories260K.gguf"; }
std::string text_path() { return std::string(ENGINE_SHARED_DIR) + "/data/stories260K-calib.txt"; }
bool have_files() {
  return std::filesystem::exists(model_path()) && std::filesystem::exists(text_path());
}

Adapter make(const LlamaModel& m, AdapterMode mode, int64_t prefix, uint64_t seed) {
  if (mode == AdapterMode::LoRA) return Adapter::init_lora(m, 2, 4.0f, parse_lora_targets("q,v,o,down"), seed);
  return Adapter::init(m, mode, prefix, seed);
}

}  // namespace

// d/dh L(p + h·u) at h = 0 by central differences (the model runs in f32, so the
// step is 1e-2 and the bound 2e-2 — the per-op checks in double are the tight ones;
// this one proves the pieces are wired together: prefix rows, deep prompts at
// every block, the shifted targets, the head).
TEST(Adapter, GradientMatchesDirectionalFiniteDifference) {
  if (!have_files()) GTEST_SKIP();
  LoadedModel m = load_model(model_path());
  ThreadPool pool(2);
  LmHead head = LmHead::from_model(*m.model);
  TextData data = TextData::from_text(*m.tokenizer, read_file_bytes(text_path()), 0.1);
  std::vector<Window> ws = batch_for_step(data, 3, 0, 2, 12);
  for (AdapterMode mode : {AdapterMode::PTune, AdapterMode::DeepPTune, AdapterMode::LoRA}) {
    Adapter ad = make(*m.model, mode, 3, 9);
    if (mode != AdapterMode::PTune) {  // make every block's prompt (every B) non-trivial
      std::mt19937 rng(4);
      std::normal_distribution<float> N(0, mode == AdapterMode::LoRA ? 0.05f : 0.3f);
      for (auto& p : ad.params) p += N(rng);
    }
    std::vector<float> g((size_t)ad.size(), 0.0f);
    adapter_loss_and_grad(*m.model, head, ad, ws, 1.0f, g.data(), pool);
    std::mt19937 rng(5);
    std::normal_distribution<float> N(0, 1);
    std::vector<float> u((size_t)ad.size());
    // A unit direction, so the step h is the distance moved whatever the adapter's size.
    double norm = 0, analytic = 0;
    for (auto& e : u) e = N(rng), norm += (double)e * e;
    for (size_t i = 0; i < u.size(); i++) u[i] = (float)(u[i] / std::sqrt(norm)), analytic += (double)u[i] * g[i];
    auto loss_at = [&](double h) {
      Adapter a2 = ad;
      for (size_t i = 0; i < u.size(); i++) a2.params[i] += (float)(h * u[i]);
      return adapter_loss_and_grad(*m.model, head, a2, ws, 0.0f, nullptr, pool).loss_sum;
    };
    const double h = 1e-2, numeric = (loss_at(h) - loss_at(-h)) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 5e-3 * std::abs(numeric)) << adapter_mode_name(mode);
    std::printf("%s: directional derivative analytic %.6f numeric %.6f\n", adapter_mode_name(mode), analytic, numeric);
  }
}

// What generate --adapter runs (KV cache, prefix prefilled) is the training forward.
TEST(Adapter, RunnerMatchesTrainingForward) {
  if (!have_files()) GTEST_SKIP();
  LoadedModel m = load_model(model_path());
  ThreadPool pool(2);
  const auto& hp = m.model->hparams();
  for (AdapterMode mode : {AdapterMode::PTune, AdapterMode::DeepPTune, AdapterMode::LoRA}) {
    Adapter ad = make(*m.model, mode, 4, 2);
    for (size_t i = 0; i < ad.params.size(); i++) ad.params[i] += 0.01f * (float)(i % 7);
    std::vector<int32_t> toks = {1, 403, 407, 261, 300};
    AdapterRunner runner(*m.model, ad, 32, pool, DType::F32);
    EXPECT_EQ(runner.n_past(), ad.n_prefix);
    std::vector<float> logits = runner.eval({toks.begin(), toks.begin() + 3});
    logits = runner.eval({toks.begin() + 3, toks.end()});  // in two pieces, as generation does

    const int64_t P = ad.n_prefix, n = P + 5, d = hp.n_embd;
    std::vector<float> x((size_t)(n * d));
    auto rows = ad.input_rows();
    std::copy(rows.begin(), rows.end(), x.begin());
    m.model->embed(toks.data(), 5, x.data() + P * d);
    DeepPrompts deep{ad.deep(0), P, nullptr};
    auto lora = ad.lora_views(hp, nullptr);
    llama_span_forward_train(*m.model, 0, hp.n_layer, x.data(), n, pool, nullptr, &deep,
                             lora.empty() ? nullptr : lora.data());
    std::vector<float> want((size_t)hp.n_vocab);
    m.model->head(x.data() + (n - 1) * d, 1, want.data(), pool);
    for (int64_t v = 0; v < hp.n_vocab; v++) EXPECT_NEAR(logits[v], want[v], 1e-3) << adapter_mode_name(mode);
  }
}

TEST(Adapter, SaveLoadAndResumeExactly) {
  if (!have_files()) GTEST_SKIP();
  LoadedModel m = load_model(model_path());
  ThreadPool pool(2);
  TextData data = TextData::from_text(*m.tokenizer, read_file_bytes(text_path()), 0.1);
  FinetuneConfig cfg;
  cfg.steps = 6, cfg.batch = 2, cfg.seqlen = 16, cfg.eval_windows = 1;
  const std::string path =
      (std::filesystem::temp_directory_path() / ("engine_test_adapter_" + std::to_string(getpid()) + ".gguf")).string();

  Adapter straight = Adapter::init(*m.model, AdapterMode::DeepPTune, 2, 1);
  AdamWState o1;
  finetune_adapter(*m.model, data, straight, o1, cfg, local_loss(*m.model, pool), nullptr);

  // Interrupted after step 3 (same horizon: the schedule depends on it), saved,
  // loaded and resumed: schedule, batches and moments all carry over.
  {
    Adapter a = Adapter::init(*m.model, AdapterMode::DeepPTune, 2, 1);
    AdamWState o;
    try {
      finetune_adapter(*m.model, data, a, o, cfg, local_loss(*m.model, pool), [&](const StepReport& r) {
        if (r.step == 3) throw 3;
      });
    } catch (int) {
    }
    EXPECT_EQ(o.t, 3);
    a.save(path, "stories260K", &o);
    AdamWState o2;
    Adapter b = Adapter::load(path, m.model->hparams(), &o2);
    EXPECT_EQ(b.params, a.params);
    EXPECT_EQ(o2.m, o.m);
    EXPECT_EQ(o2.v, o.v);
  }
  AdamWState o4;
  Adapter again = Adapter::load(path, m.model->hparams(), &o4);
  EXPECT_EQ(again.mode, AdapterMode::DeepPTune);
  EXPECT_EQ(o4.t, 3);
  finetune_adapter(*m.model, data, again, o4, cfg, local_loss(*m.model, pool), nullptr);
  EXPECT_EQ(o4.t, 6);
  ASSERT_EQ(again.params.size(), straight.params.size());
  for (size_t i = 0; i < again.params.size(); i++) EXPECT_NEAR(again.params[i], straight.params[i], 1e-6);

  // LoRA's hyper-parameters travel with it.
  Adapter lora = make(*m.model, AdapterMode::LoRA, 0, 3);
  lora.params[5] = 0.25f;
  lora.save(path, "stories260K", nullptr);
  AdamWState none;
  Adapter lora2 = Adapter::load(path, m.model->hparams(), &none);
  EXPECT_EQ(lora2.mode, AdapterMode::LoRA);
  EXPECT_EQ(lora2.lora_rank, 2);
  EXPECT_EQ(lora2.lora_alpha, 4.0f);
  EXPECT_EQ(lora_targets_string(lora2.lora_targets), "q,v,o,down");
  EXPECT_EQ(lora2.params, lora.params);
  EXPECT_EQ(none.t, 0);
  std::filesystem::remove(path);

  // A file that is not an adapter is refused with a clear error.
  EXPECT_THROW(Adapter::load(model_path(), m.model->hparams()), Error);
}

TEST(Adapter, ShortRunLowersHeldOutLoss) {
  if (!have_files()) GTEST_SKIP();
  LoadedModel m = load_model(model_path());
  ThreadPool pool(2);
  TextData data = TextData::from_text(*m.tokenizer, read_file_bytes(text_path()), 0.1);
  for (AdapterMode mode : {AdapterMode::PTune, AdapterMode::LoRA}) {
  FinetuneConfig cfg;
  cfg.steps = 20, cfg.batch = 4, cfg.seqlen = 32, cfg.lr = mode == AdapterMode::LoRA ? 1e-2f : 3e-2f;
  cfg.eval_windows = 8;
  Adapter ad = make(*m.model, mode, 8, 1);
  AdamWState opt;
  double first = -1, last = -1;
  finetune_adapter(*m.model, data, ad, opt, cfg, local_loss(*m.model, pool), [&](const StepReport& r) {
    if (!r.has_eval) return;
    if (first < 0) first = r.eval_loss;
    last = r.eval_loss;
  });
  EXPECT_EQ(opt.t, 20);
  EXPECT_LT(last, first) << adapter_mode_name(mode) << ": held-out loss " << first << " -> " << last;
  }
}
