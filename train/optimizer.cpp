#include "train/optimizer.h"

#include <algorithm>
#include <cmath>

namespace engine::train {

void adamw_step(float* p, const float* g, int64_t n, AdamWState& s, const AdamWConfig& c, float lr) {
  if ((int64_t)s.m.size() != n) s.m.assign((size_t)n, 0.0f), s.v.assign((size_t)n, 0.0f);
  s.t++;
  adamw_update(p, g, s.m.data(), s.v.data(), n, s.t, c, lr, c.weight_decay);
}

void adamw_update(float* p, const float* g, float* m, float* v, int64_t n, int64_t t, const AdamWConfig& c,
                  float lr, float weight_decay) {
  // Bias corrections in double: β2^t for t in the thousands is 1 − small.
  const double bc1 = 1.0 - std::pow((double)c.beta1, (double)t);
  const double bc2 = 1.0 - std::pow((double)c.beta2, (double)t);
  // The element loop in f32, as PyTorch's AdamW computes it: it vectorises, where a
  // double division and square root per parameter made the update a tenth of a
  // small model's training step.
  const float ib1 = (float)(1.0 / bc1), ib2 = (float)(1.0 / bc2), b1 = c.beta1, b2 = c.beta2, eps = c.eps;
  for (int64_t i = 0; i < n; i++) {
    const float mi = b1 * m[i] + (1.0f - b1) * g[i];
    const float vi = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
    m[i] = mi, v[i] = vi;
    p[i] -= lr * ((mi * ib1) / (std::sqrt(vi * ib2) + eps) + weight_decay * p[i]);
  }
}

float lr_schedule(int64_t step, int64_t total, int64_t warmup, float lr, float min_ratio) {
  if (warmup > 0 && step < warmup) return lr * (float)(step + 1) / (float)warmup;
  const int64_t decay = total - warmup;
  if (decay <= 1) return lr;
  const double progress = std::min(1.0, (double)(step - warmup) / (double)(decay - 1));
  const double cosine = 0.5 * (1.0 + std::cos(M_PI * progress));  // 1 → 0
  return (float)(lr * (min_ratio + (1.0 - min_ratio) * cosine));
}

float clip_grad_norm(float* g, int64_t n, float max_norm) {
  double ss = 0;
  for (int64_t i = 0; i < n; i++) ss += (double)g[i] * g[i];
  const double norm = std::sqrt(ss);
  if (max_norm > 0 && norm > max_norm) {
    const float k = (float)(max_norm / norm);
    for (int64_t i = 0; i < n; i++) g[i] *= k;
  }
  return (float)norm;
}

}  // namespace engine::train
