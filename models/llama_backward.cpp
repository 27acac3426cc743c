#include "models/llama_backward.h"

#include <algorithm>
#include <functional>

#include "core/error.h"
#include "cpu/spqr_matmul.h"

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

cpu::WeightView f32_view(const float* w, int64_t rows, int64_t cols) {
  return cpu::WeightView{DType::F32, rows, cols, w, (size_t)cols * sizeof(float)};
}

// y [n][rows] = W·x (+ scale·B·(A·x) with an adapter; A·x is kept in *ax).
void linear_fwd(const cpu::Linear& w, const LoraLinear* l, const float* x, int64_t n, float* y,
                std::vector<float>* ax, ThreadPool& pool) {
  cpu::linear(w, x, n, y, pool);
  if (!l || l->rank == 0) return;
  const int64_t r = l->rank;
  ax->resize((size_t)(n * r));
  cpu::matmul(f32_view(l->A, r, w.cols()), x, n, ax->data(), pool);           // ax [n][r]
  std::vector<float> sax(*ax);
  for (float& e : sax) e *= l->scale;
  cpu::matmul_add(f32_view(l->B, w.rows(), r), sax.data(), n, y, pool);       // y += B·(scale·ax)
}

// dx [n][cols] (+)= dy·W (+ the adapter's path), the weight's own gradient when
// wanted (dw [rows][cols] += dyᵀ·x), and the adapter's dA, dB:
//   dB += scale·dyᵀ·ax;  dax = scale·dy·B;  dA += daxᵀ·x;  dx += dax·A.
void linear_bwd(const cpu::Linear& w, const LoraLinear* l, const float* x, const std::vector<float>& ax,
                const float* dy, int64_t n, float* dx, bool accumulate, std::vector<float>& scratch,
                ThreadPool& pool, float* dw = nullptr) {
  if (accumulate) linear_backward_add(w, dy, n, dx, scratch, pool);
  else cpu::linear_backward_input(w, dy, n, dx, pool);
  if (dw) cpu::linear_backward_weight(dy, x, dw, n, w.rows(), w.cols(), 1.0f, pool);
  if (!l || l->rank == 0) return;
  const int64_t r = l->rank, rows = w.rows(), cols = w.cols();
  if (l->dB) cpu::linear_backward_weight(dy, ax.data(), l->dB, n, rows, r, l->scale, pool);
  std::vector<float> dax((size_t)(n * r));
  cpu::matmul_transposed(f32_view(l->B, rows, r), dy, n, dax.data(), pool);   // dax [n][r]
  for (float& e : dax) e *= l->scale;
  if (l->dA) cpu::linear_backward_weight(dax.data(), x, l->dA, n, r, cols, 1.0f, pool);
  scratch.resize((size_t)(n * cols));
  cpu::matmul_transposed(f32_view(l->A, r, cols), dax.data(), n, scratch.data(), pool);
  cpu::add_inplace(dx, scratch.data(), n * cols);
}

}  // namespace

// The same block as llama_block_forward, with f32 keys and values at positions 0..n-1:
//   h1 = norm(x0)·attn_norm;  q,k,v = Wq,Wk,Wv·h1 (+b);  rope(q), rope(k)
//   x1 = x0 + Wo·attn(q, k, v)
//   h2 = norm(x1)·ffn_norm;   g, u = Wgate·h2, Wup·h2
//   x2 = x1 + Wdown·(silu(g)·u)
void llama_block_forward_train(const LlamaHParams& hp, const LlamaBlockWeights& w, float* x, int64_t n,
                               ThreadPool& pool, LlamaBlockActs* acts, const LlamaBlockLora* lora) {
  // The backward differentiates exact products, so the forward computes them too: no
  // int8 activations through SpQR weights here (inference's kernels round them).
  const cpu::SpqrExactScope exact;
  const int64_t d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.n_ff;
  LlamaBlockActs local;
  LlamaBlockActs& A = acts ? *acts : local;
  A.n = n;
  A.x0.assign(x, x + n * d);
  A.q.resize((size_t)(n * qd));
  A.k.resize((size_t)(n * kvd));
  A.v.resize((size_t)(n * kvd));
  A.att.resize((size_t)(n * qd));
  A.g.resize(hp.moe() ? 0 : (size_t)(n * ff));  // a mixture keeps its own, per (token, expert)
  A.u.resize(hp.moe() ? 0 : (size_t)(n * ff));
  const std::vector<int32_t> pos = positions(n);
  std::vector<float> h((size_t)(n * d)), tmp((size_t)(n * std::max(d, ff)));

  const LlamaBlockLora* L = lora;
  if (hp.moe() && L && (L->gate.rank || L->up.rank || L->down.rank))
    throw Error("LoRA on gate, up or down: a mixture-of-experts block has no single FFN linear (adapt q, k, v, o)");
  const bool keep = L || A.keep_linear_inputs;  // the backward needs the linears' inputs
  cpu::rmsnorm(x, w.attn_norm, h.data(), n, d, hp.rms_eps);
  if (keep) A.h1 = h;
  linear_fwd(w.wq, L ? &L->q : nullptr, h.data(), n, A.q.data(), &A.ax[0], pool);
  linear_fwd(w.wk, L ? &L->k : nullptr, h.data(), n, A.k.data(), &A.ax[1], pool);
  linear_fwd(w.wv, L ? &L->v : nullptr, h.data(), n, A.v.data(), &A.ax[2], pool);
  add_bias(A.q.data(), w.bq, n, qd);
  add_bias(A.k.data(), w.bk, n, kvd);
  add_bias(A.v.data(), w.bv, n, kvd);
  cpu::rope(A.q.data(), n, hp.n_head, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base, hp.rope_layout);
  cpu::rope(A.k.data(), n, hp.n_head_kv, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base, hp.rope_layout);
  cpu::attention(A.q.data(), A.k.data(), A.v.data(), DType::F32, A.att.data(), n, 0, hp.n_head, hp.n_head_kv,
                 hp.head_dim, pool);
  linear_fwd(w.wo, L ? &L->o : nullptr, A.att.data(), n, tmp.data(), &A.ax[3], pool);
  cpu::add_inplace(x, tmp.data(), n * d);
  A.x1.assign(x, x + n * d);

  cpu::rmsnorm(x, w.ffn_norm, h.data(), n, d, hp.rms_eps);
  if (hp.moe()) {
    // The experts' backward needs their input h2 whatever is trained.
    A.h2 = h;
    moe_ffn_forward_train(hp, w, h.data(), n, tmp.data(), pool, &A.moe);
    cpu::add_inplace(x, tmp.data(), n * d);
    return;
  }
  if (keep) A.h2 = h;
  linear_fwd(w.w_gate, L ? &L->gate : nullptr, h.data(), n, A.g.data(), &A.ax[4], pool);
  linear_fwd(w.w_up, L ? &L->up : nullptr, h.data(), n, A.u.data(), &A.ax[5], pool);
  std::vector<float> a((size_t)(n * ff));
  cpu::swiglu(A.g.data(), A.u.data(), a.data(), n * ff);
  linear_fwd(w.w_down, L ? &L->down : nullptr, a.data(), n, tmp.data(), &A.ax[6], pool);
  if (keep) A.a = std::move(a);
  cpu::add_inplace(x, tmp.data(), n * d);
}

// The forward, read bottom-up. dx holds dx2 on entry; each residual add passes the
// gradient through unchanged, so the branches' gradients are accumulated into dx.
void llama_block_backward(const LlamaHParams& hp, const LlamaBlockWeights& w, const LlamaBlockActs& A, float* dx,
                          ThreadPool& pool, LlamaBlockGrads* grads, const LlamaBlockLora* lora) {
  const LlamaBlockLora* L = lora;
  const int64_t n = A.n, d = hp.n_embd, qd = hp.q_dim(), kvd = hp.kv_dim(), ff = hp.n_ff;
  const std::vector<int32_t> pos = positions(n);
  std::vector<float> scratch;
  LlamaBlockGrads none;
  const LlamaBlockGrads& G = grads ? *grads : none;
  if (G.wants_weights() && (A.h1.empty() || A.h2.empty() || (A.a.empty() && !hp.moe())))
    throw Error("block backward: weight gradients need a forward with keep_linear_inputs");
  auto norm_grad = [](float* p, std::vector<float>& v) { return p ? p : (v.empty() ? nullptr : v.data()); };
  float* d_attn_norm = grads ? norm_grad(grads->d_attn_norm, grads->attn_norm) : nullptr;
  float* d_ffn_norm = grads ? norm_grad(grads->d_ffn_norm, grads->ffn_norm) : nullptr;

  std::vector<float> dh((size_t)(n * d));
  if (hp.moe()) {
    // FFN half: x2 = x1 + mixture(h2).
    moe_ffn_backward(hp, w, A.h2.data(), A.moe, dx, dh.data(), pool, grads ? &grads->moe : nullptr);
  } else {
    // FFN half: x2 = x1 + Wdown·(silu(g)·u).
    std::vector<float> da((size_t)(n * ff)), dg((size_t)(n * ff), 0.0f), du((size_t)(n * ff), 0.0f);
    linear_bwd(w.w_down, L ? &L->down : nullptr, A.a.data(), A.ax[6], dx, n, da.data(), false, scratch, pool,
               G.dw_down);                                                           // da [n][ff]
    cpu::swiglu_backward(da.data(), A.g.data(), A.u.data(), dg.data(), du.data(), n * ff);
    linear_bwd(w.w_gate, L ? &L->gate : nullptr, A.h2.data(), A.ax[4], dg.data(), n, dh.data(), false, scratch,
               pool, G.dw_gate);                                                     // dh2 [n][d]
    linear_bwd(w.w_up, L ? &L->up : nullptr, A.h2.data(), A.ax[5], du.data(), n, dh.data(), true, scratch, pool,
               G.dw_up);
  }
  cpu::rmsnorm_backward(dh.data(), A.x1.data(), w.ffn_norm, dx, d_ffn_norm, n, d, hp.rms_eps);  // dx = dx1

  // Attention half: x1 = x0 + Wo·attn(rope(Wq·h1), rope(Wk·h1), Wv·h1).
  std::vector<float> datt((size_t)(n * qd));
  linear_bwd(w.wo, L ? &L->o : nullptr, A.att.data(), A.ax[3], dx, n, datt.data(), false, scratch, pool,
             G.dwo);                                                               // datt [n][qd]
  std::vector<float> dq((size_t)(n * qd), 0.0f), dk((size_t)(n * kvd), 0.0f), dv((size_t)(n * kvd), 0.0f);
  cpu::attention_backward(datt.data(), A.q.data(), A.k.data(), A.v.data(), dq.data(), dk.data(), dv.data(), n, 0,
                          hp.n_head, hp.n_head_kv, hp.head_dim, pool);
  cpu::rope_backward(dq.data(), n, hp.n_head, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base, hp.rope_layout);
  cpu::rope_backward(dk.data(), n, hp.n_head_kv, hp.head_dim, hp.n_rot, pos.data(), hp.rope_freq_base,
                     hp.rope_layout);
  // dq, dk are now the gradients of Wq·h1, Wk·h1 (before rope): what the weights see.
  linear_bwd(w.wq, L ? &L->q : nullptr, A.h1.data(), A.ax[0], dq.data(), n, dh.data(), false, scratch, pool,
             G.dwq);                                                               // dh1 [n][d]
  linear_bwd(w.wk, L ? &L->k : nullptr, A.h1.data(), A.ax[1], dk.data(), n, dh.data(), true, scratch, pool, G.dwk);
  linear_bwd(w.wv, L ? &L->v : nullptr, A.h1.data(), A.ax[2], dv.data(), n, dh.data(), true, scratch, pool, G.dwv);
  cpu::rmsnorm_backward(dh.data(), A.x0.data(), w.attn_norm, dx, d_attn_norm, n, d, hp.rms_eps);  // dx = dx0
}

void llama_span_forward_train(const LlamaModel& m, int64_t a, int64_t b, float* x, int64_t n, ThreadPool& pool,
                              std::vector<float>* checkpoints, const DeepPrompts* deep, const LlamaBlockLora* lora) {
  if (a < m.first_block() || b > m.last_block() || a > b) throw Error("span outside the loaded blocks");
  const int64_t d = m.hparams().n_embd;
  if (deep && deep->prompts && deep->n_prefix > n) throw Error("deep prompts are longer than the sequence");
  if (checkpoints) checkpoints->resize((size_t)((b - a) * n * d));
  for (int64_t blk = a; blk < b; blk++) {
    if (deep && deep->prompts) cpu::add_inplace(x, deep->prompts + (blk - a) * deep->n_prefix * d, deep->n_prefix * d);
    if (checkpoints) std::copy(x, x + n * d, checkpoints->data() + (blk - a) * n * d);
    llama_block_forward_train(m.hparams(), m.block(blk), x, n, pool, nullptr, lora ? &lora[blk - a] : nullptr);
  }
}

void llama_span_backward(const LlamaModel& m, int64_t a, int64_t b, const std::vector<float>& checkpoints, float* dx,
                         int64_t n, ThreadPool& pool, std::vector<LlamaBlockGrads>* grads, const DeepPrompts* deep,
                         const LlamaBlockLora* lora) {
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
    const LlamaBlockLora* l = lora ? &lora[blk - a] : nullptr;
    llama_block_forward_train(hp, m.block(blk), x.data(), n, pool, &acts, l);  // recompute
    llama_block_backward(hp, m.block(blk), acts, dx, pool, grads ? &(*grads)[blk - a] : nullptr, l);
    // The prompt was added to the block's input: it receives that input's gradient.
    if (deep && deep->grad) cpu::add_inplace(deep->grad + (blk - a) * deep->n_prefix * d, dx, deep->n_prefix * d);
  }
}

void llama_span_backward_from_input(const LlamaModel& m, int64_t a, int64_t b, const float* x_in, float* dx,
                                    int64_t n, ThreadPool& pool, const DeepPrompts* deep) {
  std::vector<float> x(x_in, x_in + n * m.hparams().n_embd), ck;
  llama_span_forward_train(m, a, b, x.data(), n, pool, &ck, deep);
  llama_span_backward(m, a, b, ck, dx, n, pool, nullptr, deep);
}

namespace {

// fn(i) for every sequence i < B: in parallel (one sequence per thread, whose ops
// then run on that thread) when the model is small, else in order.
void for_each_sequence(const LlamaModel& m, int64_t B, ThreadPool& pool, const std::function<void(int64_t)>& fn) {
  if (pool.size() > 1 && B > 1 && m.hparams().n_embd <= 512) {
    pool.parallel_for(B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; i++) fn(i);
    });
  } else {
    for (int64_t i = 0; i < B; i++) fn(i);
  }
}

}  // namespace

void llama_span_forward_batch(const LlamaModel& m, int64_t a, int64_t b, float* x, int64_t B, int64_t n,
                              const float* prompts, int64_t P, ThreadPool& pool) {
  const int64_t d = m.hparams().n_embd;
  const DeepPrompts deep{prompts, prompts ? P : 0, nullptr};
  for_each_sequence(m, B, pool, [&](int64_t i) { llama_span_forward_train(m, a, b, x + i * n * d, n, pool, nullptr, &deep); });
}

void llama_span_backward_batch(const LlamaModel& m, int64_t a, int64_t b, const float* x_in, float* dx, int64_t B,
                               int64_t n, const float* prompts, int64_t P, float* prompt_grad, ThreadPool& pool) {
  const int64_t d = m.hparams().n_embd;
  const size_t prompt_size = prompts ? (size_t)((b - a) * P * d) : 0;
  // Each sequence's prompt gradient in its own buffer, summed in order afterwards:
  // the result does not depend on which thread finished first.
  std::vector<std::vector<float>> pg(prompt_grad && prompts ? (size_t)B : 0);
  for_each_sequence(m, B, pool, [&](int64_t i) {
    DeepPrompts deep{prompts, prompts ? P : 0, nullptr};
    if (!pg.empty()) pg[i].assign(prompt_size, 0.0f), deep.grad = pg[i].data();
    llama_span_backward_from_input(m, a, b, x_in + i * n * d, dx + i * n * d, n, pool, &deep);
  });
  for (auto& g : pg) cpu::add_inplace(prompt_grad, g.data(), (int64_t)prompt_size);
}

}  // namespace engine
