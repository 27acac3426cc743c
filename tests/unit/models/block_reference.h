// A Llama block in double precision, for gradient checks: dense weights (already
// dequantized from whatever format the block under test stores), positions 0..n-1.
// Shared by tests/unit/models (dense formats) and tests/unit/train (SpQR).
#pragma once
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/dtype.h"
#include "models/llama.h"

namespace engine::testref {

using Vec = std::vector<double>;

// W [rows][cols] of a linear layer, dequantized row by row by the format's own
// reference code (not by the kernels under test).
inline Vec dequantized(const cpu::Linear& l, ThreadPool&) {
  const int64_t rows = l.rows(), cols = l.cols();
  std::vector<float> w((size_t)(rows * cols));
  for (int64_t r = 0; r < rows; r++) {
    if (l.spqr) l.spqr->dequantize_row(r, &w[r * cols]);
    else dequantize_row(l.dense.type, (const uint8_t*)l.dense.data + r * l.dense.row_bytes, &w[r * cols], cols);
  }
  return Vec(w.begin(), w.end());
}

struct RefBlock {
  LlamaHParams hp;
  Vec attn_norm, ffn_norm, wq, wk, wv, wo, wg, wu, wd, bq, bk, bv;
  Vec router;                   // mixture of experts: [n_expert][n_embd]
  std::vector<Vec> eg, eu, ed;  // per expert, as wg, wu, wd

  RefBlock(const LlamaHParams& h, const LlamaBlockWeights& w, ThreadPool& pool) : hp(h) {
    attn_norm.assign(w.attn_norm, w.attn_norm + hp.n_embd);
    ffn_norm.assign(w.ffn_norm, w.ffn_norm + hp.n_embd);
    wq = dequantized(w.wq, pool), wk = dequantized(w.wk, pool), wv = dequantized(w.wv, pool);
    wo = dequantized(w.wo, pool), wg = dequantized(w.w_gate, pool), wu = dequantized(w.w_up, pool);
    wd = dequantized(w.w_down, pool);
    if (hp.moe()) {
      router = dequantized(w.router, pool);
      for (int64_t e = 0; e < hp.n_expert; e++) {
        eg.push_back(dequantized(w.exp_gate[e], pool));
        eu.push_back(dequantized(w.exp_up[e], pool));
        ed.push_back(dequantized(w.exp_down[e], pool));
      }
    }
    if (w.bq) {
      bq.assign(w.bq, w.bq + hp.q_dim());
      bk.assign(w.bk, w.bk + hp.kv_dim());
      bv.assign(w.bv, w.bv + hp.kv_dim());
    }
  }

  static Vec lin(const Vec& W, const Vec& x, int64_t n, int64_t rows, int64_t cols, const Vec& b = {}) {
    Vec y((size_t)(n * rows));
    for (int64_t t = 0; t < n; t++)
      for (int64_t r = 0; r < rows; r++) {
        double s = b.empty() ? 0.0 : b[r];
        for (int64_t c = 0; c < cols; c++) s += W[r * cols + c] * x[t * cols + c];
        y[t * rows + r] = s;
      }
    return y;
  }
  Vec norm(const Vec& x, const Vec& w, int64_t n) const {
    const int64_t d = hp.n_embd;
    Vec y(x.size());
    for (int64_t t = 0; t < n; t++) {
      double ss = 0;
      for (int64_t i = 0; i < d; i++) ss += x[t * d + i] * x[t * d + i];
      double s = 1 / std::sqrt(ss / d + hp.rms_eps);
      for (int64_t i = 0; i < d; i++) y[t * d + i] = x[t * d + i] * s * w[i];
    }
    return y;
  }
  void rope(Vec& x, int64_t n, int64_t heads) const {
    const int64_t hd = hp.head_dim, nr = hp.n_rot;
    for (int64_t t = 0; t < n; t++)
      for (int64_t h = 0; h < heads; h++)
        for (int64_t i = 0; i < nr / 2; i++) {
          const bool adj = hp.rope_layout == cpu::RopeLayout::Adjacent;
          int64_t a = adj ? 2 * i : i, b = adj ? 2 * i + 1 : i + nr / 2;
          double th = t * std::pow((double)hp.rope_freq_base, -2.0 * i / nr);
          double* v = &x[(t * heads + h) * hd];
          double x0 = v[a], x1 = v[b];
          v[a] = x0 * std::cos(th) - x1 * std::sin(th);
          v[b] = x0 * std::sin(th) + x1 * std::cos(th);
        }
  }

  Vec forward(Vec x, int64_t n) const {
    const int64_t d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), hd = hp.head_dim;
    const int64_t H = hp.n_head, Hkv = hp.n_head_kv, group = H / Hkv;
    Vec h = norm(x, attn_norm, n);
    Vec q = lin(wq, h, n, qd, d, bq), k = lin(wk, h, n, kvd, d, bk), v = lin(wv, h, n, kvd, d, bv);
    rope(q, n, H);
    rope(k, n, Hkv);
    Vec att((size_t)(n * qd), 0.0);
    for (int64_t t = 0; t < n; t++)
      for (int64_t hh = 0; hh < H; hh++) {
        const int64_t kvh = hh / group;
        Vec s((size_t)(t + 1));
        double mx = -1e300, sum = 0;
        for (int64_t j = 0; j <= t; j++) {
          double dd = 0;
          for (int64_t i = 0; i < hd; i++) dd += q[(t * H + hh) * hd + i] * k[(j * Hkv + kvh) * hd + i];
          s[j] = dd / std::sqrt((double)hd);
          mx = std::max(mx, s[j]);
        }
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (int64_t j = 0; j <= t; j++)
          for (int64_t i = 0; i < hd; i++) att[(t * H + hh) * hd + i] += s[j] / sum * v[(j * Hkv + kvh) * hd + i];
      }
    Vec o = lin(wo, att, n, d, qd);
    for (size_t i = 0; i < x.size(); i++) x[i] += o[i];
    h = norm(x, ffn_norm, n);
    Vec dn = hp.moe() ? moe(h, n) : swiglu_ffn(wg, wu, wd, h, n);
    for (size_t i = 0; i < x.size(); i++) x[i] += dn[i];
    return x;
  }

  Vec swiglu_ffn(const Vec& Wg, const Vec& Wu, const Vec& Wd, const Vec& h, int64_t n) const {
    const int64_t d = hp.n_embd, ff = hp.n_ff;
    Vec g = lin(Wg, h, n, ff, d), u = lin(Wu, h, n, ff, d);
    for (size_t i = 0; i < g.size(); i++) g[i] = g[i] / (1 + std::exp(-g[i])) * u[i];
    return lin(Wd, g, n, d, ff);
  }

  // Softmax over the router's logits, the top k (ties: lower index), weights
  // renormalised over them, Σ weight · expert.
  Vec moe(const Vec& h, int64_t n) const {
    const int64_t d = hp.n_embd, E = hp.n_expert, k = hp.n_expert_used;
    Vec l = lin(router, h, n, E, d), out((size_t)(n * d), 0.0);
    for (int64_t t = 0; t < n; t++) {
      Vec p(l.begin() + t * E, l.begin() + (t + 1) * E);
      double mx = -1e300, sum = 0;
      for (double v : p) mx = std::max(mx, v);
      for (double& v : p) sum += (v = std::exp(v - mx));
      std::vector<int64_t> chosen;
      std::vector<bool> used((size_t)E, false);
      double total = 0;
      for (int64_t s = 0; s < k; s++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++)
          if (!used[e] && (best < 0 || p[e] > p[best])) best = e;
        used[best] = true, chosen.push_back(best), total += p[best] / sum;
      }
      Vec ht(h.begin() + t * d, h.begin() + (t + 1) * d);
      for (int64_t e : chosen) {
        Vec y = swiglu_ffn(eg[e], eu[e], ed[e], ht, 1);
        for (int64_t i = 0; i < d; i++) out[t * d + i] += p[e] / sum / total * y[i];
      }
    }
    return out;
  }
};

// Central differences of L(x) = Σ r ⊙ f(x), in double.
template <class F>
Vec numeric_grad(F&& f, Vec x, const Vec& r, double h = 1e-5) {
  Vec g(x.size());
  auto L = [&] {
    Vec y = f(x);
    double s = 0;
    for (size_t i = 0; i < y.size(); i++) s += r[i] * y[i];
    return s;
  };
  for (size_t i = 0; i < x.size(); i++) {
    double x0 = x[i];
    x[i] = x0 + h;
    double lp = L();
    x[i] = x0 - h;
    double lm = L();
    x[i] = x0;
    g[i] = (lp - lm) / (2 * h);
  }
  return g;
}

inline double rel_err(const std::vector<float>& a, const Vec& b) {
  double num = 0, den = 1e-12;
  for (size_t i = 0; i < b.size(); i++) {
    num = std::max(num, std::abs((double)a[i] - b[i]));
    den = std::max(den, std::abs(b[i]));
  }
  return num / den;
}

}  // namespace engine::testref
