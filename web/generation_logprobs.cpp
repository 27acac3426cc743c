#include "web/generation_logprobs.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace engine::web {

TokenLogprob token_logprob(const float* logits, int64_t n_vocab, int32_t chosen, int n_top) {
  float mx = *std::max_element(logits, logits + n_vocab);
  double sum = 0;
  for (int64_t i = 0; i < n_vocab; i++) sum += std::exp((double)logits[i] - mx);
  float log_z = mx + (float)std::log(sum);
  TokenLogprob r;
  r.token = chosen;
  r.logprob = logits[chosen] - log_z;
  int k = (int)std::min<int64_t>(n_top, n_vocab);
  if (k > 0) {
    std::vector<int32_t> idx(n_vocab);
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                      [&](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); });
    for (int i = 0; i < k; i++) r.top.push_back({idx[i], logits[idx[i]] - log_z});
  }
  return r;
}

}  // namespace engine::web
