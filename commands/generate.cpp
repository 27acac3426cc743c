// engine generate: text from a prompt, streamed; --ids prints token ids instead.
#include <chrono>
#include <type_traits>
#include <cstdio>
#include <string>

#include "commands/adapter_flags.h"
#include "commands/model_flags.h"
#include "commands/swarm_flags.h"
#include "core/cli.h"
#include "core/error.h"
#include "models/loaded_model.h"
#include "models/sampling.h"
#include "net/address.h"
#include "net/spot_check.h"
#include "net/swarm_runner.h"
#include "train/adapter.h"

using namespace engine;

template <class Runner>
static int generate_with(Runner& runner, LoadedModel& m, const SamplingFlags& sf, const std::string& prompt,
                         int n_predict, bool ids);

static int cmd_generate(int argc, char** argv) {
  ModelFlags mf;
  SamplingFlags sf;
  std::string prompt;
  int n_predict = 128;
  bool ids = false;
  SwarmFlags swf;
  AdapterFlag adapter;
  ArgParser p("generate", "Generate text from a prompt with a local model (or, with --swarm, through servers "
                          "that hold its blocks), streaming it to stdout.");
  mf.add_to(p);
  p.add("-p,--prompt", "TEXT", "prompt (default: start from BOS alone)", &prompt);
  p.add("-n,--n-predict", "N", "number of tokens to generate", &n_predict);
  sf.add_to(p);
  p.flag("--ids", "print the generated token ids on one line instead of text", &ids);
  adapter.add_to(p);
  swf.add_to(p, true);
  if (!p.parse(argc, argv)) return p.exit_code();
  return run_command([&] {
    if (n_predict < 0) throw Error("-n must be >= 0");
    if (!swf.enabled()) {
      LoadedModel m = load_model(mf.model);
      ThreadPool pool(mf.threads);
      if (adapter.given()) {
        // The adapter's prefix sits in the cache ahead of the prompt: the context grows by it.
        train::Adapter ad = adapter.load(*m.model);
        train::AdapterRunner runner(*m.model, ad, choose_context(m.model->hparams(), mf.ctx) + ad.n_prefix, pool,
                                   mf.kv_type());
        return generate_with(runner, m, sf, prompt, n_predict, ids);
      }
      LocalRunner runner(*m.model, choose_context(m.model->hparams(), mf.ctx), pool, mf.kv_type());
      return generate_with(runner, m, sf, prompt, n_predict, ids);
    }
    // Swarm: only the embeddings, the head and the tokenizer are loaded here.
    LoadedModel m = load_model(mf.model, swf.client_load_options());
    ThreadPool pool(mf.threads);
    auto client = swf.connect(*m.model, mf.model);
    // The session holds the prompt and every generated token.
    std::vector<int32_t> probe = m.tokenizer->encode(prompt, true);
    int64_t need = std::max<int64_t>(1, (int64_t)probe.size()) + n_predict;
    train::Adapter ad;
    if (adapter.given()) ad = adapter.load(*m.model);
    // Servers hold at most the model's context: an adapter's prefix takes part of it.
    int64_t n_ctx = std::min<int64_t>(choose_context(m.model->hparams(), mf.ctx), need + ad.n_prefix);
    net::SwarmRunner runner(*m.model, *client, n_ctx, pool);
    runner.set_rollback(true);  // generate_with regenerates after a failed spot check
    if (adapter.given()) AdapterFlag::apply_to_swarm(runner, ad);
    int rc = generate_with(runner, m, sf, prompt, n_predict, ids);
    swf.report(*client);
    return rc;
  });
}

template <class Runner>
static int generate_with(Runner& runner, LoadedModel& m, const SamplingFlags& sf, const std::string& prompt,
                         int n_predict, bool ids) {
  {
    const LlamaHParams& hp = m.model->hparams();
    Sampler sampler(sf.params());

    std::vector<int32_t> tokens = m.tokenizer->encode(prompt, true);
    if (tokens.empty()) tokens.push_back(m.tokenizer->bos());
    if ((int64_t)tokens.size() >= runner.n_ctx())
      throw Error("prompt is " + std::to_string(tokens.size()) + " tokens, context is " +
                  std::to_string(runner.n_ctx()) + " (raise -c)");
    for (int32_t t : tokens) sampler.accept(t);

    StreamDecoder dec(*m.tokenizer);
    if (!ids) {
      for (int32_t t : tokens) std::fputs(dec.push(t).c_str(), stdout);
      std::fflush(stdout);
    }
    // A swarm spot check may find that outputs of earlier positions were wrong:
    // the runner then holds only the first k tokens, and the tokens sampled
    // from the bad logits are generated again (exactly so when greedy; the
    // sampler's RNG and penalty history are not rewound).
    const size_t n_prompt = tokens.size();
    std::vector<int32_t> all = tokens;
    std::vector<int32_t> generated;
    auto eval = [&](std::vector<int32_t> feed) {
      const std::vector<float>* l = &runner.eval(feed);
      if constexpr (std::is_same_v<Runner, net::SwarmRunner>) {
        for (int64_t k; (k = runner.take_rollback()) >= 0;) {
          size_t keep = net::tokens_to_keep(all.size(), n_prompt, k);
          if (keep < all.size() && !ids)
            std::fprintf(stderr, "\ngenerate: a server lied; tokens after %zu are regenerated (text above is wrong "
                                 "from there)\n", keep - n_prompt);
          all.resize(keep);
          generated.resize(keep - n_prompt);
          l = &runner.eval(std::vector<int32_t>(all.begin() + k, all.end()));
        }
      }
      return l;
    };
    auto t0 = std::chrono::steady_clock::now();
    const std::vector<float>* logits = eval(tokens);
    auto t1 = std::chrono::steady_clock::now();
    while ((int)generated.size() < n_predict) {
      int32_t next = sampler.sample(logits->data(), hp.n_vocab);
      if (m.tokenizer->is_eog(next)) break;
      generated.push_back(next);
      all.push_back(next);
      sampler.accept(next);
      if (!ids) {
        std::fputs(dec.push(next).c_str(), stdout);
        std::fflush(stdout);
      }
      if ((int)generated.size() == n_predict) break;
      if (runner.n_past() >= runner.n_ctx()) {
        std::fprintf(stderr, "\ngenerate: context of %lld tokens is full, stopping\n", (long long)runner.n_ctx());
        break;
      }
      logits = eval({next});
    }
    auto t2 = std::chrono::steady_clock::now();
    if (ids) {
      for (size_t i = 0; i < generated.size(); i++) std::printf("%s%d", i ? " " : "", generated[i]);
      std::printf("\n");
    } else {
      std::fputs(dec.flush().c_str(), stdout);
      std::printf("\n");
    }
    double pre = std::chrono::duration<double>(t1 - t0).count();
    double gen = std::chrono::duration<double>(t2 - t1).count();
    std::fprintf(stderr, "generate: prompt %zu tokens in %.3f s (%.1f tok/s), generated %zu tokens in %.3f s (%.1f tok/s), seed %llu\n",
                 tokens.size(), pre, tokens.size() / std::max(pre, 1e-9), generated.size(), gen,
                 generated.size() / std::max(gen, 1e-9), (unsigned long long)sampler.seed());
    return 0;
  }
}

ENGINE_COMMAND("generate", "generate text from a prompt", cmd_generate);
