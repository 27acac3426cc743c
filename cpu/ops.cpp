#include "cpu/ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace engine::cpu {

void rmsnorm(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; t++) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    // Accumulate the mean square in double: d can be large and the result feeds every later op.
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += (double)xr[i] * xr[i];
    float scale = (float)(1.0 / std::sqrt(ss / (double)d + (double)eps));
    for (int64_t i = 0; i < d; i++) yr[i] = xr[i] * scale * w[i];
  }
}

void rope(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos,
          float freq_base, RopeLayout layout) {
  const int64_t half = n_rot / 2;
  std::vector<float> cos_t(half), sin_t(half);
  for (int64_t t = 0; t < n; t++) {
    for (int64_t i = 0; i < half; i++) {
      double theta = (double)pos[t] * std::pow((double)freq_base, -2.0 * (double)i / (double)n_rot);
      cos_t[i] = (float)std::cos(theta);
      sin_t[i] = (float)std::sin(theta);
    }
    for (int64_t h = 0; h < n_heads; h++) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; i++) {
        int64_t a = layout == RopeLayout::Adjacent ? 2 * i : i;
        int64_t b = layout == RopeLayout::Adjacent ? 2 * i + 1 : i + half;
        float x0 = v[a], x1 = v[b];
        v[a] = x0 * cos_t[i] - x1 * sin_t[i];
        v[b] = x0 * sin_t[i] + x1 * cos_t[i];
      }
    }
  }
}

void attention(const float* q, const float* k, const float* v, float* out, int64_t n, int64_t pos0,
               int64_t n_head, int64_t n_head_kv, int64_t hd, ThreadPool& pool) {
  const int64_t group = n_head / n_head_kv;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int64_t kv_stride = n_head_kv * hd;
  pool.parallel_for(n * n_head, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> acc(hd);
    for (int64_t job = begin; job < end; job++) {
      const int64_t t = job / n_head, h = job % n_head, kvh = h / group;
      const float* qv = q + (t * n_head + h) * hd;
      const int64_t n_keys = pos0 + t + 1;  // causal: keys 0 .. pos0+t
      float m = -INFINITY, s = 0;
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j = 0; j < n_keys; j++) {
        const float* kr = k + j * kv_stride + kvh * hd;
        float dot = 0;
        for (int64_t i = 0; i < hd; i++) dot += qv[i] * kr[i];
        dot *= scale;
        const float* vr = v + j * kv_stride + kvh * hd;
        if (dot > m) {  // new maximum: rescale what was accumulated so far
          float c = std::exp(m - dot);
          s *= c;
          for (int64_t i = 0; i < hd; i++) acc[i] *= c;
          m = dot;
        }
        float p = std::exp(dot - m);
        s += p;
        for (int64_t i = 0; i < hd; i++) acc[i] += p * vr[i];
      }
      float* o = out + (t * n_head + h) * hd;
      for (int64_t i = 0; i < hd; i++) o[i] = acc[i] / s;
    }
  });
}

void swiglu(const float* g, const float* u, float* a, int64_t n) {
  for (int64_t i = 0; i < n; i++) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

}  // namespace engine::cpu
