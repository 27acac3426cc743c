#include "models/sampling.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace engine {

Sampler::Sampler(const SamplingParams& p) : p_(p) {
  seed_ = p.seed == 0xFFFFFFFFu ? (uint64_t)std::chrono::steady_clock::now().time_since_epoch().count() : p.seed;
  rng_.seed((std::mt19937::result_type)seed_);
}

void Sampler::accept(int32_t token) {
  if (p_.repeat_last_n <= 0) return;
  recent_.push_back(token);
  while ((int)recent_.size() > p_.repeat_last_n) recent_.pop_front();
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
  cand_.resize((size_t)n_vocab);
  for (int64_t i = 0; i < n_vocab; i++) cand_[i] = {(int32_t)i, logits[i]};

  // Repetition penalty (CTRL-style, as llama.cpp): each distinct recent token once;
  // positive logits are divided, negative ones multiplied.
  if (p_.repeat_penalty != 1.0f) {
    std::vector<int32_t> seen(recent_.begin(), recent_.end());
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    for (int32_t t : seen)
      if (t >= 0 && t < n_vocab) {
        float& l = cand_[t].logit;
        l = l > 0 ? l / p_.repeat_penalty : l * p_.repeat_penalty;
      }
  }

  if (p_.temperature <= 0) {
    auto best = std::max_element(cand_.begin(), cand_.end(), [](const Cand& a, const Cand& b) {
      return a.logit < b.logit;  // first maximum wins, as llama.cpp's greedy sampler
    });
    return best->id;
  }

  auto by_logit = [](const Cand& a, const Cand& b) { return a.logit > b.logit || (a.logit == b.logit && a.id < b.id); };
  size_t n = cand_.size();
  if (p_.top_k > 0 && (size_t)p_.top_k < n) {
    std::partial_sort(cand_.begin(), cand_.begin() + p_.top_k, cand_.end(), by_logit);
    n = (size_t)p_.top_k;
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  cand_.resize(n);

  // Softmax over what is left (at temperature 1, as llama.cpp applies top-p/min-p before temperature).
  auto softmax = [&](float temp, std::vector<double>& probs) {
    probs.resize(cand_.size());
    double mx = cand_[0].logit / temp, sum = 0;
    for (size_t i = 0; i < cand_.size(); i++) sum += probs[i] = std::exp(cand_[i].logit / temp - mx);
    for (double& q : probs) q /= sum;
  };
  std::vector<double> probs;
  if (p_.top_p < 1.0f) {
    softmax(1.0f, probs);
    double cum = 0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); i++) {
      cum += probs[i];
      if (cum >= p_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(std::max<size_t>(keep, 1));
  }
  if (p_.min_p > 0) {
    // Keep tokens whose probability is at least min_p times the top one's.
    float cut = cand_[0].logit + std::log(p_.min_p);
    size_t keep = 1;
    while (keep < cand_.size() && cand_[keep].logit >= cut) keep++;
    cand_.resize(keep);
  }
  softmax(p_.temperature, probs);
  std::discrete_distribution<size_t> dist(probs.begin(), probs.end());
  return cand_[dist(rng_)].id;
}

}  // namespace engine
