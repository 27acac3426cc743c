// Perplexity by llama.cpp's protocol (llama-perplexity): the tokens are cut into
// non-overlapping chunks of n_ctx; each chunk starts with BOS (replacing its
// first token, when the vocab adds BOS) and runs in a fresh context; only the
// second half of each chunk is scored.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "core/thread_pool.h"
#include "models/llama.h"

namespace engine {

struct PerplexityResult {
  double ppl = 0;
  double ppl_error = 0;  // llama.cpp's ± (standard error of the mean NLL, times PPL)
  int64_t chunks = 0;
  int64_t tokens_scored = 0;
  double kl_mean = -1;  // mean KL(reference ‖ model) of the next-token distributions; -1 without a reference
};

// `tokens` is the whole text tokenized with BOS. Throws Error when it is shorter
// than 2 × n_ctx. `progress(done, total, running_ppl)` is called after each chunk.
// With `reference` (the same model in higher precision), also the mean KL divergence
// of this model's next-token distributions from the reference's, on the scored positions.
PerplexityResult perplexity(const LlamaModel& model, const std::vector<int32_t>& tokens, int64_t n_ctx,
                            bool add_bos, int32_t bos, ThreadPool& pool, int64_t max_chunks = 0,
                            const std::function<void(int64_t, int64_t, double)>& progress = nullptr,
                            const LlamaModel* reference = nullptr);

// KL(p ‖ q) of the softmax distributions of two logit rows.
double kl_divergence(const float* logits_p, const float* logits_q, int64_t n_vocab);

// log p(tok) from raw logits, with the sum of exponentials in double.
double log_prob(const float* logits, int64_t n_vocab, int32_t tok);

}  // namespace engine
