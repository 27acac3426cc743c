#include "commands/train_flags.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "core/io.h"

namespace engine::train {

namespace fs = std::filesystem;

PretrainConfig TrainFlags::defaults() {
  PretrainConfig c;
  // A small run: the default model (0.87 M parameters) takes about a minute for 100
  // steps on 2 cores (1500-2000 tok/s) and reaches a held-out loss of ~2.2 on fortunes.
  c.steps = 100, c.batch = 8, c.seqlen = 128;
  c.lr = 3e-3f;
  c.eval_every = 25;
  c.eval_windows = 32;
  return c;
}

void TrainFlags::add_to(ArgParser& p) {
  p.add("--data", "PATH", "training text: a UTF-8 file, or a folder of them (read recursively in path order; "
                          "binary files are skipped); its last --heldout fraction is kept out for evaluation", &data);
  p.add("-o,--output", "OUT.gguf", "model to write (a llama.cpp GGUF); its optimizer state goes to OUT.gguf.state",
        &out);
  // Model shape, as init-model's flags.
  p.add("--dim", "D", "embedding width of a new model", &dim);
  p.add("--ffn", "F", "feed-forward width (default: 8/3 of dim, rounded up to 32)", &ffn);
  p.add("--layers", "L", "number of blocks", &layers);
  p.add("--heads", "H", "attention heads", &heads);
  p.add("--kv-heads", "K", "key/value heads (default: = heads)", &kv_heads);
  p.add("--experts", "E", "mixture of experts: E SwiGLU experts of width --ffn per block (Mixtral layout; 0 = dense)",
        &experts);
  p.add("--experts-used", "K", "experts each token uses (with --experts)", &experts_used);
  p.add("--ctx", "C", "context length written to the model (default: --seqlen)", &ctx);
  p.add("--init-std", "X", "standard deviation of the initial weights", &init_std);
  p.add("--rope-base", "B", "RoPE frequency base", &rope_base);
  p.add("--vocab", "bytes|GGUF", "tokenizer: 'bytes' (260 tokens: every byte, and a space token) or the tokenizer "
                                 "of a GGUF file", &vocab);
  p.add("--init-from", "MODEL.gguf", "start from this model's weights, shape and tokenizer (F32/F16/BF16/Q8_0) "
                                     "instead of random ones", &init_from);
  p.add("--resume", "CKPT.gguf", "continue a run exactly from its checkpoint (weights, Adam moments, step; the "
                                 "batches follow from --seed and the step)", &resume);
  // Optimizer and schedule.
  p.add("--steps", "N", "optimizer steps in all (counting resumed ones); the schedule spans them", &cfg.steps);
  p.add("--stop-after", "N", "stop after step N with a checkpoint (0: at --steps); the schedule still spans "
                             "--steps, so --resume continues it exactly", &cfg.stop_at);
  p.add("--batch", "B", "sequences per step", &cfg.batch);
  p.add("--seqlen", "T", "tokens per sequence", &cfg.seqlen);
  p.add("--lr", "X", "peak learning rate (AdamW)", &cfg.lr);
  p.add("--min-lr-ratio", "R", "final learning rate as a fraction of --lr (cosine decay)", &cfg.min_lr_ratio);
  p.add("--warmup", "W", "linear warm-up steps (default: steps / 20, at least 1)", &cfg.warmup);
  p.add("--clip", "C", "clip the gradient's global L2 norm to C (0 = off)", &cfg.clip);
  p.add("--weight-decay", "D", "AdamW decoupled weight decay, on matrices only (not on norms)", &cfg.weight_decay);
  p.add("--seed", "S", "seed of the initial weights and of the batches", &cfg.seed);
  // Evaluation, logs, checkpoints.
  p.add("--heldout", "F", "fraction of the text (at its end) held out for evaluation", &heldout);
  p.add("--eval-every", "E", "evaluate the held-out loss every E steps (0: at the start and the end only)",
        &cfg.eval_every);
  p.add("--eval-windows", "K", "held-out windows of --seqlen tokens an evaluation uses (at most)", &cfg.eval_windows);
  p.add("--checkpoint-every", "K", "write OUT.gguf and its state every K steps (0: at the end only)",
        &cfg.checkpoint_every);
  p.add("--log", "CSV", "loss log, one row per step (default: OUT with .csv; appended on --resume)", &log);
  p.add("--plot", "SVG", "draw train and held-out loss against samples into this SVG (redrawn at every evaluation)",
        &plot);
  p.add("--plot-logs", "LIST", "with --plot: only draw the CSV logs NAME=PATH,NAME=PATH,... on one chart and exit",
        &plot_logs);
  p.add("--type", "f32|f16", "weight type of OUT.gguf (with f16 the f32 master weights go to the state file, so "
                            "--resume stays exact)", &type);
  p.add("-t,--threads", "N", "threads (default: all cores)", &threads);
}

namespace {

// The byte vocabulary as a Tokenizer: set_byte_vocab only writes GGUF metadata, so it
// goes through a small temporary file.
std::unique_ptr<Tokenizer> byte_tokenizer() {
  GGUFWriter w;
  set_byte_vocab(w);
  const fs::path tmp = fs::temp_directory_path() / ("engine-byte-vocab-" + std::to_string(getpid()) + ".gguf");
  w.write(tmp.string());
  const std::string bytes = read_file_bytes(tmp.string());
  std::error_code ec;
  fs::remove(tmp, ec);
  auto f = GGUFFile::from_memory((const uint8_t*)bytes.data(), bytes.size(), "byte vocabulary");
  return Tokenizer::from_gguf(*f);
}

LlamaHParams shape_from_flags(const TrainFlags& f, int64_t n_vocab) {
  if (f.dim <= 0 || f.ffn < 0 || f.layers <= 0 || f.heads <= 0 || f.kv_heads < 0 || f.ctx < 0)
    throw Error("--dim, --layers, --heads must be > 0 (--ffn, --kv-heads, --ctx > 0 or left out)");
  if (f.dim % f.heads) throw Error("--dim must be a multiple of --heads");
  const int64_t kv = f.kv_heads ? f.kv_heads : f.heads;
  if (f.heads % kv) throw Error("--heads must be a multiple of --kv-heads");
  const int64_t hd = f.dim / f.heads;
  if (hd % 2) throw Error("the head size (--dim / --heads) must be even for RoPE");
  if (!(f.init_std > 0) || !(f.rope_base > 0)) throw Error("--init-std and --rope-base must be > 0");
  if (f.experts < 0 || f.experts > 256) throw Error("--experts " + std::to_string(f.experts) + " is outside 0..256");
  if (f.experts > 0 && (f.experts_used < 1 || f.experts_used > f.experts))
    throw Error("--experts-used " + std::to_string(f.experts_used) + " must be in 1.." + std::to_string(f.experts));
  LlamaHParams hp;
  hp.arch = "llama";
  hp.n_vocab = n_vocab;
  hp.n_embd = f.dim;
  hp.n_ff = f.ffn ? f.ffn : (f.dim * 8 / 3 + 31) / 32 * 32;
  hp.n_layer = f.layers;
  hp.n_head = f.heads;
  hp.n_head_kv = kv;
  hp.head_dim = hd;
  hp.n_rot = hd;
  hp.n_ctx_train = f.ctx ? f.ctx : f.cfg.seqlen;
  hp.rope_freq_base = f.rope_base;
  hp.n_expert = f.experts;
  hp.n_expert_used = f.experts > 0 ? f.experts_used : 0;
  return hp;
}

// --resume with shape flags: each one given must agree with the checkpoint.
void check_flags_match(const ArgParser& p, const TrainFlags& f, const LlamaHParams& hp, const std::string& what) {
  auto same = [&](const char* flag, int64_t given, int64_t have) {
    if (p.given(flag) && given != have)
      throw Error(what + ": the model has " + std::string(flag + 2) + " " + std::to_string(have) + ", but " + flag +
                  " " + std::to_string(given) + " was given");
  };
  same("--dim", f.dim, hp.n_embd);
  same("--ffn", f.ffn, hp.n_ff);
  same("--layers", f.layers, hp.n_layer);
  same("--heads", f.heads, hp.n_head);
  same("--kv-heads", f.kv_heads, hp.n_head_kv);
  same("--ctx", f.ctx, hp.n_ctx_train);
  same("--experts", f.experts, hp.n_expert);
  if (hp.moe()) same("--experts-used", f.experts_used, hp.n_expert_used);
  if (p.given("--rope-base") && f.rope_base != hp.rope_freq_base)
    throw Error(what + ": the model has rope base " + std::to_string(hp.rope_freq_base) + ", --rope-base differs");
}

std::string fmt_eta(double s) {
  if (!std::isfinite(s) || s < 0) s = 0;
  const long t = (long)(s + 0.5);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

}  // namespace

TrainSetup setup_training(TrainFlags& f, const ArgParser& p, bool needs_data, bool needs_out) {
  if (needs_data && f.data.empty()) throw Error("--data is required (a text file or a folder of them)");
  if (needs_out && f.out.empty()) throw Error("-o/--output is required (the model GGUF to write)");
  TrainSetup s;
  if (f.type == "f32") s.out_type = DType::F32;
  else if (f.type == "f16") s.out_type = DType::F16;
  else throw Error("unknown --type '" + f.type + "' (f32 or f16)");
  if (!(f.heldout >= 0 && f.heldout < 0.9f)) throw Error("--heldout must be in [0, 0.9)");
  const PretrainConfig& c = f.cfg;
  if (c.steps <= 0 || c.batch <= 0 || c.seqlen < 2) throw Error("--steps and --batch must be > 0, --seqlen > 1");
  if (c.stop_at < 0 || c.eval_every < 0 || c.eval_windows < 0 || c.checkpoint_every < 0 || c.warmup < -1)
    throw Error("--stop-after, --eval-every, --eval-windows, --checkpoint-every and --warmup must be >= 0");
  if (!(c.lr > 0)) throw Error("--lr must be > 0");
  if (!(c.min_lr_ratio >= 0 && c.min_lr_ratio <= 1)) throw Error("--min-lr-ratio must be in [0, 1]");
  if (!(c.clip >= 0) || !(c.weight_decay >= 0)) throw Error("--clip and --weight-decay must be >= 0");
  if (!f.resume.empty() && !f.init_from.empty()) throw Error("--resume and --init-from exclude each other");
  if (f.log.empty() && !f.out.empty()) f.log = fs::path(f.out).replace_extension(".csv").string();

  std::vector<std::string> skipped;
  const std::string text = needs_data ? read_corpus(f.data, &skipped) : std::string();
  for (const std::string& b : skipped) std::fprintf(stderr, "train: note: skipping %s (binary: it has NUL bytes)\n", b.c_str());

  const char* shape_flags[] = {"--dim",         "--ffn", "--layers",    "--heads",       "--kv-heads",
                               "--ctx",         "--rope-base", "--experts", "--experts-used"};
  if (!f.resume.empty()) {
    if (p.given("--vocab")) throw Error("--vocab: a resumed run keeps the checkpoint's tokenizer");
    auto file = GGUFFile::open(f.resume);
    check_flags_match(p, f, LlamaHParams::from_gguf(*file), "--resume " + f.resume);
    s.state = load_checkpoint(f.resume);
    if (p.given("--seed") && f.cfg.seed != s.state.seed)
      throw Error("--resume " + f.resume + ": the run's batches follow --seed " + std::to_string(s.state.seed) +
                  ", but --seed " + std::to_string(f.cfg.seed) + " was given");
    if (s.state.step >= c.steps)
      throw Error("--resume " + f.resume + ": the checkpoint has already taken " + std::to_string(s.state.step) +
                  " steps (raise --steps)");
    if (c.stop_at > 0 && c.stop_at <= s.state.step)
      throw Error("--stop-after " + std::to_string(c.stop_at) + " is not past the checkpoint's step " +
                  std::to_string(s.state.step));
    s.tokenizer = Tokenizer::from_gguf(*file);
    s.vocab_name = file->get_string("train.vocab", f.resume);
    if (s.vocab_name != "bytes") s.vocab_file = std::move(file);  // outputs copy its tokenizer
    s.resumed = true;
  } else if (!f.init_from.empty()) {
    for (const char* flag : shape_flags)
      if (p.given(flag)) throw Error(std::string(flag) + ": --init-from takes the model's shape from " + f.init_from);
    if (p.given("--vocab")) throw Error("--vocab: --init-from keeps the tokenizer of " + f.init_from);
    auto file = GGUFFile::open(f.init_from);
    s.state.params = ModelParams::from_gguf(*file);
    s.tokenizer = Tokenizer::from_gguf(*file);
    s.vocab_name = f.init_from;
    s.vocab_file = std::move(file);
  } else {
    if (f.vocab == "bytes") {
      s.tokenizer = byte_tokenizer();
      s.vocab_name = "bytes";
    } else {
      s.vocab_file = GGUFFile::open(f.vocab);
      s.tokenizer = Tokenizer::from_gguf(*s.vocab_file);
      s.vocab_name = f.vocab;
    }
    const LlamaHParams hp = shape_from_flags(f, s.tokenizer->n_vocab());
    s.state.params = ModelParams::init_random(hp, f.cfg.seed, f.init_std);
  }
  if (!s.resumed) s.state.seed = f.cfg.seed;
  const LlamaHParams& hp = s.state.params.hp;
  if (c.seqlen > hp.n_ctx_train)
    throw Error("--seqlen " + std::to_string(c.seqlen) + " exceeds the model's context " +
                std::to_string(hp.n_ctx_train) + (f.resume.empty() && f.init_from.empty() ? " (raise --ctx)" : ""));

  if (needs_data) s.data = TextData::from_text(*s.tokenizer, text, f.heldout);
  if (needs_data && (int64_t)s.data.train.size() < c.seqlen + 2)
    throw Error(f.data + ": the training text has " + std::to_string(s.data.train.size()) +
                " tokens, fewer than --seqlen " + std::to_string(c.seqlen) + " + 2");
  std::fprintf(stderr,
               "train: model dim %lld, ffn %lld%s, %lld layers, %lld/%lld heads, vocab %lld (%s), ctx %lld: %.2f M "
               "parameters%s\n",
               (long long)hp.n_embd, (long long)hp.n_ff,
               hp.moe() ? (" x " + std::to_string(hp.n_expert) + " experts (" + std::to_string(hp.n_expert_used) +
                           " used)").c_str()
                        : "",
               (long long)hp.n_layer, (long long)hp.n_head,
               (long long)hp.n_head_kv, (long long)hp.n_vocab, s.vocab_name.c_str(), (long long)hp.n_ctx_train,
               (double)s.state.params.size() / 1e6,
               s.resumed ? (", resumed at step " + std::to_string(s.state.step)).c_str()
                         : (f.init_from.empty() ? ", random init" : (", from " + f.init_from).c_str()));
  if (needs_data)
    std::fprintf(stderr, "train: data %s: %zu training / %zu held-out tokens; steps %lld, batch %lld x %lld tokens, lr %g\n",
               f.data.c_str(), s.data.train.size(), s.data.heldout.size(), (long long)c.steps, (long long)c.batch,
               (long long)c.seqlen, c.lr);
  return s;
}

void save_training_checkpoint(const TrainFlags& f, const TrainSetup& s, const TrainState& st) {
  save_checkpoint(st, f.out, s.out_type, s.vocab_file.get(),
                  [&](GGUFWriter& w) { w.set_string("train.vocab", s.vocab_name); });
}

// ---- progress -----------------------------------------------------------------

TrainReporter::TrainReporter(const TrainFlags& f, const Trainer& t, const std::string& extra_header)
    : f_(f), log_(f.log, t.step() > 0 ? t.step() : -1, extra_header), first_step_(t.step()), seqlen_(t.config().seqlen) {
  for (const LossRow& r : log_.rows())
    if (std::isfinite(r.elapsed_s)) elapsed_before_ = r.elapsed_s;
}

void TrainReporter::report(const StepReport& r, const TrainState& st, const std::string& extra) {
  LossRow row;
  row.extra = extra;
  row.step = r.step;
  row.samples = st.samples;
  row.tokens = st.samples * seqlen_;  // every window scores seqlen targets
  if (r.has_eval) {
    row.eval_loss = r.eval_loss;
    if (std::isnan(first_eval_)) first_eval_ = r.eval_loss;
    last_eval_ = r.eval_loss;
  }
  if (r.tokens == 0) {  // the evaluation before the first step
    if (r.has_eval) {
      std::fprintf(stderr, "train: step %lld/%lld  eval loss %.4f\n", (long long)r.step, (long long)r.steps,
                   r.eval_loss);
      // A resumed log usually has this evaluation already (the end of the previous run).
      const auto& rows = log_.rows();
      const bool have = !rows.empty() && rows.back().step == r.step && std::isfinite(rows.back().eval_loss);
      if (!have) log_.append(row);
      plot();
    }
    return;
  }
  train_seconds_ += r.seconds;
  tokens_ += (double)r.tokens;
  elapsed_ = r.elapsed;
  if (std::isnan(first_loss_)) first_loss_ = r.loss;
  last_loss_ = r.loss;
  const double tps = tokens_ / std::max(train_seconds_, 1e-9);
  const double per_step = r.elapsed / (double)std::max<int64_t>(1, r.step - first_step_);
  const int64_t end = f_.cfg.stop_at > 0 ? std::min(f_.cfg.stop_at, r.steps) : r.steps;
  std::fprintf(stderr, "train: step %lld/%lld  loss %.3f  lr %.1e  |g| %.2f  %.0f tok/s  ETA %s\n", (long long)r.step,
               (long long)r.steps, r.loss, r.lr, r.grad_norm, tps, fmt_eta(per_step * (double)(end - r.step)).c_str());
  if (r.has_eval)
    std::fprintf(stderr, "train: step %lld/%lld  eval loss %.4f\n", (long long)r.step, (long long)r.steps, r.eval_loss);
  row.train_loss = r.loss;
  row.lr = r.lr;
  row.grad_norm = r.grad_norm;
  row.tokens_per_s = tps;
  row.elapsed_s = elapsed_before_ + r.elapsed;
  log_.append(row);
  if (r.has_eval) plot();
}

void TrainReporter::plot() {
  if (f_.plot.empty()) return;
  write_loss_svg(f_.plot, "engine train: " + fs::path(f_.out).filename().string(), "samples",
                 loss_series(log_.rows(), true));
}

void TrainReporter::finish(const TrainState& st) {
  plot();
  std::fprintf(stderr,
               "train: done: step %lld, %lld samples; this run %.0f tokens in %.1fs (%.0f tok/s training); "
               "loss %.3f -> %.3f, eval loss %.4f -> %.4f\n",
               (long long)st.step, (long long)st.samples, tokens_, elapsed_, tokens_ / std::max(train_seconds_, 1e-9),
               first_loss_, last_loss_, first_eval_, last_eval_);
  if (!f_.out.empty())
    std::fprintf(stderr, "train: wrote %s (+ %s), log %s%s%s\n", f_.out.c_str(), state_path(f_.out).c_str(),
                 f_.log.c_str(), f_.plot.empty() ? "" : ", chart ", f_.plot.c_str());
  else if (!f_.plot.empty())
    std::fprintf(stderr, "train: wrote chart %s\n", f_.plot.c_str());
}

void plot_logs(const std::string& list, const std::string& svg_path, const std::string& title) {
  std::vector<Series> all;
  size_t at = 0;
  while (at <= list.size()) {
    size_t comma = list.find(',', at);
    if (comma == std::string::npos) comma = list.size();
    const std::string item = list.substr(at, comma - at);
    at = comma + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string path = eq == std::string::npos ? item : item.substr(eq + 1);
    const std::string name = eq == std::string::npos ? fs::path(path).stem().string() : item.substr(0, eq);
    for (Series& sr : loss_series(read_loss_csv(path), true, name + " ")) all.push_back(std::move(sr));
  }
  if (all.empty()) throw Error("--plot-logs: no logs given");
  write_loss_svg(svg_path, title, "samples", all);
}

}  // namespace engine::train
