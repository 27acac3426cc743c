// Log-probabilities of a sampled token and its most likely alternatives, from
// the model's final logits (log-softmax before any sampler transform), as
// OpenAI's logprobs and llama-server's n_probs report them.
#pragma once
#include <cstdint>
#include <utility>
#include <vector>

namespace engine::web {

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0;
  std::vector<std::pair<int32_t, float>> top;  // most likely first
};

TokenLogprob token_logprob(const float* logits, int64_t n_vocab, int32_t chosen, int n_top);

}  // namespace engine::web
