// engine perplexity: llama.cpp's protocol (see models/perplexity.h), so the
// numbers compare with llama-perplexity.
#include <unistd.h>

#include <chrono>
#include <cstdio>

#include "commands/model_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "core/io.h"
#include "models/loaded_model.h"
#include "models/perplexity.h"

using namespace engine;

static int cmd_perplexity(int argc, char** argv) {
  ModelFlags mf;
  mf.ctx = 512;
  std::string file, kl_base;
  bool json = false;
  int64_t max_chunks = 0;
  ArgParser p("perplexity", "Perplexity of a model on a text file (llama.cpp's llama-perplexity protocol).");
  mf.add_to(p);
  p.add("-f,--file", "FILE", "text to evaluate", &file, true);
  p.add("--chunks", "N", "evaluate at most N chunks (0 = all)", &max_chunks);
  p.add("--kl-base", "MODEL", "also report the mean KL divergence from this (higher-precision) model", &kl_base);
  p.flag("--json", "print the result as JSON on stdout", &json);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    LoadedModel m = load_model(mf.model);
    std::string text = read_file_bytes(file);
    // As llama.cpp's -f: one trailing newline is dropped.
    if (!text.empty() && text.back() == '\n') text.pop_back();
    std::vector<int32_t> tokens = m.tokenizer->encode(text, true);
    ThreadPool pool(mf.threads);
    LoadedModel base;
    if (!kl_base.empty()) base = load_model(kl_base, {}, false);
    auto t0 = std::chrono::steady_clock::now();
    const bool tty = isatty(STDERR_FILENO);
    std::fprintf(stderr, "perplexity: %zu tokens, context %lld\n", tokens.size(), (long long)mf.ctx);
    PerplexityResult r = perplexity(*m.model, tokens, mf.ctx, m.tokenizer->add_bos(), m.tokenizer->bos(), pool,
                                    max_chunks, [&](int64_t done, int64_t total, double ppl) {
      // A live line on a terminal; in a log, one line per tenth of the run.
      if (!tty && done % std::max<int64_t>(1, total / 10) != 0 && done != total) return;
      double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::fprintf(stderr, "%sperplexity: chunk %lld/%lld, running PPL %.4f, %.1f s, ETA %.1f s   ", tty ? "\r" : "", (long long)done,
                   (long long)total, ppl, el, el / done * (total - done));
      if (!tty) std::fputc('\n', stderr);
    }, base.model.get());
    if (tty) std::fprintf(stderr, "\n");
    if (json)
      std::printf("{\"ppl\":%.6f,\"ppl_error\":%.6f,\"n_ctx\":%lld,\"chunks\":%lld,\"tokens_scored\":%lld,\"kl_mean\":%.6g}\n",
                  r.ppl, r.ppl_error, (long long)mf.ctx, (long long)r.chunks, (long long)r.tokens_scored, r.kl_mean);
    else {
      std::printf("Final estimate: PPL = %.4f +/- %.5f\n", r.ppl, r.ppl_error);
      if (r.kl_mean >= 0) std::printf("Mean KL divergence from %s: %.6f\n", kl_base.c_str(), r.kl_mean);
    }
    return 0;
  });
}

ENGINE_COMMAND("perplexity", "perplexity of a model on a text file (llama.cpp protocol)", cmd_perplexity);
