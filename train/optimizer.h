// AdamW (decoupled weight decay, Loshchilov & Hutter), linear warm-up + cosine
// learning-rate schedule, and global gradient-norm clipping — as llm.c and
// PyTorch define them, so runs are comparable.
#pragma once
#include <cstdint>
#include <vector>

namespace engine::train {

struct AdamWConfig {
  float beta1 = 0.9f;
  float beta2 = 0.999f;
  float eps = 1e-8f;
  float weight_decay = 0.0f;
};

// First and second moments of one parameter tensor, and the step count (shared
// by every tensor of a model; kept here so a saved state resumes exactly).
struct AdamWState {
  std::vector<float> m, v;  // same size as the parameters
  int64_t t = 0;            // steps taken
};

// One update of p [n] with gradient g [n] at learning rate lr:
//   m = β1·m + (1−β1)·g;  v = β2·v + (1−β2)·g²
//   p -= lr·( m̂/(√v̂ + ε) + wd·p ),  m̂ = m/(1−β1^t), v̂ = v/(1−β2^t)
// Increments s.t first; sizes s.m, s.v on first use.
void adamw_step(float* p, const float* g, int64_t n, AdamWState& s, const AdamWConfig& c, float lr);

// The same update on a range of a larger parameter vector, with its moments m, v [n]
// owned by the caller and `t` the step being taken (1-based, already incremented):
// full-parameter training decays matrices but not norms, so one optimizer step calls
// this once per tensor with that tensor's weight_decay (c.weight_decay is ignored).
// Elementwise, so splitting a range across threads gives the same bits.
void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, int64_t t, const AdamWConfig& c,
                  float lr, float weight_decay);

// Learning rate at `step` (0-based) of `total`: linear warm-up from lr/warmup to lr
// over `warmup` steps, then cosine decay to lr·min_ratio at the last step.
float lr_schedule(int64_t step, int64_t total, int64_t warmup, float lr, float min_ratio);

// Scales g [n] so that its L2 norm is at most max_norm (no-op when max_norm <= 0).
// Returns the norm before clipping (the number worth logging).
float clip_grad_norm(float* g, int64_t n, float max_norm);

}  // namespace engine::train
