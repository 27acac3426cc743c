#include "train/finetune.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <random>

#include "core/error.h"

namespace engine::train {

TextData TextData::from_text(const Tokenizer& tok, const std::string& text, double heldout_frac) {
  TextData d;
  d.bos = tok.bos();
  std::vector<int32_t> all = tok.encode(text, false);
  const int64_t n_held = (int64_t)((double)all.size() * heldout_frac);
  d.train.assign(all.begin(), all.end() - n_held);
  d.heldout.assign(all.end() - n_held, all.end());
  return d;
}

Window make_window(const std::vector<int32_t>& s, int64_t start, int64_t seqlen, int32_t bos) {
  Window w;
  if (bos >= 0) {
    if (start + seqlen > (int64_t)s.size()) throw Error("window past the end of the data");
    w.inputs.push_back(bos);
    w.inputs.insert(w.inputs.end(), s.begin() + start, s.begin() + start + seqlen - 1);
    w.targets.assign(s.begin() + start, s.begin() + start + seqlen);
  } else {
    if (start + seqlen + 1 > (int64_t)s.size()) throw Error("window past the end of the data");
    w.inputs.assign(s.begin() + start, s.begin() + start + seqlen);
    w.targets.assign(s.begin() + start + 1, s.begin() + start + seqlen + 1);
  }
  return w;
}

std::vector<Window> batch_for_step(const TextData& data, uint64_t seed, int64_t step, int64_t batch, int64_t seqlen) {
  const int64_t span = (int64_t)data.train.size() - seqlen - 1;
  if (span < 1)
    throw Error("the training text has " + std::to_string(data.train.size()) + " tokens, fewer than --seqlen " +
                std::to_string(seqlen) + " + 2");
  std::seed_seq ss{(uint32_t)seed, (uint32_t)(seed >> 32), (uint32_t)step, (uint32_t)(step >> 32)};
  std::mt19937_64 rng(ss);
  std::vector<Window> out;
  for (int64_t i = 0; i < batch; i++) out.push_back(make_window(data.train, (int64_t)(rng() % (uint64_t)span), seqlen, data.bos));
  return out;
}

std::vector<Window> heldout_windows(const TextData& data, int64_t seqlen, int64_t max_windows) {
  std::vector<Window> out;
  for (int64_t s = 0; s + seqlen + 1 <= (int64_t)data.heldout.size() && (int64_t)out.size() < max_windows; s += seqlen)
    out.push_back(make_window(data.heldout, s, seqlen, data.bos));
  return out;
}

LossFn local_loss(const LlamaModel& m, ThreadPool& pool) {
  auto head = std::make_shared<LmHead>(LmHead::from_model(m));
  return [&m, &pool, head](const Adapter& ad, const std::vector<Window>& w, float scale, float* grad) {
    return adapter_loss_and_grad(m, *head, ad, w, scale, grad, pool);
  };
}

double evaluate(const LossFn& loss, const Adapter& ad, const std::vector<Window>& windows) {
  CrossEntropyResult r = loss(ad, windows, 0.0f, nullptr);
  return r.n_scored ? r.loss_sum / (double)r.n_scored : 0.0;
}

void finetune_adapter(const LlamaModel& m, const TextData& data, Adapter& ad, AdamWState& opt,
                      const FinetuneConfig& cfg, const LossFn& loss, const std::function<void(const StepReport&)>& on_step) {
  if (cfg.steps <= 0 || cfg.batch <= 0 || cfg.seqlen <= 1) throw Error("--steps, --batch must be > 0, --seqlen > 1");
  if (ad.n_prefix + cfg.seqlen > m.hparams().n_ctx_train)
    throw Error("--prefix + --seqlen exceeds the model's context (" + std::to_string(m.hparams().n_ctx_train) + ")");
  const std::vector<Window> held = heldout_windows(data, cfg.seqlen, cfg.eval_windows);
  const int64_t warmup = cfg.warmup >= 0 ? cfg.warmup : cfg.steps / 10;
  using clock = std::chrono::steady_clock;
  const auto t_begin = clock::now();

  StepReport first;
  first.step = opt.t, first.steps = cfg.steps;
  if (!held.empty()) first.has_eval = true, first.eval_loss = evaluate(loss, ad, held);
  if (on_step) on_step(first);

  std::vector<float> grad((size_t)ad.size());
  for (int64_t step = opt.t; step < cfg.steps; step++) {
    const auto t0 = clock::now();
    const std::vector<Window> batch = batch_for_step(data, cfg.seed, step, cfg.batch, cfg.seqlen);
    int64_t n_targets = 0;
    for (const Window& w : batch) n_targets += (int64_t)w.targets.size();
    std::fill(grad.begin(), grad.end(), 0.0f);
    // The gradient of the MEAN loss over the batch's tokens.
    CrossEntropyResult r = loss(ad, batch, 1.0f / (float)n_targets, grad.data());
    StepReport rep;
    rep.step = step + 1, rep.steps = cfg.steps;
    rep.loss = r.loss_sum / (double)r.n_scored;
    rep.tokens = r.n_scored;
    rep.grad_norm = clip_grad_norm(grad.data(), ad.size(), cfg.clip);
    rep.lr = lr_schedule(step, cfg.steps, warmup, cfg.lr, cfg.min_lr_ratio);
    adamw_step(ad.params.data(), grad.data(), ad.size(), opt, cfg.adam, rep.lr);
    const auto t1 = clock::now();
    rep.seconds = std::chrono::duration<double>(t1 - t0).count();
    rep.elapsed = std::chrono::duration<double>(t1 - t_begin).count();
    const bool last = step + 1 == cfg.steps;
    if (!held.empty() && (last || (cfg.eval_every > 0 && (step + 1) % cfg.eval_every == 0)))
      rep.has_eval = true, rep.eval_loss = evaluate(loss, ad, held);
    if (on_step) on_step(rep);
  }
}

}  // namespace engine::train
