#include "models/llama_moe.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace engine {

MoeRouting moe_route(const LlamaHParams& hp, const cpu::Linear& router, const float* h, int64_t n, ThreadPool& pool) {
  const int64_t E = hp.n_expert, k = hp.n_expert_used;
  MoeRouting r;
  r.n = n, r.k = k;
  r.probs.resize((size_t)(n * E));
  r.expert.resize((size_t)(n * k));
  r.weight.resize((size_t)(n * k));
  r.rows_of.assign((size_t)E, {});
  cpu::linear(router, h, n, r.probs.data(), pool);  // logits, made probabilities in place
  std::vector<int32_t> order((size_t)E);
  for (int64_t t = 0; t < n; t++) {
    float* p = r.probs.data() + t * E;
    const float mx = *std::max_element(p, p + E);
    double sum = 0;
    for (int64_t e = 0; e < E; e++) sum += (p[e] = std::exp(p[e] - mx));
    for (int64_t e = 0; e < E; e++) p[e] = (float)(p[e] / sum);
    for (int64_t e = 0; e < E; e++) order[e] = (int32_t)e;
    // NaN (a broken model) ranks last, so the order stays a strict weak one.
    auto key = [&](int32_t e) { return std::isnan(p[e]) ? -INFINITY : p[e]; };
    std::partial_sort(order.begin(), order.begin() + k, order.end(),
                      [&](int32_t a, int32_t b) { return key(a) > key(b) || (key(a) == key(b) && a < b); });
    float chosen = 0;
    for (int64_t s = 0; s < k; s++) chosen += p[order[s]];
    for (int64_t s = 0; s < k; s++) {
      r.expert[t * k + s] = order[s];
      r.weight[t * k + s] = p[order[s]] / chosen;
      r.rows_of[order[s]].push_back(t * k + s);
    }
  }
  return r;
}

namespace {

// Runs every expert on the tokens routed to it: y [n·k][n_embd] gets Down·(silu(g)·u)
// of slot t·k+s; g, u (when given) keep that slot's gate and up projections.
void run_experts(const LlamaHParams& hp, const LlamaBlockWeights& w, const float* h, const MoeRouting& r,
                 bool ggml_silu, float* y, float* g_keep, float* u_keep, ThreadPool& pool, const BlockTapFn& tap) {
  const int64_t d = hp.n_embd, ff = hp.n_ff;
  std::vector<float> x, g, u, out;
  for (int64_t e = 0; e < hp.n_expert; e++) {
    const std::vector<int64_t>& rows = r.rows_of[e];
    const int64_t m = (int64_t)rows.size();
    if (m == 0) continue;
    x.resize((size_t)(m * d));
    g.resize((size_t)(m * ff));
    u.resize((size_t)(m * ff));
    out.resize((size_t)(m * d));
    for (int64_t i = 0; i < m; i++) std::copy_n(h + rows[i] / r.k * d, d, x.data() + i * d);
    if (tap) tap(BlockTap::FfnIn, e, x.data(), m, d);
    cpu::linear_same_input({{&w.exp_gate[e], g.data()}, {&w.exp_up[e], u.data()}}, x.data(), m, pool);
    for (int64_t i = 0; i < m; i++) {
      if (g_keep) std::copy_n(g.data() + i * ff, ff, g_keep + rows[i] * ff);
      if (u_keep) std::copy_n(u.data() + i * ff, ff, u_keep + rows[i] * ff);
    }
    if (ggml_silu) cpu::swiglu_ggml(g.data(), u.data(), g.data(), m, ff);
    else cpu::swiglu(g.data(), u.data(), g.data(), m * ff);
    if (tap) tap(BlockTap::FfnAct, e, g.data(), m, ff);
    cpu::linear(w.exp_down[e], g.data(), m, out.data(), pool);
    for (int64_t i = 0; i < m; i++) std::copy_n(out.data() + i * d, d, y + rows[i] * d);
  }
}

// out[t] = w_0·y_0 + w_1·y_1 + ... in slot order, as llama.cpp adds its expert views.
void combine(const MoeRouting& r, const float* y, int64_t d, float* out) {
  for (int64_t t = 0; t < r.n; t++) {
    float* o = out + t * d;
    for (int64_t s = 0; s < r.k; s++) {
      const float wt = r.weight[t * r.k + s];
      const float* ys = y + (t * r.k + s) * d;
      if (s == 0) for (int64_t i = 0; i < d; i++) o[i] = ys[i] * wt;
      else for (int64_t i = 0; i < d; i++) o[i] += ys[i] * wt;
    }
  }
}

void check_weights(const LlamaHParams& hp, const LlamaBlockWeights& w) {
  if ((int64_t)w.exp_gate.size() != hp.n_expert || (int64_t)w.exp_up.size() != hp.n_expert ||
      (int64_t)w.exp_down.size() != hp.n_expert)
    throw Error("mixture-of-experts block has " + std::to_string(w.exp_gate.size()) + " experts, the model " +
                std::to_string(hp.n_expert));
}

}  // namespace

void moe_ffn_forward(const LlamaHParams& hp, const LlamaBlockWeights& w, const float* h, int64_t n, float* out,
                     ThreadPool& pool, const BlockTapFn& tap) {
  check_weights(hp, w);
  const MoeRouting r = moe_route(hp, w.router, h, n, pool);
  std::vector<float> y((size_t)(n * r.k * hp.n_embd));
  run_experts(hp, w, h, r, true, y.data(), nullptr, nullptr, pool, tap);
  combine(r, y.data(), hp.n_embd, out);
}

void moe_ffn_forward_train(const LlamaHParams& hp, const LlamaBlockWeights& w, const float* h, int64_t n, float* out,
                           ThreadPool& pool, MoeActs* acts) {
  check_weights(hp, w);
  MoeActs local;
  MoeActs& A = acts ? *acts : local;
  A.r = moe_route(hp, w.router, h, n, pool);
  const int64_t slots = n * A.r.k;
  A.g.resize((size_t)(slots * hp.n_ff));
  A.u.resize((size_t)(slots * hp.n_ff));
  A.y.resize((size_t)(slots * hp.n_embd));
  run_experts(hp, w, h, A.r, false, A.y.data(), A.g.data(), A.u.data(), pool, nullptr);
  combine(A.r, A.y.data(), hp.n_embd, out);
}

// out = Σ_s w_s·y_s:  dy_s = w_s·dout,  dw_s = dout·y_s.
// w_s = p_s / P (P = Σ_chosen p):  dp_s = (dw_s − Σ_j dw_j·w_j) / P.
// p = softmax(l):  dl_e = p_e·(dp_e − Σ_j p_j·dp_j), dp = 0 off the chosen experts.
void moe_ffn_backward(const LlamaHParams& hp, const LlamaBlockWeights& w, const float* h, const MoeActs& A,
                      const float* dout, float* dh, ThreadPool& pool, const MoeGrads* grads) {
  const MoeRouting& r = A.r;
  const int64_t n = r.n, k = r.k, d = hp.n_embd, ff = hp.n_ff, E = hp.n_expert;
  std::fill(dh, dh + n * d, 0.0f);

  // Routing.
  std::vector<float> dlogits((size_t)(n * E), 0.0f);
  for (int64_t t = 0; t < n; t++) {
    const float* p = r.probs.data() + t * E;
    double P = 0, dot = 0;
    std::vector<double> dwt((size_t)k);
    for (int64_t s = 0; s < k; s++) {
      const float* ys = A.y.data() + (t * k + s) * d;
      double acc = 0;
      for (int64_t i = 0; i < d; i++) acc += (double)dout[t * d + i] * ys[i];
      dwt[s] = acc;
      dot += acc * r.weight[t * k + s];
      P += p[r.expert[t * k + s]];
    }
    double pdp = 0;
    std::vector<double> dp((size_t)k);
    for (int64_t s = 0; s < k; s++) {
      dp[s] = (dwt[s] - dot) / P;
      pdp += p[r.expert[t * k + s]] * dp[s];
    }
    float* dl = dlogits.data() + t * E;
    for (int64_t e = 0; e < E; e++) dl[e] = (float)(-p[e] * pdp);
    for (int64_t s = 0; s < k; s++) dl[r.expert[t * k + s]] += (float)(p[r.expert[t * k + s]] * dp[s]);
  }
  cpu::linear_backward_input(w.router, dlogits.data(), n, dh, pool);
  if (grads && grads->d_router) cpu::linear_backward_weight(dlogits.data(), h, grads->d_router, n, E, d, 1.0f, pool);

  // Experts, each on its own tokens.
  auto want = [](const std::vector<float*>& v, int64_t e) { return v.empty() ? nullptr : v[e]; };
  std::vector<float> x, dy, a, da, dg, du, dx, scratch;
  for (int64_t e = 0; e < E; e++) {
    const std::vector<int64_t>& rows = r.rows_of[e];
    const int64_t m = (int64_t)rows.size();
    if (m == 0) continue;
    x.resize((size_t)(m * d));
    dy.resize((size_t)(m * d));
    a.resize((size_t)(m * ff));
    da.resize((size_t)(m * ff));
    dg.assign((size_t)(m * ff), 0.0f);
    du.assign((size_t)(m * ff), 0.0f);
    dx.resize((size_t)(m * d));
    const float* gs = A.g.data();
    const float* us = A.u.data();
    std::vector<float> ge((size_t)(m * ff)), ue((size_t)(m * ff));
    for (int64_t i = 0; i < m; i++) {
      const int64_t row = rows[i], t = row / k;
      std::copy_n(h + t * d, d, x.data() + i * d);
      const float wt = r.weight[row];
      for (int64_t j = 0; j < d; j++) dy[i * d + j] = wt * dout[t * d + j];
      std::copy_n(gs + row * ff, ff, ge.data() + i * ff);
      std::copy_n(us + row * ff, ff, ue.data() + i * ff);
    }
    cpu::linear_backward_input(w.exp_down[e], dy.data(), m, da.data(), pool);
    if (float* dw = grads ? want(grads->d_down, e) : nullptr) {
      cpu::swiglu(ge.data(), ue.data(), a.data(), m * ff);
      cpu::linear_backward_weight(dy.data(), a.data(), dw, m, d, ff, 1.0f, pool);
    }
    cpu::swiglu_backward(da.data(), ge.data(), ue.data(), dg.data(), du.data(), m * ff);
    cpu::linear_backward_input(w.exp_gate[e], dg.data(), m, dx.data(), pool);
    scratch.resize((size_t)(m * d));
    cpu::linear_backward_input(w.exp_up[e], du.data(), m, scratch.data(), pool);
    cpu::add_inplace(dx.data(), scratch.data(), m * d);
    if (float* dw = grads ? want(grads->d_gate, e) : nullptr)
      cpu::linear_backward_weight(dg.data(), x.data(), dw, m, ff, d, 1.0f, pool);
    if (float* dw = grads ? want(grads->d_up, e) : nullptr)
      cpu::linear_backward_weight(du.data(), x.data(), dw, m, ff, d, 1.0f, pool);
    for (int64_t i = 0; i < m; i++) cpu::add_inplace(dh + rows[i] / k * d, dx.data() + i * d, d);
  }
}

}  // namespace engine
