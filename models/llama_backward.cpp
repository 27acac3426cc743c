#include "models/llama_backward.h"

#include <algorithm>

#include "core/error.h"

namespace engine {

namespace {

void add_bias(float* x, const float* b, int64_t n, int64_t d) {
  if (!b) return;
  for (int64_t t = 0; t < n; t++) cpu::add_inplace(x + t * d, b, d);
}

std::vector<int32_t> positions(int64_t n) {
  std::vector<int32_t> pos((size_t)n);
  for (int64_t t = 0; t < n; t++) pos[t] = (int32_t)t;
  return pos;
}

// dst += dY·W (linear_backward_input writes, so go through a scratch buffer).
void linear_backward_add(const cpu::Linear& w, const float* dy, int64_t n, float* dst, std::vector<float>& scratch,
                         ThreadPool& pool) {
  scratch.resize((size_t)(n * w.cols()));
  cpu::linear_backward_input(w, dy, n, scratch.data(), pool);
  cpu::add_inplace(dst, scratch.data(), n * w.cols());
}

}  // namespace

// The same block as llama_block_forward, with f32 keys and values at positions 0..n-1:
//   h1 = norm(x0)·attn_norm;  q,k,v = Wq,Wk,Wv·h1 (+b);  rope(q), rope(k)
//   x1 = x0 + Wo·attn(q, k, v)
//   h2 = norm(x1)·ffn_norm;   g, u = Wgate·h2, Wup·h2
//   x2 = x1 + Wdown·(silu(g)·u)
void llama_block_forward_train(const LlamaHParams& hp, const LlamaBlockWeights& w, float* x, int64_t n,
                               ThreadPool& pool, LlamaBlockActs* acts) {
  const int64_t d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.n_ff;
  LlamaBlockActs local;
  LlamaBlockActs& A = acts ? *acts : local;
  A.n = n;
  A.x0.assign(x, x + n * d);
  A.q.resize((size_t)(n * qd));
  A.k.resize((size_t)(n * kvd));
  A.v.resize((size_t)(n * kvd));
  A.att.resize((size_t)(n * qd));
  A.g.resize((size_t)(n * ff));
  A.u.resize((size_t)(n * ff));
  const std::vector<int32_t> pos = positions(n);
  std::vector<float> h((size_t)(n * d)), tmp((size_t)(n * std::max(d, ff)));

  cpu::rmsnorm(x, w.attn_norm, h.data(), n, d, hp.rms_eps);
  cpu::linear(w.wq, h.data(), n, A.q.data(), pool);
  cpu::linear(w.wk, h.data(), n, A.k.data(), pool);
  cpu::linear(w.wv, h.data(), n, A.v.data(), pool);
  add_bias(A.q.data(), w.bq, n, qd);
  add_bias(A.k.data(), w.bk, n, kvd);
  add_bias(A.v.data(), w.bv, n, kvd);
  cpu::rope(A.q.data(), n, hp.n_head, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base, hp.rope_layout);
  cpu::rope(A.k.data(), n, hp.n_head_kv, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base, hp.rope_layout);
  cpu::attention(A.q.data(), A.k.data(), A.v.data(), DType::F32, A.att.data(), n, 0, hp.n_head, hp.n_head_kv,
                 hp.head_dim, pool);
  cpu::linear(w.wo, A.att.data(), n, tmp.data(), pool);
  cpu::add_inplace(x, tmp.data(), n * d);
  A.x1.assign(x, x + n * d);

  cpu::rmsnorm(x, w.ffn_norm, h.data(), n, d, hp.rms_eps);
  cpu::linear(w.w_gate, h.data(), n, A.g.data(), pool);
  cpu::linear(w.w_up, h.data(), n, A.u.data(), pool);
  std::vector<float> a((size_t)(n * ff));
  cpu::swiglu(A.g.data(), A.u.data(), a.data(), n * ff);
  cpu::linear(w.w_down, a.data(), n, tmp.data(), pool);
  cpu::add_inplace(x, tmp.data(), n * d);
}

// The forward, read bottom-up. dx holds dx2 on entry; each residual add passes the
// gradient through unchanged, so the branches' gradients are accumulated into dx.
void llama_block_backward(const LlamaHParams& hp, const LlamaBlockWeights& w, const LlamaBlockActs& A, float* dx,
                          ThreadPool& pool, LlamaBlockGrads* grads) {
  const int64_t n = A.n, d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.n_ff;
  const std::vector<int32_t> pos = positions(n);
  std::vector<float> scratch;

  // FFN half: x2 = x1 + Wdown·(silu(g)·u).
  std::vector<float> da((size_t)(n * ff)), dg((size_t)(n * ff), 0.0f), du((size_t)(n * ff), 0.0f);
  cpu::linear_backward_input(w.w_down, dx, n, da.data(), pool);                   // da  [n][ff]
  cpu::swiglu_backward(da.data(), A.g.data(), A.u.data(), dg.data(), du.data(), n * ff);
  std::vector<float> dh((size_t)(n * d));
  cpu::linear_backward_input(w.w_gate, dg.data(), n, dh.data(), pool);            // dh2 [n][d]
  linear_backward_add(w.w_up, du.data(), n, dh.data(), scratch, pool);
  cpu::rmsnorm_backward(dh.data(), A.x1.data(), w.ffn_norm, dx, grads ? grads->ffn_norm.data() : nullptr, n, d,
                        hp.rms_eps);                                               // dx = dx1

  // Attention half: x1 = x0 + Wo·attn(rope(Wq·h1), rope(Wk·h1), Wv·h1).
  std::vector<float> datt((size_t)(n * qd));
  cpu::linear_backward_input(w.wo, dx, n, datt.data(), pool);                     // datt [n][qd]
  std::vector<float> dq((size_t)(n * qd), 0.0f), dk((size_t)(n * kvd), 0.0f), dv((size_t)(n * kvd), 0.0f);
  cpu::attention_backward(datt.data(), A.q.data(), A.k.data(), A.v.data(), dq.data(), dk.data(), dv.data(), n, 0,
                          hp.n_head, hp.n_head_kv, hp.head_dim, pool);
  cpu::rope_backward(dq.data(), n, hp.n_head, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base, hp.rope_layout);
  cpu::rope_backward(dk.data(), n, hp.n_head_kv, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base,
                     hp.rope_layout);
  cpu::linear_backward_input(w.wq, dq.data(), n, dh.data(), pool);                // dh1 [n][d]
  linear_backward_add(w.wk, dk.data(), n, dh.data(), scratch, pool);
  linear_backward_add(w.wv, dv.data(), n, dh.data(), scratch, pool);
  cpu::rmsnorm_backward(dh.data(), A.x0.data(), w.attn_norm, dx, grads ? grads->attn_norm.data() : nullptr, n, d,
                        hp.rms_eps);                                               // dx = dx0
}

void llama_span_forward_train(const LlamaModel& m, int64_t a, int64_t b, float* x, int64_t n, ThreadPool& pool,
                              std::vector<float>* checkpoints, const DeepPrompts* deep) {
  if (a < m.first_block() || b > m.last_block() || a > b) throw Error("span outside the loaded blocks");
  const int64_t d = m.hparams().n_embd;
  if (deep && deep->prompts && deep->n_prefix > n) throw Error("deep prompts are longer than the sequence");
  if (checkpoints) checkpoints->resize((size_t)((b - a) * n * d));
  for (int64_t blk = a; blk < b; blk++) {
    if (deep && deep->prompts) cpu::add_inplace(x, deep->prompts + (blk - a) * deep->n_prefix * d, deep->n_prefix * d);
    if (checkpoints) std::copy(x, x + n * d, checkpoints->data() + (blk - a) * n * d);
    llama_block_forward_train(m.hparams(), m.block(blk), x, n, pool);
  }
}

void llama_span_backward(const LlamaModel& m, int64_t a, int64_t b, const std::vector<float>& checkpoints, float* dx,
                         int64_t n, ThreadPool& pool, std::vector<LlamaBlockGrads>* grads, const DeepPrompts* deep) {
  const LlamaHParams& hp = m.hparams();
  const int64_t d = hp.n_embd;
  if ((int64_t)checkpoints.size() != (b - a) * n * d) throw Error("span backward: checkpoints do not match the span");
  if (grads && grads->empty()) {
    grads->resize((size_t)(b - a));
    for (auto& g : *grads) g.attn_norm.assign((size_t)d, 0.0f), g.ffn_norm.assign((size_t)d, 0.0f);
  }
  LlamaBlockActs acts;  // one block's activations at a time, reused
  std::vector<float> x((size_t)(n * d));
  for (int64_t blk = b - 1; blk >= a; blk--) {
    const float* in = checkpoints.data() + (blk - a) * n * d;
    std::copy(in, in + n * d, x.begin());
    llama_block_forward_train(hp, m.block(blk), x.data(), n, pool, &acts);  // recompute
    llama_block_backward(hp, m.block(blk), acts, dx, pool, grads ? &(*grads)[blk - a] : nullptr);
    // The prompt was added to the block's input: it receives that input's gradient.
    if (deep && deep->grad) cpu::add_inplace(deep->grad + (blk - a) * deep->n_prefix * d, dx, deep->n_prefix * d);
  }
}

void llama_span_backward_from_input(const LlamaModel& m, int64_t a, int64_t b, const float* x_in, float* dx,
                                    int64_t n, ThreadPool& pool) {
  std::vector<float> x(x_in, x_in + n * m.hparams().n_embd), ck;
  llama_span_forward_train(m, a, b, x.data(), n, pool, &ck);
  llama_span_backward(m, a, b, ck, dx, n, pool);
}

}  // namespace engine
