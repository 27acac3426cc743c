// Token sampling. The chain runs in llama.cpp's default order:
// repetition penalty → top-k → top-p → min-p → temperature → draw.
// temperature <= 0 means greedy (argmax of the penalised logits).
#pragma once
#include <cstdint>
#include <deque>
#include <random>
#include <vector>

namespace engine {

struct SamplingParams {
  float temperature = 0.8f;
  int top_k = 40;            // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;    // how many recent tokens the penalty looks at
  uint64_t seed = 0xFFFFFFFFu;  // 0xFFFFFFFF: seed from the clock
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // Picks the next token from logits [n_vocab]; `logits` is not modified.
  int32_t sample(const float* logits, int64_t n_vocab);
  // Tells the sampler a token was emitted or fed (for the repetition penalty).
  void accept(int32_t token);
  uint64_t seed() const { return seed_; }

 private:
  SamplingParams p_;
  uint64_t seed_;
  std::mt19937 rng_;
  std::deque<int32_t> recent_;
  struct Cand {
    int32_t id;
    float logit;
  };
  std::vector<Cand> cand_;
};

}  // namespace engine
