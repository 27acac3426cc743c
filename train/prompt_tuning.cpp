#include "train/prompt_tuning.h"

#include <algorithm>
#include <random>

#include "core/error.h"
#include "core/gguf.h"
#include "models/llama_backward.h"

namespace engine::train {

const char* prompt_mode_name(PromptMode m) { return m == PromptMode::PTune ? "ptune" : "deep-ptune"; }

PromptMode parse_prompt_mode(const std::string& s) {
  if (s == "ptune") return PromptMode::PTune;
  if (s == "deep-ptune") return PromptMode::DeepPTune;
  throw Error("unknown prompt-tuning mode '" + s + "' (ptune or deep-ptune)");
}

std::vector<float> PromptAdapter::input_rows() const {
  if (mode == PromptMode::PTune) return params;
  return std::vector<float>((size_t)(n_prefix * n_embd), 0.0f);
}

const float* PromptAdapter::deep(int64_t first_block) const {
  if (mode != PromptMode::DeepPTune) return nullptr;
  return params.data() + first_block * n_prefix * n_embd;
}

PromptAdapter PromptAdapter::init(const LlamaModel& m, PromptMode mode, int64_t n_prefix, uint64_t seed) {
  const LlamaHParams& hp = m.hparams();
  if (n_prefix <= 0 || n_prefix > 4096) throw Error("--prefix must be in 1..4096");
  PromptAdapter a;
  a.mode = mode, a.n_prefix = n_prefix, a.n_embd = hp.n_embd, a.n_layer = hp.n_layer;
  a.params.assign((size_t)((mode == PromptMode::PTune ? 1 : hp.n_layer) * n_prefix * hp.n_embd), 0.0f);
  std::mt19937_64 rng(seed);
  std::vector<int32_t> toks((size_t)n_prefix);
  for (auto& t : toks) t = (int32_t)(rng() % (uint64_t)hp.n_vocab);
  m.embed(toks.data(), n_prefix, a.params.data());  // ptune: the prefix; deep: block 0's prompt
  return a;
}

void PromptAdapter::save(const std::string& path, const std::string& base_name, const AdamWState* opt) const {
  GGUFWriter w;
  w.set_string("general.type", "adapter");
  w.set_string("adapter.type", prompt_mode_name(mode));
  w.set_string("adapter.base_model", base_name);
  w.set_u32("adapter.n_prefix", (uint32_t)n_prefix);
  w.set_u32("adapter.n_embd", (uint32_t)n_embd);
  w.set_u32("adapter.n_layer", (uint32_t)n_layer);
  const std::vector<int64_t> ne = mode == PromptMode::PTune ? std::vector<int64_t>{n_embd, n_prefix}
                                                            : std::vector<int64_t>{n_embd, n_prefix, n_layer};
  const size_t bytes = params.size() * sizeof(float);
  w.add_tensor("prompt.params", DType::F32, ne, params.data(), bytes);
  if (opt && opt->t > 0) {
    w.set_u64("train.step", (uint64_t)opt->t);
    w.add_tensor("optim.m", DType::F32, ne, opt->m.data(), bytes);
    w.add_tensor("optim.v", DType::F32, ne, opt->v.data(), bytes);
  }
  w.write(path);
}

PromptAdapter PromptAdapter::load(const std::string& path, const LlamaHParams& hp, AdamWState* opt) {
  auto f = GGUFFile::open(path);
  if (f->get_string("general.type") != "adapter") f->fail("not an adapter file (general.type is not 'adapter')");
  PromptAdapter a;
  a.mode = parse_prompt_mode(f->require_string("adapter.type"));
  a.n_prefix = f->require_int("adapter.n_prefix");
  a.n_embd = f->require_int("adapter.n_embd");
  a.n_layer = f->require_int("adapter.n_layer");
  if (a.n_embd != hp.n_embd || a.n_layer != hp.n_layer)
    f->fail("adapter was trained for n_embd " + std::to_string(a.n_embd) + ", " + std::to_string(a.n_layer) +
            " blocks; the model has " + std::to_string(hp.n_embd) + ", " + std::to_string(hp.n_layer));
  if (a.n_prefix <= 0 || a.n_prefix > 4096) f->fail("bad adapter.n_prefix");
  const int64_t n = (a.mode == PromptMode::PTune ? 1 : a.n_layer) * a.n_prefix * a.n_embd;
  auto tensor = [&](const char* name, std::vector<float>& out) {
    const GGUFTensorInfo& t = f->require_tensor(name);
    if (t.type != DType::F32 || t.n_elements() != n) f->fail(std::string("tensor ") + name + " has the wrong type or size");
    out.resize((size_t)n);
    std::copy((const float*)t.data, (const float*)t.data + n, out.begin());
  };
  tensor("prompt.params", a.params);
  if (opt) {
    *opt = AdamWState{};
    if (f->find_tensor("optim.m")) {
      tensor("optim.m", opt->m);
      tensor("optim.v", opt->v);
      opt->t = f->require_int("train.step");
    }
  }
  return a;
}

CrossEntropyResult prompt_loss_and_grad(const LlamaModel& m, const LmHead& head, const PromptAdapter& ad,
                                        const std::vector<Window>& windows, float grad_scale, float* grad,
                                        ThreadPool& pool) {
  const LlamaHParams& hp = m.hparams();
  const int64_t P = ad.n_prefix, d = hp.n_embd;
  const std::vector<float> prefix = ad.input_rows();
  CrossEntropyResult total;
  for (const Window& w : windows) {
    const int64_t L = (int64_t)w.inputs.size(), n = P + L;
    if ((int64_t)w.targets.size() != L) throw Error("window inputs and targets differ in length");
    std::vector<float> x((size_t)(n * d));                                  // [P + L][d]
    std::copy(prefix.begin(), prefix.end(), x.begin());
    m.embed(w.inputs.data(), L, x.data() + P * d);
    std::vector<int32_t> targets((size_t)n, -1);                            // the prefix scores nothing
    std::copy(w.targets.begin(), w.targets.end(), targets.begin() + P);

    DeepPrompts deep{ad.deep(0), P, nullptr};
    std::vector<float> ck;
    llama_span_forward_train(m, 0, hp.n_layer, x.data(), n, pool, grad ? &ck : nullptr, &deep);
    std::vector<float> dx(grad ? (size_t)(n * d) : 0, 0.0f);
    CrossEntropyResult r = head_cross_entropy(head, x.data(), targets.data(), n, grad_scale,
                                              grad ? dx.data() : nullptr, pool);
    total.loss_sum += r.loss_sum, total.n_scored += r.n_scored;
    if (!grad) continue;
    if (ad.mode == PromptMode::DeepPTune) deep.grad = grad;
    llama_span_backward(m, 0, hp.n_layer, ck, dx.data(), n, pool, nullptr, &deep);
    if (ad.mode == PromptMode::PTune) cpu::add_inplace(grad, dx.data(), P * d);  // embedding rows 0..P-1
  }
  return total;
}

PromptRunner::PromptRunner(const LlamaModel& m, const PromptAdapter& ad, int64_t n_ctx, ThreadPool& pool,
                           DType kv_type)
    : model_(m), pool_(pool), cache_(m.hparams(), 0, m.hparams().n_layer, n_ctx, kv_type) {
  const LlamaHParams& hp = m.hparams();
  if (ad.n_embd != hp.n_embd || ad.n_layer != hp.n_layer) throw Error("adapter does not fit the model");
  if (ad.n_prefix >= n_ctx) throw Error("the adapter's prefix does not fit in the context (raise -c)");
  // The prefix goes in as the training forward saw it: block by block, with each
  // block's deep prompt added to its input rows first.
  std::vector<float> x = ad.input_rows();
  for (int64_t b = 0; b < hp.n_layer; b++) {
    if (const float* dp = ad.deep(b)) cpu::add_inplace(x.data(), dp, ad.n_prefix * hp.n_embd);
    llama_block_forward(hp, m.block(b), cache_, b, x.data(), ad.n_prefix, pool_);
  }
  cache_.n_past = ad.n_prefix;
}

const std::vector<float>& PromptRunner::eval(const std::vector<int32_t>& tokens) {
  const LlamaHParams& hp = model_.hparams();
  const int64_t n = (int64_t)tokens.size();
  if (n == 0) throw Error("nothing to evaluate");
  hidden_.resize((size_t)(n * hp.n_embd));
  model_.embed(tokens.data(), n, hidden_.data());
  model_.forward(cache_, hidden_.data(), n, pool_);
  logits_.resize((size_t)hp.n_vocab);
  model_.head(hidden_.data() + (n - 1) * hp.n_embd, 1, logits_.data(), pool_);
  return logits_;
}

}  // namespace engine::train
