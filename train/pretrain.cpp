#include "train/pretrain.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>

#include "core/error.h"
#include "core/io.h"

namespace engine::train {

namespace fs = std::filesystem;

// ---- corpus -------------------------------------------------------------------

std::string read_corpus(const std::string& path, std::vector<std::string>* skipped) {
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw Error(path + ": no such file or folder");
  if (!fs::is_directory(st)) {
    std::string text = read_file_bytes(path);
    if (text.empty()) throw Error(path + ": the corpus is empty");
    if (text.find('\0') != std::string::npos) throw Error(path + ": not a text file (it has NUL bytes)");
    return text;
  }
  // Symlinks are not followed (a folder of data often links one file under two names,
  // as /usr/share/games/fortunes does with its .u8 links), so each text counts once.
  std::vector<fs::path> files;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec))
    if (it->symlink_status().type() == fs::file_type::regular) files.push_back(it->path());
  if (ec) throw Error(path + ": cannot list the folder: " + ec.message());
  std::sort(files.begin(), files.end());
  std::string all;
  for (const fs::path& f : files) {
    std::string text = read_file_bytes(f.string());
    if (text.empty()) continue;
    if (text.find('\0') != std::string::npos) {
      if (skipped) skipped->push_back(f.string());
      continue;
    }
    if (!all.empty()) all += '\n';
    all += text;
  }
  if (all.empty())
    throw Error(path + ": no text in the folder (" + std::to_string(files.size()) + " files, " +
                std::to_string(skipped ? skipped->size() : 0) + " of them binary)");
  return all;
}

// ---- trainer ------------------------------------------------------------------

int64_t PretrainConfig::warmup_steps() const { return warmup >= 0 ? warmup : std::max<int64_t>(1, steps / 20); }

Trainer::Trainer(TrainState state, const TextData& data, const PretrainConfig& cfg, ThreadPool& pool)
    : st_(std::move(state)), data_(data), cfg_(cfg), pool_(pool) {
  if (cfg_.steps <= 0 || cfg_.batch <= 0) throw Error("--steps and --batch must be > 0");
  if (cfg_.seqlen < 2) throw Error("--seqlen must be at least 2");
  if (cfg_.seqlen > st_.params.hp.n_ctx_train)
    throw Error("--seqlen " + std::to_string(cfg_.seqlen) + " exceeds the model's context (" +
                std::to_string(st_.params.hp.n_ctx_train) + ")");
  if (!(cfg_.lr > 0) || !(cfg_.min_lr_ratio >= 0 && cfg_.min_lr_ratio <= 1) || !(cfg_.clip >= 0) ||
      !(cfg_.weight_decay >= 0))
    throw Error("need --lr > 0, --min-lr-ratio in [0, 1], --clip >= 0, --weight-decay >= 0");
  // No text at all: a SWARM stage peer, whose gradients come from the trainers.
  if (!data_.train.empty() && (int64_t)data_.train.size() < cfg_.seqlen + 2)
    throw Error("the training text has " + std::to_string(data_.train.size()) + " tokens, fewer than --seqlen " +
                std::to_string(cfg_.seqlen) + " + 2");
  const size_t n = st_.params.data.size();
  if (st_.opt.m.empty() && st_.opt.v.empty()) st_.opt.m.assign(n, 0.0f), st_.opt.v.assign(n, 0.0f);
  if (st_.opt.m.size() != n || st_.opt.v.size() != n) throw Error("optimizer state and parameters differ in size");
  st_.opt.t = st_.step;
  heldout_ = heldout_windows(data_, cfg_.seqlen, cfg_.eval_windows);
}

CrossEntropyResult Trainer::accumulate(const std::vector<Window>& windows, float grad_scale, float* grad) {
  return model_loss_and_grad(st_.params, windows, grad_scale, grad, pool_);
}

float Trainer::lr_at(int64_t step) const {
  return lr_schedule(step, cfg_.steps, cfg_.warmup_steps(), cfg_.lr, cfg_.min_lr_ratio);
}

float Trainer::apply_step(float* g, float* lr_used) {
  ModelParams& p = st_.params;
  const float norm = clip_grad_norm(g, p.size(), cfg_.clip);
  const float lr = lr_at(st_.step);
  const int64_t t = st_.step + 1;
  for (const ParamTensor& pt : p.tensors) {
    const float wd = pt.is_matrix() ? cfg_.weight_decay : 0.0f;
    const int64_t off = pt.offset;
    // Elementwise, so the split does not change a bit.
    pool_.parallel_for(pt.numel(), 16384, [&](int64_t b, int64_t e) {
      adamw_update(p.data.data() + off + b, g + off + b, st_.opt.m.data() + off + b, st_.opt.v.data() + off + b,
                   e - b, t, cfg_.adam, lr, wd);
    });
  }
  st_.step = st_.opt.t = t;
  if (lr_used) *lr_used = lr;
  return norm;
}

double Trainer::evaluate() {
  if (heldout_.empty()) return NAN;
  const CrossEntropyResult r = model_loss_and_grad(st_.params, heldout_, 0.0f, nullptr, pool_);
  return r.n_scored ? r.loss_sum / (double)r.n_scored : NAN;
}

void pretrain(Trainer& t, const std::function<void(const StepReport&)>& on_step,
              const std::function<void(int64_t step)>& checkpoint) {
  const PretrainConfig& cfg = t.config();
  TrainState& st = t.state();
  const int64_t end = cfg.stop_at > 0 ? std::min(cfg.stop_at, cfg.steps) : cfg.steps;
  using clock = std::chrono::steady_clock;
  const auto t_begin = clock::now();

  StepReport first;
  first.step = st.step, first.steps = cfg.steps;
  first.eval_loss = t.evaluate();
  first.has_eval = std::isfinite(first.eval_loss);
  if (on_step) on_step(first);

  std::vector<float> grad((size_t)st.params.size());
  while (st.step < end) {
    const auto t0 = clock::now();
    const std::vector<Window> batch = batch_for_step(t.data(), st.seed, st.step, cfg.batch, cfg.seqlen);
    int64_t n_targets = 0;
    for (const Window& w : batch) n_targets += (int64_t)w.targets.size();
    std::fill(grad.begin(), grad.end(), 0.0f);
    // The gradient of the MEAN loss over the batch's tokens.
    const CrossEntropyResult r = t.accumulate(batch, 1.0f / (float)n_targets, grad.data());
    StepReport rep;
    rep.steps = cfg.steps;
    rep.loss = r.loss_sum / (double)std::max<int64_t>(1, r.n_scored);
    rep.tokens = r.n_scored;
    rep.grad_norm = t.apply_step(grad.data(), &rep.lr);
    rep.step = st.step;
    st.samples += (int64_t)batch.size();
    rep.seconds = std::chrono::duration<double>(clock::now() - t0).count();  // training only
    const bool last = st.step == end;
    if (last || (cfg.eval_every > 0 && st.step % cfg.eval_every == 0)) {
      rep.eval_loss = t.evaluate();
      rep.has_eval = std::isfinite(rep.eval_loss);
    }
    rep.elapsed = std::chrono::duration<double>(clock::now() - t_begin).count();
    if (on_step) on_step(rep);
    if (checkpoint && (last || (cfg.checkpoint_every > 0 && st.step % cfg.checkpoint_every == 0))) checkpoint(st.step);
  }
}

// ---- checkpoints ----------------------------------------------------------------

std::string state_path(const std::string& model_path) { return model_path + ".state"; }

void save_checkpoint(const TrainState& s, const std::string& path, DType type, const GGUFFile* vocab_from,
                     const std::function<void(GGUFWriter&)>& extra) {
  if (type != DType::F32 && type != DType::F16) throw Error("checkpoints are written as f32 or f16");
  const size_t bytes = s.params.data.size() * sizeof(float);
  if (s.opt.m.size() != s.params.data.size() || s.opt.v.size() != s.params.data.size())
    throw Error("save_checkpoint: optimizer state and parameters differ in size");
  const int64_t n = s.params.size();
  GGUFWriter w;
  w.set_string("general.type", "train-state");
  w.set_u64("train.step", (uint64_t)s.step);
  w.set_u64("train.seed", s.seed);
  w.set_u64("train.samples", (uint64_t)s.samples);
  w.set_u64("train.params_xxh3", s.params.checksum());
  w.add_tensor("optim.m", DType::F32, {n}, s.opt.m.data(), bytes);
  w.add_tensor("optim.v", DType::F32, {n}, s.opt.v.data(), bytes);
  // The model file rounds weights to f16; an exact resume needs the f32 master copy.
  if (type != DType::F32) w.add_tensor("train.params", DType::F32, {n}, s.params.data.data(), bytes);
  w.write(state_path(path));
  write_model_gguf(s.params, path, type, vocab_from, [&](GGUFWriter& mw) {
    mw.set_u64("train.step", (uint64_t)s.step);
    mw.set_u64("train.samples", (uint64_t)s.samples);
    if (extra) extra(mw);
  });
}

TrainState load_checkpoint(const std::string& path, const LlamaHParams* expect) {
  const std::string sp = state_path(path);
  if (!fs::exists(sp)) throw Error(path + ": no optimizer state beside it (" + sp + "): not a training checkpoint");
  auto model = GGUFFile::open(path);
  auto sf = GGUFFile::open(sp);
  if (sf->get_string("general.type") != "train-state") sf->fail("not a training state (general.type)");
  TrainState s;
  s.params = ModelParams::from_gguf(*model);
  if (expect) s.params.check_same_shape(*expect, path);
  const int64_t n = s.params.size();
  auto tensor = [&](const char* name, std::vector<float>& out) {
    const GGUFTensorInfo& t = sf->require_tensor(name);
    if (t.type != DType::F32 || t.n_elements() != n)
      sf->fail(std::string("tensor ") + name + " has " + std::to_string(t.n_elements()) + " values; the model has " +
               std::to_string(n) + " parameters");
    out.assign((const float*)t.data, (const float*)t.data + n);
  };
  if (sf->find_tensor("train.params")) tensor("train.params", s.params.data);
  tensor("optim.m", s.opt.m);
  tensor("optim.v", s.opt.v);
  auto u64 = [&](const char* key) {
    const GGUFValue* v = sf->find(key);
    if (!v || v->type != GGUFType::U64) sf->fail(std::string("missing or malformed ") + key);
    return v->u;
  };
  s.step = s.opt.t = (int64_t)u64("train.step");
  s.seed = u64("train.seed");
  s.samples = (int64_t)u64("train.samples");
  if (s.step < 0 || s.samples < 0) sf->fail("negative step or sample count");
  if (u64("train.params_xxh3") != s.params.checksum())
    throw Error(sp + ": this optimizer state belongs to other weights than " + path +
                " (the parameter checksums differ; was one of the two files replaced?)");
  return s;
}

// ---- state bytes ------------------------------------------------------------------

namespace {

constexpr char kStateMagic[8] = {'E', 'N', 'G', 'T', 'R', 'S', 'T', '1'};
// 2: the part of the model the state holds (PartSpec) follows the parameter count.
// 3: then the mixture's expert count and experts used per token (0, 0: dense). A
//    version-2 state (always dense) still reads.
constexpr uint32_t kStateVersion = 3;

template <typename T>
void put(std::string& o, T v) {
  o.append((const char*)&v, sizeof v);
}

struct Reader {
  std::string_view b;
  size_t at = 0;
  template <typename T>
  T get() {
    if (b.size() - at < sizeof(T)) throw Error("training state: truncated header");
    T v;
    std::memcpy(&v, b.data() + at, sizeof v);
    at += sizeof v;
    return v;
  }
};

// Parameters of this part of a Llama model of this shape (untied head), in double so
// a hostile shape cannot overflow the comparison with the byte count.
double param_count(const LlamaHParams& hp, const PartSpec& part) {
  const double d = (double)hp.n_embd, q = (double)hp.q_dim(), kv = (double)hp.kv_dim(), f = (double)hp.n_ff;
  const double E = (double)hp.n_expert;
  const double ffn = hp.moe() ? E * d + E * 3 * d * f : 3 * d * f;  // router + experts, or one FFN
  const double block = 2 * d + q * d + 2 * kv * d + d * q + ffn;
  return (part.embd_head ? 2 * (double)hp.n_vocab * d + d : 0.0) + (double)part.n_blocks * block;
}

}  // namespace

std::string serialize_state(const TrainState& s) {
  const LlamaHParams& hp = s.params.hp;
  const int64_t n = s.params.size();
  if ((int64_t)s.opt.m.size() != n || (int64_t)s.opt.v.size() != n)
    throw Error("serialize_state: optimizer state and parameters differ in size");
  std::string o;
  o.reserve(128 + (size_t)n * 12);
  o.append(kStateMagic, sizeof kStateMagic);
  put<uint32_t>(o, kStateVersion);
  for (int64_t v : {hp.n_vocab, hp.n_embd, hp.n_ff, hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_rot,
                    hp.n_ctx_train})
    put<int64_t>(o, v);
  put<float>(o, hp.rms_eps);
  put<float>(o, hp.rope_freq_base);
  put<int64_t>(o, s.step);
  put<uint64_t>(o, s.seed);
  put<int64_t>(o, s.samples);
  put<int64_t>(o, n);
  put<int64_t>(o, s.params.part.first_block);
  put<int64_t>(o, s.params.part.n_blocks);
  put<uint8_t>(o, s.params.part.embd_head ? 1 : 0);
  put<int64_t>(o, hp.n_expert);
  put<int64_t>(o, hp.n_expert_used);
  for (const std::vector<float>* v : {&s.params.data, &s.opt.m, &s.opt.v})
    o.append((const char*)v->data(), v->size() * sizeof(float));
  return o;
}

TrainState deserialize_state(std::string_view bytes) {
  Reader r{bytes};
  if (bytes.size() < sizeof kStateMagic || std::memcmp(bytes.data(), kStateMagic, sizeof kStateMagic) != 0)
    throw Error("training state: bad magic (not a training state)");
  r.at = sizeof kStateMagic;
  const uint32_t version = r.get<uint32_t>();
  if (version != kStateVersion && version != 2)
    throw Error("training state: version " + std::to_string(version) + " is not supported");
  LlamaHParams hp;
  hp.arch = "llama";
  for (int64_t* f : {&hp.n_vocab, &hp.n_embd, &hp.n_ff, &hp.n_layer, &hp.n_head, &hp.n_head_kv, &hp.head_dim,
                     &hp.n_rot, &hp.n_ctx_train})
    *f = r.get<int64_t>();
  hp.rms_eps = r.get<float>();
  hp.rope_freq_base = r.get<float>();
  TrainState s;
  s.step = r.get<int64_t>();
  s.seed = r.get<uint64_t>();
  s.samples = r.get<int64_t>();
  const int64_t n = r.get<int64_t>();
  PartSpec part;
  part.first_block = r.get<int64_t>();
  part.n_blocks = r.get<int64_t>();
  const uint8_t embd_head = r.get<uint8_t>();
  if (embd_head > 1) throw Error("training state: bad part");  // 0 or 1: one encoding per state
  part.embd_head = embd_head == 1;
  if (version >= 3) {
    hp.n_expert = r.get<int64_t>();
    hp.n_expert_used = r.get<int64_t>();
    const bool used_ok = hp.n_expert > 0 ? hp.n_expert_used >= 1 && hp.n_expert_used <= hp.n_expert
                                         : hp.n_expert_used == 0;
    if (hp.n_expert < 0 || hp.n_expert > 4096 || !used_ok)
      throw Error("training state: bad expert counts");
  }
  for (int64_t v : {hp.n_vocab, hp.n_embd, hp.n_ff, hp.n_layer, hp.n_head, hp.n_head_kv, hp.head_dim, hp.n_ctx_train})
    if (v <= 0 || v > (int64_t)1 << 24) throw Error("training state: bad model shape");
  if (hp.n_rot < 0 || hp.n_rot > hp.head_dim || hp.n_head % hp.n_head_kv || !(hp.rms_eps > 0) ||
      !std::isfinite(hp.rms_eps) || !(hp.rope_freq_base > 0) || !std::isfinite(hp.rope_freq_base))
    throw Error("training state: inconsistent model shape");
  if (s.step < 0 || s.samples < 0) throw Error("training state: negative step or sample count");
  try {
    check_part(part, hp.n_layer);
  } catch (const Error& e) {
    throw Error(std::string("training state: ") + e.what());
  }
  if (n <= 0 || (double)n != param_count(hp, part))
    throw Error("training state: parameter count does not match the shape");
  if ((bytes.size() - r.at) / 12 != (size_t)n || (bytes.size() - r.at) % 12)
    throw Error("training state: " + std::to_string(bytes.size() - r.at) + " bytes of values for " + std::to_string(n) +
                " parameters (want " + std::to_string(n * 12) + ")");
  s.params = ModelParams::layout_part(hp, part);
  if (s.params.size() != n) throw Error("training state: parameter count does not match the shape");
  s.opt.m.resize((size_t)n), s.opt.v.resize((size_t)n);
  for (std::vector<float>* v : {&s.params.data, &s.opt.m, &s.opt.v}) {
    std::memcpy(v->data(), bytes.data() + r.at, (size_t)n * sizeof(float));
    r.at += (size_t)n * sizeof(float);
  }
  s.opt.t = s.step;
  return s;
}

}  // namespace engine::train
