#include "models/perplexity.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "core/error.h"
#include "models/loaded_model.h"

namespace engine {

double log_prob(const float* logits, int64_t n_vocab, int32_t tok) {
  float mx = logits[0];
  for (int64_t i = 1; i < n_vocab; i++) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; i++) sum += std::exp((double)(logits[i] - mx));
  return (double)(logits[tok] - mx) - std::log(sum);
}

double kl_divergence(const float* lp, const float* lq, int64_t n_vocab) {
  auto log_norm = [&](const float* l) {
    float mx = l[0];
    for (int64_t i = 1; i < n_vocab; i++) mx = std::max(mx, l[i]);
    double s = 0;
    for (int64_t i = 0; i < n_vocab; i++) s += std::exp((double)(l[i] - mx));
    return (double)mx + std::log(s);
  };
  const double zp = log_norm(lp), zq = log_norm(lq);
  double kl = 0;
  for (int64_t i = 0; i < n_vocab; i++) {
    const double a = lp[i] - zp, b = lq[i] - zq;
    kl += std::exp(a) * (a - b);
  }
  return std::max(kl, 0.0);
}

PerplexityResult perplexity(const LlamaModel& model, const std::vector<int32_t>& tokens, int64_t n_ctx,
                            bool add_bos, int32_t bos, ThreadPool& pool, int64_t max_chunks,
                            const std::function<void(int64_t, int64_t, double)>& progress,
                            const LlamaModel* reference) {
  const int64_t n_vocab = model.hparams().n_vocab;
  if (n_ctx < 8) throw Error("context must be at least 8 tokens");
  if ((int64_t)tokens.size() < 2 * n_ctx)
    throw Error("the text has " + std::to_string(tokens.size()) + " tokens; a perplexity run needs at least " +
                std::to_string(2 * n_ctx) + " (2 x context)");
  PerplexityResult r;
  r.chunks = (int64_t)tokens.size() / n_ctx;
  if (max_chunks > 0) r.chunks = std::min(r.chunks, max_chunks);
  const int64_t first = n_ctx / 2;
  if (reference && reference->hparams().n_vocab != n_vocab) throw Error("the reference model has another vocabulary");
  LocalRunner runner(model, n_ctx, pool);
  std::unique_ptr<LocalRunner> ref_runner;
  if (reference) ref_runner = std::make_unique<LocalRunner>(*reference, n_ctx, pool);
  double nll = 0, nll2 = 0, kl = 0;
  for (int64_t c = 0; c < r.chunks; c++) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (add_bos) chunk[0] = bos;
    runner.reset();
    std::vector<float> logits = runner.eval_all(chunk), ref_logits;
    if (ref_runner) {
      ref_runner->reset();
      ref_logits = ref_runner->eval_all(chunk);
    }
    for (int64_t j = first; j < n_ctx - 1; j++) {
      if (ref_runner) kl += kl_divergence(ref_logits.data() + j * n_vocab, logits.data() + j * n_vocab, n_vocab);
      // Row j predicts the token at j+1 of the original text.
      double lp = log_prob(logits.data() + j * n_vocab, n_vocab, tokens[c * n_ctx + j + 1]);
      nll -= lp;
      nll2 += lp * lp;
      r.tokens_scored++;
    }
    if (progress) progress(c + 1, r.chunks, std::exp(nll / r.tokens_scored));
  }
  double mean = nll / r.tokens_scored, var = nll2 / r.tokens_scored - mean * mean;
  r.ppl = std::exp(mean);
  r.ppl_error = var > 0 && r.tokens_scored > 1 ? r.ppl * std::sqrt(var / (r.tokens_scored - 1)) : 0;
  if (reference) r.kl_mean = kl / (double)r.tokens_scored;
  return r;
}

}  // namespace engine
