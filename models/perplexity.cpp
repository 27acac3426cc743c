#include "models/perplexity.h"

#include <algorithm>
#include <cmath>

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

PerplexityResult perplexity(const LlamaModel& model, const std::vector<int32_t>& tokens, int64_t n_ctx,
                            bool add_bos, int32_t bos, ThreadPool& pool, int64_t max_chunks,
                            const std::function<void(int64_t, int64_t, double)>& progress) {
  const int64_t n_vocab = model.hparams().n_vocab;
  if (n_ctx < 8) throw Error("context must be at least 8 tokens");
  if ((int64_t)tokens.size() < 2 * n_ctx)
    throw Error("the text has " + std::to_string(tokens.size()) + " tokens; a perplexity run needs at least " +
                std::to_string(2 * n_ctx) + " (2 x context)");
  PerplexityResult r;
  r.chunks = (int64_t)tokens.size() / n_ctx;
  if (max_chunks > 0) r.chunks = std::min(r.chunks, max_chunks);
  const int64_t first = n_ctx / 2;
  LocalRunner runner(model, n_ctx, pool);
  double nll = 0, nll2 = 0;
  for (int64_t c = 0; c < r.chunks; c++) {
    std::vector<int32_t> chunk(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (add_bos) chunk[0] = bos;
    runner.reset();
    std::vector<float> logits = runner.eval_all(chunk);
    for (int64_t j = first; j < n_ctx - 1; j++) {
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
  return r;
}

}  // namespace engine
