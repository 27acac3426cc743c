#include "cpu/ops.h"

#include "cpu/convert.h"
#include "cpu/matmul.h"
#include "cpu/matmul_ggml.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace engine::cpu {

void rmsnorm(const float* x, const float* w, float* y, int64_t n, int64_t d, float eps) {
  for (int64_t t = 0; t < n; t++) {
    const float* xr = x + t * d;
    float* yr = y + t * d;
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += (double)(xr[i] * xr[i]);
    const float mean = (float)(ss / (double)d);
    const float scale = 1.0f / std::sqrt(mean + eps);
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

void rope_ggml(float* x, int64_t n, int64_t n_heads, int64_t head_dim, int64_t n_rot, const int32_t* pos,
               float freq_base, RopeLayout layout) {
  const int64_t half = n_rot / 2;
  std::vector<float> cos_t(half), sin_t(half);
  const float theta_scale = std::pow(freq_base, -2.0f / (float)n_rot);
  for (int64_t t = 0; t < n; t++) {
    float theta = (float)pos[t];
    for (int64_t i = 0; i < half; i++) {
      cos_t[i] = std::cos(theta);
      sin_t[i] = std::sin(theta);
      theta *= theta_scale;
    }
    for (int64_t h = 0; h < n_heads; h++) {
      float* v = x + (t * n_heads + h) * head_dim;
      for (int64_t i = 0; i < half; i++) {
        int64_t a = layout == RopeLayout::Adjacent ? 2 * i : i;
        int64_t b = layout == RopeLayout::Adjacent ? 2 * i + 1 : i + half;
        const float x0 = v[a], x1 = v[b];
        v[a] = std::fma(x0, cos_t[i], -(x1 * sin_t[i]));
        v[b] = std::fma(x0, sin_t[i], x1 * cos_t[i]);
      }
    }
  }
}

namespace {

// F32 cache: plain f32 arithmetic (dot products in order, Σ of the exponentials in f64).
void attention_f32(const float* q, const float* k, const float* v, float* out, int64_t n, int64_t pos0,
                   int64_t n_head, int64_t n_head_kv, int64_t hd, ThreadPool& pool) {
  const int64_t group = n_head / n_head_kv;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int64_t kv_stride = n_head_kv * hd;
  pool.parallel_for(n * n_head, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> scores(pos0 + n), acc(hd);
    for (int64_t job = begin; job < end; job++) {
      const int64_t t = job / n_head, h = job % n_head, kvh = h / group;
      const int64_t n_keys = pos0 + t + 1;  // causal: keys 0 .. pos0+t
      const float* qr = q + (t * n_head + h) * hd;
      // Scores s_j = (q · k_j) / sqrt(hd).
      float mx = -INFINITY;
      for (int64_t j = 0; j < n_keys; j++) {
        const float* kr = k + j * kv_stride + kvh * hd;
        float dot = 0;
        for (int64_t i = 0; i < hd; i++) dot += qr[i] * kr[i];
        scores[j] = dot * scale;
        mx = std::max(mx, scores[j]);
      }
      double sum = 0;
      for (int64_t j = 0; j < n_keys; j++) {
        scores[j] = std::exp(scores[j] - mx);
        sum += scores[j];
      }
      const float inv = (float)(1.0 / sum);
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t j = 0; j < n_keys; j++) {
        const float p = scores[j] * inv;
        const float* vr = v + j * kv_stride + kvh * hd;
        for (int64_t i = 0; i < hd; i++) acc[i] += p * vr[i];
      }
      std::copy(acc.begin(), acc.end(), out + (t * n_head + h) * hd);
    }
  });
}

// F16 cache: llama.cpp's attention (cpu/matmul_ggml.h), one (token, head) row at a time.
void attention_f16(const float* q, const uint16_t* k, const uint16_t* v, float* out, int64_t n, int64_t pos0,
                   int64_t n_head, int64_t n_head_kv, int64_t hd, ThreadPool& pool) {
  const ggml::Kernels& gk = ggml::kernels();
  const int64_t group = n_head / n_head_kv;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int64_t kv_stride = n_head_kv * hd;
  pool.parallel_for(n * n_head, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> qr(hd), scratch((size_t)ggml::scratch_floats(pos0 + n, hd));
    for (int64_t job = begin; job < end; job++) {
      const int64_t t = job / n_head, h = job % n_head, kvh = h / group;
      round_to_f16_row(q + (t * n_head + h) * hd, qr.data(), hd);
      gk.attend_f16(qr.data(), k + kvh * hd, v + kvh * hd, kv_stride, pos0 + t + 1, hd, scale, n >= 2,
                    out + (t * n_head + h) * hd, scratch.data());
    }
  });
}

}  // namespace

void attention(const float* q, const void* k, const void* v, DType kv_type, float* out, int64_t n, int64_t pos0,
               int64_t n_head, int64_t n_head_kv, int64_t hd, ThreadPool& pool) {
  if (kv_type == DType::F16)
    attention_f16(q, (const uint16_t*)k, (const uint16_t*)v, out, n, pos0, n_head, n_head_kv, hd, pool);
  else
    attention_f32(q, (const float*)k, (const float*)v, out, n, pos0, n_head, n_head_kv, hd, pool);
}

void swiglu(const float* g, const float* u, float* a, int64_t n) {
  for (int64_t i = 0; i < n; i++) a[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void swiglu_ggml(const float* g, const float* u, float* a, int64_t n, int64_t n_ff) {
  const ggml::Kernels& gk = ggml::kernels();
  for (int64_t t = 0; t < n; t++) gk.swiglu_row(g + t * n_ff, u + t * n_ff, a + t * n_ff, n_ff);
}

void add_inplace(float* x, const float* y, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

// ---- backward ---------------------------------------------------------------------

void embedding_backward(const int32_t* tokens, const float* dh, float* dtable, int64_t n, int64_t d) {
  for (int64_t t = 0; t < n; t++) add_inplace(dtable + (int64_t)tokens[t] * d, dh + t * d, d);
}

void rmsnorm_backward(const float* dy, const float* x, const float* w, float* dx, float* dw, int64_t n, int64_t d,
                      float eps) {
  for (int64_t t = 0; t < n; t++) {
    const float* xr = x + t * d;
    const float* dyr = dy + t * d;
    // s exactly as the forward computes it, so the gradient is of the function we ran.
    double ss = 0;
    for (int64_t i = 0; i < d; i++) ss += (double)(xr[i] * xr[i]);
    const float mean = (float)(ss / (double)d);
    const double s = 1.0 / std::sqrt((double)(mean + eps));
    if (dx) {
      double dot = 0;  // Σ w·dy·x
      for (int64_t i = 0; i < d; i++) dot += (double)w[i] * dyr[i] * xr[i];
      const double c = s * s * s * dot / (double)d;
      float* dxr = dx + t * d;
      for (int64_t i = 0; i < d; i++) dxr[i] += (float)(s * w[i] * dyr[i] - c * xr[i]);
    }
    if (dw)
      for (int64_t i = 0; i < d; i++) dw[i] += (float)(dyr[i] * xr[i] * s);
  }
}

void rope_backward(float* dx, int64_t n, int64_t n_head, int64_t head_dim, int64_t n_rot, const int32_t* pos,
                   float freq_base, RopeLayout layout) {
  // R(θ)ᵀ = R(−θ): rotating the gradient by the negated positions is the transpose.
  std::vector<int32_t> neg((size_t)n);
  for (int64_t t = 0; t < n; t++) neg[t] = -pos[t];
  rope(dx, n, n_head, head_dim, n_rot, neg.data(), freq_base, layout);
}

void attention_backward(const float* dout, const float* q, const float* k, const float* v, float* dq, float* dk,
                        float* dv, int64_t n, int64_t pos0, int64_t n_head, int64_t n_head_kv, int64_t hd,
                        ThreadPool& pool) {
  const int64_t group = n_head / n_head_kv;
  const float scale = 1.0f / std::sqrt((float)hd);
  const int64_t kv_stride = n_head_kv * hd;
  pool.parallel_for(n_head_kv, 1, [&](int64_t begin, int64_t end) {
    // One row of probabilities and one of dP per (token, head): O(n_keys), not O(n²).
    std::vector<float> p(pos0 + n), dp(pos0 + n);
    for (int64_t kvh = begin; kvh < end; kvh++)
      for (int64_t h = kvh * group; h < (kvh + 1) * group; h++)
        for (int64_t t = 0; t < n; t++) {
          const float* qr = q + (t * n_head + h) * hd;
          const float* dor = dout + (t * n_head + h) * hd;
          float* dqr = dq + (t * n_head + h) * hd;
          const int64_t n_keys = pos0 + t + 1;
          // Recompute the softmax exactly as the f32 forward does.
          float mx = -INFINITY;
          for (int64_t j = 0; j < n_keys; j++) {
            const float* kr = k + j * kv_stride + kvh * hd;
            float dot = 0;
            for (int64_t i = 0; i < hd; i++) dot += qr[i] * kr[i];
            p[j] = dot * scale;
            mx = std::max(mx, p[j]);
          }
          double sum = 0;
          for (int64_t j = 0; j < n_keys; j++) {
            p[j] = std::exp(p[j] - mx);
            sum += p[j];
          }
          const float inv = (float)(1.0 / sum);
          double pdp = 0;  // Σ_k P_k dP_k
          for (int64_t j = 0; j < n_keys; j++) {
            p[j] *= inv;
            const float* vr = v + j * kv_stride + kvh * hd;
            float* dvr = dv + j * kv_stride + kvh * hd;
            float s = 0;
            for (int64_t i = 0; i < hd; i++) {
              s += dor[i] * vr[i];
              dvr[i] += p[j] * dor[i];
            }
            dp[j] = s;
            pdp += (double)p[j] * s;
          }
          for (int64_t j = 0; j < n_keys; j++) {
            const float ds = p[j] * (dp[j] - (float)pdp) * scale;
            const float* kr = k + j * kv_stride + kvh * hd;
            float* dkr = dk + j * kv_stride + kvh * hd;
            for (int64_t i = 0; i < hd; i++) {
              dqr[i] += ds * kr[i];
              dkr[i] += ds * qr[i];
            }
          }
        }
  });
}

void linear_backward_weight(const float* dy, const float* x, float* dw, int64_t n, int64_t rows, int64_t cols,
                            float scale, ThreadPool& pool) {
  // dW = scale·dYᵀ·X is a matrix product over the tokens. From 16 tokens it runs
  // on the register-blocked matmul kernels (AVX2/AVX-512): with Xᵀ [cols][n] as the
  // "weights" and scale·dYᵀ [rows][n] as the "tokens", matmul_add gives
  // dW[r][c] += Σ_t scale·dy[t][r]·x[t][c]. The transposes cost O(n·(rows+cols)),
  // against O(n·rows·cols) for the product. Below 16 tokens, a plain loop.
  if (n >= 16) {
    std::vector<float> xt((size_t)(cols * n)), dyt((size_t)(rows * n));
    for (int64_t t = 0; t < n; t++) {
      for (int64_t c = 0; c < cols; c++) xt[c * n + t] = x[t * cols + c];
      for (int64_t r = 0; r < rows; r++) dyt[r * n + t] = scale * dy[t * rows + r];
    }
    matmul_add(WeightView{DType::F32, cols, n, xt.data(), (size_t)n * sizeof(float)}, dyt.data(), rows, dw, pool);
    return;
  }
  pool.parallel_for(rows, 8, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; r++) {
      float* dwr = dw + r * cols;
      for (int64_t t = 0; t < n; t++) {
        const float g = scale * dy[t * rows + r];
        if (g == 0.0f) continue;
        const float* xr = x + t * cols;
        for (int64_t c = 0; c < cols; c++) dwr[c] += g * xr[c];
      }
    }
  });
}

void swiglu_backward(const float* da, const float* g, const float* u, float* dg, float* du, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    const float sig = 1.0f / (1.0f + std::exp(-g[i]));
    const float silu = g[i] * sig;
    if (dg) dg[i] += da[i] * u[i] * sig * (1.0f + g[i] * (1.0f - sig));
    if (du) du[i] += da[i] * silu;
  }
}

}  // namespace engine::cpu
