// engine finetune: train a small adapter on a text file while the model stays frozen.
// Locally (ptune, deep-ptune, LoRA) or with the blocks on the swarm (--swarm:
// ptune, deep-ptune), where this process holds only the embeddings and the head.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "commands/model_flags.h"
#include "commands/swarm_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "models/loaded_model.h"
#include "train/finetune.h"
#include "train/swarm_adapter.h"

using namespace engine;
using namespace engine::train;

static std::string fmt_time(double s) {
  char buf[32];
  if (s < 60) std::snprintf(buf, sizeof buf, "%.0fs", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%dm%02ds", (int)s / 60, (int)s % 60);
  else std::snprintf(buf, sizeof buf, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
  return buf;
}

static int cmd_finetune(int argc, char** argv) {
  std::string model, data_path, mode = "ptune", out, log_path, resume, targets = "q,v";
  int threads = 0;
  int64_t prefix = 8, rank = 8;
  float alpha = 16.0f, heldout = 0.1f;
  FinetuneConfig cfg;
  SwarmFlags swf;
  ArgParser p("finetune", "Fine-tune an adapter on a text file; the model's own weights stay frozen (and may be "
                          "SpQR). Writes the adapter (with its optimizer state, so --resume continues it) and a "
                          "CSV loss log.");
  p.add("-m,--model", "FILE", "model GGUF", &model, true);
  p.add("--data", "FILE", "training text (UTF-8); its last --heldout fraction is kept out for evaluation", &data_path,
        true);
  p.add("-o,--output", "FILE", "adapter GGUF to write", &out, true);
  p.add("--mode", "MODE", "ptune (trainable input prefix), deep-ptune (a prefix per block) or lora", &mode);
  p.add("--prefix", "N", "prefix length in virtual tokens", &prefix);
  p.add("--rank", "R", "LoRA rank", &rank);
  p.add("--alpha", "A", "LoRA alpha (the update is scaled by alpha / rank)", &alpha);
  p.add("--lora-targets", "LIST", "linears LoRA adapts in every block: q,k,v,o,gate,up,down", &targets);
  p.add("--steps", "N", "optimizer steps (in all, counting resumed ones)", &cfg.steps);
  p.add("--batch", "B", "sequences per step", &cfg.batch);
  p.add("--seqlen", "L", "tokens per sequence", &cfg.seqlen);
  p.add("--lr", "X", "peak learning rate (AdamW)", &cfg.lr);
  p.add("--min-lr-ratio", "X", "final learning rate as a fraction of --lr (cosine decay)", &cfg.min_lr_ratio);
  p.add("--warmup", "N", "linear warm-up steps (default: steps / 10)", &cfg.warmup);
  p.add("--weight-decay", "X", "AdamW decoupled weight decay", &cfg.adam.weight_decay);
  p.add("--clip", "X", "clip the gradient's global L2 norm to X (0 = off)", &cfg.clip);
  p.add("--seed", "S", "seed of the prefix initialisation and of the batches", &cfg.seed);
  p.add("--heldout", "F", "fraction of the text held out for evaluation", &heldout);
  p.add("--eval-every", "N", "evaluate held-out loss every N steps (default: at the start and the end)",
        &cfg.eval_every);
  p.add("--log", "FILE", "CSV loss log (default: the output path with .csv)", &log_path);
  p.add("--resume", "FILE", "continue from an adapter written by finetune (parameters and optimizer state)",
        &resume);
  p.add("-t,--threads", "N", "threads (default: all cores)", &threads);
  swf.add_to(p, true, false);  // no spot checks of training steps yet
  swf.verify_rate = 0;
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    const AdapterMode pmode = parse_adapter_mode(mode);
    const bool on_swarm = swf.enabled();
    if (on_swarm && pmode == AdapterMode::LoRA)
      throw Error("--mode lora adapts weights inside the blocks, so it trains only locally; with --swarm use "
                  "--mode ptune or deep-ptune");
    if (!(heldout >= 0 && heldout < 0.9f)) throw Error("--heldout must be in [0, 0.9)");
    if (log_path.empty()) {
      std::filesystem::path lp(out);
      lp.replace_extension(".csv");
      log_path = lp.string();
    }
    // With --swarm only the embeddings, the head and the tokenizer are loaded here.
    LoadedModel m = on_swarm ? load_model(model, SwarmFlags::client_load_options()) : load_model(model);
    ThreadPool pool(threads);
    TextData data = TextData::from_text(*m.tokenizer, read_file_bytes(data_path), heldout);
    AdamWState opt;
    Adapter ad;
    if (!resume.empty()) {
      ad = Adapter::load(resume, m.model->hparams(), &opt);
      if (p.given("--mode") && ad.mode != pmode) throw Error("--resume: the adapter is " + std::string(adapter_mode_name(ad.mode)));
      if (opt.t >= cfg.steps)
        throw Error("--resume: the adapter has already taken " + std::to_string(opt.t) + " steps (raise --steps)");
      if (on_swarm && ad.mode == AdapterMode::LoRA) throw Error("--resume: a LoRA adapter trains only locally");
    } else {
      ad = pmode == AdapterMode::LoRA ? Adapter::init_lora(*m.model, rank, alpha, parse_lora_targets(targets), cfg.seed)
                                      : Adapter::init(*m.model, pmode, prefix, cfg.seed);
    }
    std::fprintf(stderr,
                 "finetune: %s, %lld trainable parameters (%s), %zu training / %zu held-out tokens, "
                 "steps %lld from %lld, batch %lld x %lld tokens, lr %g\n",
                 adapter_mode_name(ad.mode), (long long)ad.size(),
                 ad.mode == AdapterMode::LoRA
                     ? ("rank " + std::to_string(ad.lora_rank) + " on " + lora_targets_string(ad.lora_targets)).c_str()
                     : ("prefix " + std::to_string(ad.n_prefix)).c_str(),
                 data.train.size(),
                 data.heldout.size(), (long long)cfg.steps, (long long)opt.t, (long long)cfg.batch,
                 (long long)cfg.seqlen, cfg.lr);

    // A resumed run appends to its log; a fresh log (or a fresh run) starts with the header.
    const bool append = opt.t > 0 && std::filesystem::exists(log_path) && std::filesystem::file_size(log_path) > 0;
    std::ofstream log(log_path, append ? std::ios::app : std::ios::trunc);
    if (!log) throw Error(log_path + ": cannot write the loss log");
    if (!append) log << "step,loss,eval_loss,lr,grad_norm,tokens,seconds\n";
    const int64_t every = std::max<int64_t>(1, cfg.steps / 50);
    double tokens_done = 0, seconds_done = 0;
    const int64_t first_step = opt.t;
    // Where the blocks run: here, or on the swarm's servers.
    std::unique_ptr<net::SwarmClient> client;
    std::unique_ptr<net::TrainingChain> chain;
    LossFn loss;
    if (on_swarm) {
      client = swf.connect(*m.model, model);
      chain = std::make_unique<net::TrainingChain>(*client);
      auto head = std::make_shared<LmHead>(LmHead::from_model(*m.model));
      loss = [&, head](const Adapter& a, const std::vector<Window>& w, float scale, float* grad) {
        return swarm_adapter_loss_and_grad(*chain, *m.model, *head, a, w, scale, grad, pool);
      };
    } else {
      loss = local_loss(*m.model, pool);
    }
    finetune_adapter(*m.model, data, ad, opt, cfg, loss, [&](const StepReport& r) {
      if (r.tokens == 0) {  // the evaluation before the first step
        if (r.has_eval) std::fprintf(stderr, "step %lld/%lld  held-out loss %.4f\n", (long long)r.step,
                                     (long long)r.steps, r.eval_loss);
        if (r.has_eval) log << r.step << ",," << r.eval_loss << ",,,0,0\n";
        log.flush();
        return;
      }
      tokens_done += (double)r.tokens;
      seconds_done += r.seconds;
      const double tps = tokens_done / std::max(seconds_done, 1e-9);
      const double per_step = r.elapsed / (double)std::max<int64_t>(1, r.step - first_step);
      if (r.step % every == 0 || r.step == r.steps || r.has_eval) {
        std::fprintf(stderr, "step %lld/%lld  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  ETA %s", (long long)r.step,
                     (long long)r.steps, r.loss, r.lr, r.grad_norm, tps,
                     fmt_time(per_step * (double)(r.steps - r.step)).c_str());
        if (r.has_eval) std::fprintf(stderr, "  held-out loss %.4f", r.eval_loss);
        std::fprintf(stderr, "\n");
      }
      log << r.step << "," << r.loss << ",";
      if (r.has_eval) log << r.eval_loss;
      log << "," << r.lr << "," << r.grad_norm << "," << r.tokens << "," << r.seconds << "\n";
      log.flush();
    });
    if (chain) {
      const auto& st = chain->stats();
      std::fprintf(stderr,
                   "finetune: swarm: %lld forward and %lld backward calls, %lld failed (%lld forwards and %lld "
                   "backwards redone elsewhere)\n",
                   (long long)st.forward_calls, (long long)st.backward_calls, (long long)st.failures,
                   (long long)st.redone_forwards, (long long)st.redone_backwards);
    }
    ad.save(out, m.file->get_string("general.name", std::filesystem::path(model).stem().string()), &opt);
    std::fprintf(stderr, "finetune: wrote %s (loss log %s)\n", out.c_str(), log_path.c_str());
    return 0;
  });
}

ENGINE_COMMAND("finetune", "fine-tune an adapter (ptune, deep-ptune, LoRA) on a text file; the model stays frozen", cmd_finetune);
