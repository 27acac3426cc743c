#include "train/adapter.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "core/error.h"
#include "core/gguf.h"

namespace engine::train {

const char* adapter_mode_name(AdapterMode m) {
  switch (m) {
    case AdapterMode::PTune: return "ptune";
    case AdapterMode::DeepPTune: return "deep-ptune";
    case AdapterMode::LoRA: return "lora";
  }
  return "?";
}

AdapterMode parse_adapter_mode(const std::string& s) {
  if (s == "ptune") return AdapterMode::PTune;
  if (s == "deep-ptune") return AdapterMode::DeepPTune;
  if (s == "lora") return AdapterMode::LoRA;
  throw Error("unknown adapter mode '" + s + "' (ptune, deep-ptune or lora)");
}

const char* const kLoraTargetNames[kLoraTargets] = {"q", "k", "v", "o", "gate", "up", "down"};

uint32_t parse_lora_targets(const std::string& csv) {
  uint32_t mask = 0;
  std::stringstream ss(csv);
  std::string name;
  while (std::getline(ss, name, ',')) {
    int i = 0;
    while (i < kLoraTargets && name != kLoraTargetNames[i]) i++;
    if (i == kLoraTargets) throw Error("unknown LoRA target '" + name + "' (q, k, v, o, gate, up, down)");
    mask |= 1u << i;
  }
  if (!mask) throw Error("no LoRA targets");
  return mask;
}

std::string lora_targets_string(uint32_t mask) {
  std::string s;
  for (int i = 0; i < kLoraTargets; i++)
    if (mask & (1u << i)) {
      if (!s.empty()) s += ',';
      s += kLoraTargetNames[i];
    }
  return s;
}

namespace {
// [rows, cols] of target i in a block.
void target_shape(const LlamaHParams& hp, int i, int64_t* rows, int64_t* cols) {
  const int64_t d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.n_ff;
  const int64_t shapes[kLoraTargets][2] = {{qd, d}, {kvd, d}, {kvd, d}, {d, qd}, {ff, d}, {ff, d}, {d, ff}};
  *rows = shapes[i][0], *cols = shapes[i][1];
}
LoraLinear& target_of(LlamaBlockLora& l, int i) {
  LoraLinear* t[kLoraTargets] = {&l.q, &l.k, &l.v, &l.o, &l.gate, &l.up, &l.down};
  return *t[i];
}
const cpu::Linear& linear_of(const LlamaBlockWeights& w, int i) {
  const cpu::Linear* t[kLoraTargets] = {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down};
  return *t[i];
}
cpu::Linear& linear_of(LlamaBlockWeights& w, int i) {
  cpu::Linear* t[kLoraTargets] = {&w.wq, &w.wk, &w.wv, &w.wo, &w.w_gate, &w.w_up, &w.w_down};
  return *t[i];
}
int64_t lora_size(const LlamaHParams& hp, int64_t rank, uint32_t targets) {
  int64_t per_block = 0;
  for (int i = 0; i < kLoraTargets; i++)
    if (targets & (1u << i)) {
      int64_t r, c;
      target_shape(hp, i, &r, &c);
      per_block += rank * (r + c);
    }
  return per_block * hp.n_layer;
}
}  // namespace

std::vector<float> Adapter::input_rows() const {
  if (mode == AdapterMode::PTune) return params;
  return std::vector<float>((size_t)(n_prefix * n_embd), 0.0f);
}

const float* Adapter::deep(int64_t first_block) const {
  if (mode != AdapterMode::DeepPTune) return nullptr;
  return params.data() + first_block * n_prefix * n_embd;
}

std::vector<LlamaBlockLora> Adapter::lora_views(const LlamaHParams& hp, float* grad) const {
  std::vector<LlamaBlockLora> out;
  if (mode != AdapterMode::LoRA) return out;
  out.resize((size_t)hp.n_layer);
  int64_t off = 0;
  for (int64_t b = 0; b < hp.n_layer; b++)
    for (int i = 0; i < kLoraTargets; i++) {
      if (!(lora_targets & (1u << i))) continue;
      int64_t rows, cols;
      target_shape(hp, i, &rows, &cols);
      LoraLinear& l = target_of(out[b], i);
      l.rank = lora_rank;
      l.scale = lora_alpha / (float)lora_rank;
      l.A = params.data() + off;
      l.B = params.data() + off + lora_rank * cols;
      if (grad) l.dA = grad + off, l.dB = grad + off + lora_rank * cols;
      off += lora_rank * (rows + cols);
    }
  return out;
}

Adapter Adapter::init(const LlamaModel& m, AdapterMode mode, int64_t n_prefix, uint64_t seed) {
  if (mode == AdapterMode::LoRA) throw Error("use Adapter::init_lora for LoRA");
  const LlamaHParams& hp = m.hparams();
  if (n_prefix <= 0 || n_prefix > 4096) throw Error("--prefix must be in 1..4096");
  Adapter a;
  a.mode = mode, a.n_prefix = n_prefix, a.n_embd = hp.n_embd, a.n_layer = hp.n_layer;
  a.params.assign((size_t)((mode == AdapterMode::PTune ? 1 : hp.n_layer) * n_prefix * hp.n_embd), 0.0f);
  std::mt19937_64 rng(seed);
  std::vector<int32_t> toks((size_t)n_prefix);
  for (auto& t : toks) t = (int32_t)(rng() % (uint64_t)hp.n_vocab);
  m.embed(toks.data(), n_prefix, a.params.data());  // ptune: the prefix; deep: block 0's prompt
  return a;
}

Adapter Adapter::init_lora(const LlamaModel& m, int64_t rank, float alpha, uint32_t targets, uint64_t seed) {
  const LlamaHParams& hp = m.hparams();
  if (rank <= 0 || rank > 4096) throw Error("--rank must be in 1..4096");
  if (!(alpha > 0)) throw Error("--alpha must be positive");
  Adapter a;
  a.mode = AdapterMode::LoRA, a.n_embd = hp.n_embd, a.n_layer = hp.n_layer;
  a.lora_rank = rank, a.lora_alpha = alpha, a.lora_targets = targets;
  a.params.assign((size_t)lora_size(hp, rank, targets), 0.0f);
  std::mt19937_64 rng(seed);
  for (const LlamaBlockLora& bl : a.lora_views(hp, nullptr))
    for (int i = 0; i < kLoraTargets; i++) {
      const LoraLinear& l = target_of(const_cast<LlamaBlockLora&>(bl), i);
      if (!l.rank) continue;
      int64_t rows, cols;
      target_shape(hp, i, &rows, &cols);
      std::normal_distribution<float> N(0.0f, 1.0f / std::sqrt((float)cols));
      float* A = const_cast<float*>(l.A);
      for (int64_t k = 0; k < rank * cols; k++) A[k] = N(rng);  // B stays 0
    }
  return a;
}

void Adapter::save(const std::string& path, const std::string& base_name, const AdamWState* opt) const {
  GGUFWriter w;
  w.set_string("general.type", "adapter");
  w.set_string("adapter.type", adapter_mode_name(mode));
  w.set_string("adapter.base_model", base_name);
  w.set_u32("adapter.n_prefix", (uint32_t)n_prefix);
  w.set_u32("adapter.n_embd", (uint32_t)n_embd);
  w.set_u32("adapter.n_layer", (uint32_t)n_layer);
  std::vector<int64_t> ne;
  if (mode == AdapterMode::PTune) ne = {n_embd, n_prefix};
  else if (mode == AdapterMode::DeepPTune) ne = {n_embd, n_prefix, n_layer};
  else {
    ne = {size()};
    w.set_u32("adapter.lora_rank", (uint32_t)lora_rank);
    w.set_f32("adapter.lora_alpha", lora_alpha);
    w.set_string("adapter.lora_targets", lora_targets_string(lora_targets));
  }
  const size_t bytes = params.size() * sizeof(float);
  w.add_tensor("adapter.params", DType::F32, ne, params.data(), bytes);
  if (opt && opt->t > 0) {
    w.set_u64("train.step", (uint64_t)opt->t);
    w.add_tensor("optim.m", DType::F32, ne, opt->m.data(), bytes);
    w.add_tensor("optim.v", DType::F32, ne, opt->v.data(), bytes);
  }
  w.write(path);
}

Adapter Adapter::load(const std::string& path, const LlamaHParams& hp, AdamWState* opt) {
  auto f = GGUFFile::open(path);
  if (f->get_string("general.type") != "adapter") f->fail("not an adapter file (general.type is not 'adapter')");
  Adapter a;
  a.mode = parse_adapter_mode(f->require_string("adapter.type"));
  a.n_prefix = f->require_int("adapter.n_prefix");
  a.n_embd = f->require_int("adapter.n_embd");
  a.n_layer = f->require_int("adapter.n_layer");
  if (a.n_embd != hp.n_embd || a.n_layer != hp.n_layer)
    f->fail("adapter was trained for n_embd " + std::to_string(a.n_embd) + ", " + std::to_string(a.n_layer) +
            " blocks; the model has " + std::to_string(hp.n_embd) + ", " + std::to_string(hp.n_layer));
  int64_t n;
  if (a.mode == AdapterMode::LoRA) {
    a.lora_rank = f->require_int("adapter.lora_rank");
    a.lora_alpha = (float)f->get_float("adapter.lora_alpha", 0.0);
    a.lora_targets = parse_lora_targets(f->require_string("adapter.lora_targets"));
    if (a.lora_rank <= 0 || a.lora_rank > 4096 || !(a.lora_alpha > 0)) f->fail("bad LoRA rank or alpha");
    n = lora_size(hp, a.lora_rank, a.lora_targets);
  } else {
    if (a.n_prefix <= 0 || a.n_prefix > 4096) f->fail("bad adapter.n_prefix");
    n = (a.mode == AdapterMode::PTune ? 1 : a.n_layer) * a.n_prefix * a.n_embd;
  }
  auto tensor = [&](const char* name, std::vector<float>& out) {
    const GGUFTensorInfo& t = f->require_tensor(name);
    if (t.type != DType::F32 || t.n_elements() != n)
      f->fail(std::string("tensor ") + name + " has the wrong type or size");
    out.resize((size_t)n);
    std::copy((const float*)t.data, (const float*)t.data + n, out.begin());
  };
  tensor("adapter.params", a.params);
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

namespace {

// One window's loss, and its gradient accumulated into `grad` (null: loss only).
CrossEntropyResult window_loss_and_grad(const LlamaModel& m, const LmHead& head, const Adapter& ad, const Window& w,
                                        const std::vector<float>& prefix, float grad_scale, float* grad,
                                        ThreadPool& pool) {
  const LlamaHParams& hp = m.hparams();
  const int64_t P = ad.n_prefix, d = hp.n_embd;
  const int64_t L = (int64_t)w.inputs.size(), n = P + L;
  if ((int64_t)w.targets.size() != L) throw Error("window inputs and targets differ in length");
  const std::vector<LlamaBlockLora> lora = ad.lora_views(hp, grad);
  const LlamaBlockLora* lp = lora.empty() ? nullptr : lora.data();
  std::vector<float> x((size_t)(n * d));                                    // [P + L][d]
  std::copy(prefix.begin(), prefix.end(), x.begin());
  m.embed(w.inputs.data(), L, x.data() + P * d);
  std::vector<int32_t> targets((size_t)n, -1);                              // the prefix scores nothing
  std::copy(w.targets.begin(), w.targets.end(), targets.begin() + P);

  DeepPrompts deep{ad.deep(0), P, nullptr};
  std::vector<float> ck;
  llama_span_forward_train(m, 0, hp.n_layer, x.data(), n, pool, grad ? &ck : nullptr, &deep, lp);
  std::vector<float> dx(grad ? (size_t)(n * d) : 0, 0.0f);
  CrossEntropyResult r =
      head_cross_entropy(head, x.data(), targets.data(), n, grad_scale, grad ? dx.data() : nullptr, pool);
  if (!grad) return r;
  if (ad.mode == AdapterMode::DeepPTune) deep.grad = grad;
  llama_span_backward(m, 0, hp.n_layer, ck, dx.data(), n, pool, nullptr, &deep, lp);
  if (ad.mode == AdapterMode::PTune) cpu::add_inplace(grad, dx.data(), P * d);  // embedding rows 0..P-1
  return r;
}

}  // namespace

CrossEntropyResult adapter_loss_and_grad(const LlamaModel& m, const LmHead& head, const Adapter& ad,
                                         const std::vector<Window>& windows, float grad_scale, float* grad,
                                         ThreadPool& pool) {
  const std::vector<float> prefix = ad.input_rows();
  const int64_t nw = (int64_t)windows.size();
  // Small models: the ops of one window are too small to split across threads
  // (stories260K ran at one core's speed), so windows run in parallel instead, each
  // into its own gradient buffer; ops called from a pool task run on that thread.
  // Buffers are summed in window order, so the result does not depend on timing.
  // Large models keep one window at a time (activation memory) with parallel ops.
  const bool by_window = pool.size() > 1 && nw > 1 && m.hparams().n_embd <= 512;
  if (!by_window) {
    CrossEntropyResult total;
    for (const Window& w : windows) {
      CrossEntropyResult r = window_loss_and_grad(m, head, ad, w, prefix, grad_scale, grad, pool);
      total.loss_sum += r.loss_sum, total.n_scored += r.n_scored;
    }
    return total;
  }
  std::vector<CrossEntropyResult> res((size_t)nw);
  std::vector<std::vector<float>> grads(grad ? (size_t)nw : 0);
  pool.parallel_for(nw, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) {
      if (grad) grads[i].assign((size_t)ad.size(), 0.0f);
      res[i] = window_loss_and_grad(m, head, ad, windows[i], prefix, grad_scale, grad ? grads[i].data() : nullptr,
                                    pool);
    }
  });
  CrossEntropyResult total;
  for (int64_t i = 0; i < nw; i++) {
    total.loss_sum += res[i].loss_sum, total.n_scored += res[i].n_scored;
    if (grad) cpu::add_inplace(grad, grads[i].data(), ad.size());
  }
  return total;
}

AdapterRunner::AdapterRunner(const LlamaModel& m, const Adapter& ad, int64_t n_ctx, ThreadPool& pool, DType kv_type)
    : model_(m), pool_(pool), cache_(m.hparams(), 0, m.hparams().n_layer, n_ctx, kv_type) {
  const LlamaHParams& hp = m.hparams();
  if (ad.n_embd != hp.n_embd || ad.n_layer != hp.n_layer) throw Error("adapter does not fit the model");
  if (ad.n_prefix >= n_ctx) throw Error("the adapter's prefix does not fit in the context (raise -c)");
  for (int64_t b = 0; b < hp.n_layer; b++) blocks_.push_back(m.block(b));
  // LoRA: merge W + scale·B·A once, into f32 rows (dequantized from any format).
  const std::vector<LlamaBlockLora> lora = ad.lora_views(hp, nullptr);
  for (int64_t b = 0; b < (int64_t)lora.size(); b++)
    for (int i = 0; i < kLoraTargets; i++) {
      const LoraLinear& l = target_of(const_cast<LlamaBlockLora&>(lora[b]), i);
      if (!l.rank) continue;
      const cpu::Linear& base = linear_of(m.block(b), i);
      const int64_t rows = base.rows(), cols = base.cols(), r = l.rank;
      std::vector<float> W((size_t)(rows * cols));
      for (int64_t ro = 0; ro < rows; ro++) {
        if (base.spqr) base.spqr->dequantize_row(ro, &W[ro * cols]);
        else dequantize_row(base.dense.type, (const uint8_t*)base.dense.data + ro * base.dense.row_bytes,
                            &W[ro * cols], cols);
        for (int64_t j = 0; j < r; j++) {
          const float s = l.scale * l.B[ro * r + j];
          for (int64_t c = 0; c < cols; c++) W[ro * cols + c] += s * l.A[j * cols + c];
        }
      }
      merged_.push_back(std::move(W));
      cpu::Linear& lin = linear_of(blocks_[b], i);
      lin = cpu::Linear{};
      lin.dense = cpu::WeightView{DType::F32, rows, cols, merged_.back().data(), (size_t)cols * sizeof(float)};
    }
  adapter_ = ad;
  if (adapter_.mode == AdapterMode::LoRA) adapter_.params.clear();  // merged above; only the prefix is kept
  run_prefix();
}

void AdapterRunner::reset() {
  cache_.clear();
  run_prefix();
}

void AdapterRunner::run_prefix() {
  // The prefix goes in as the training forward saw it: each block's deep prompt
  // is added to its input rows first.
  if (adapter_.n_prefix > 0) {
    std::vector<float> x = adapter_.input_rows();
    run_blocks(x.data(), adapter_.n_prefix, &adapter_);
  }
}

void AdapterRunner::run_blocks(float* x, int64_t n, const Adapter* prefix_of) {
  const LlamaHParams& hp = model_.hparams();
  if (cache_.n_past + n > cache_.n_ctx)
    throw Error("context is full: " + std::to_string(cache_.n_past + n) + " positions needed, " +
                std::to_string(cache_.n_ctx) + " available (raise -c)");
  for (int64_t b = 0; b < hp.n_layer; b++) {
    if (prefix_of)
      if (const float* dp = prefix_of->deep(b)) cpu::add_inplace(x, dp, n * hp.n_embd);
    llama_block_forward(hp, blocks_[b], cache_, b, x, n, pool_);
  }
  cache_.n_past += n;
}

const std::vector<float>& AdapterRunner::eval(const std::vector<int32_t>& tokens) {
  const LlamaHParams& hp = model_.hparams();
  const int64_t n = (int64_t)tokens.size();
  if (n == 0) throw Error("nothing to evaluate");
  hidden_.resize((size_t)(n * hp.n_embd));
  model_.embed(tokens.data(), n, hidden_.data());
  run_blocks(hidden_.data(), n, nullptr);
  logits_.resize((size_t)hp.n_vocab);
  model_.head(hidden_.data() + (n - 1) * hp.n_embd, 1, logits_.data(), pool_);
  return logits_;
}

}  // namespace engine::train
