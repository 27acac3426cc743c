#include "train/cross_entropy.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "cpu/ops.h"

namespace engine::train {

LmHead LmHead::from_model(const LlamaModel& m) {
  const GGUFFile& f = m.file();
  const LlamaHParams& hp = m.hparams();
  LmHead h;
  h.n_embd = hp.n_embd;
  h.n_vocab = hp.n_vocab;
  h.eps = hp.rms_eps;
  const GGUFTensorInfo& nt = f.require_tensor("output_norm.weight");
  if (nt.n_elements() != hp.n_embd) f.fail("output_norm.weight has the wrong size");
  h.norm_owned.resize((size_t)hp.n_embd);
  dequantize_row(nt.type, nt.data, h.norm_owned.data(), hp.n_embd);
  h.norm = h.norm_owned.data();
  const GGUFTensorInfo* ot = f.find_tensor("output.weight");
  if (!ot) ot = &f.require_tensor("token_embd.weight");  // tied embeddings
  if (ot->n_dims != 2 || ot->ne[0] != hp.n_embd || ot->ne[1] != hp.n_vocab) f.fail("bad output weight shape");
  if (ot->type != DType::F32 && ot->type != DType::F16 && ot->type != DType::BF16 && ot->type != DType::Q8_0 &&
      ot->type != DType::Q6_K)
    f.fail(std::string("output weight has unsupported type ") + dtype_name(ot->type));
  h.out = cpu::WeightView{ot->type, hp.n_vocab, hp.n_embd, ot->data, dtype_row_bytes(ot->type, hp.n_embd)};
  return h;
}

CrossEntropyResult head_cross_entropy(const LmHead& head, const float* hidden, const int32_t* targets, int64_t n,
                                      float scale, float* dhidden, ThreadPool& pool, int64_t chunk,
                                      const LmHeadGrads* head_grads) {
  const int64_t d = head.n_embd, V = head.n_vocab;
  chunk = std::max<int64_t>(1, std::min(chunk, n));
  for (int64_t t = 0; t < n; t++)
    if (targets[t] >= V) throw Error("target token " + std::to_string(targets[t]) + " is outside the vocabulary");
  float* dout = head_grads ? head_grads->out : nullptr;
  float* dnorm = head_grads ? head_grads->norm : nullptr;
  const bool backward = dhidden || dout || dnorm;
  std::vector<float> hn((size_t)(chunk * d)), logits((size_t)(chunk * V)), dhn((size_t)(chunk * d));
  std::vector<float> dh_scratch(dhidden ? 0 : (size_t)(chunk * d));  // norm grad wanted, input grad not
  std::vector<double> row_loss((size_t)chunk);
  CrossEntropyResult res;
  for (int64_t t0 = 0; t0 < n; t0 += chunk) {
    const int64_t c = std::min(chunk, n - t0);
    const float* h = hidden + t0 * d;
    const int32_t* tg = targets + t0;
    cpu::rmsnorm(h, head.norm, hn.data(), c, d, head.eps);                       // hn     [c][d]
    cpu::matmul(head.out, hn.data(), c, logits.data(), pool);                     // logits [c][V]
    // Per row: loss = logsumexp − logit[target]; the logits become their gradient
    // scale·(p − onehot) in place (zero for unscored rows).
    pool.parallel_for(c, 1, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; r++) {
        float* l = logits.data() + r * V;
        row_loss[r] = 0;
        if (tg[r] < 0) {
          std::fill(l, l + V, 0.0f);
          continue;
        }
        const float mx = *std::max_element(l, l + V);
        double sum = 0;
        for (int64_t i = 0; i < V; i++) sum += std::exp((double)(l[i] - mx));
        row_loss[r] = std::log(sum) + mx - l[tg[r]];
        const double inv = 1.0 / sum;
        for (int64_t i = 0; i < V; i++) l[i] = (float)(scale * std::exp((double)(l[i] - mx)) * inv);
        l[tg[r]] -= scale;
      }
    });
    for (int64_t r = 0; r < c; r++)
      if (tg[r] >= 0) res.loss_sum += row_loss[r], res.n_scored++;
    if (!backward) continue;
    if (dout) cpu::linear_backward_weight(logits.data(), hn.data(), dout, c, V, d, 1.0f, pool);  // [V][d]
    if (!dhidden && !dnorm) continue;
    cpu::matmul_transposed(head.out, logits.data(), c, dhn.data(), pool);        // dhn [c][d]
    cpu::rmsnorm_backward(dhn.data(), h, head.norm, dhidden ? dhidden + t0 * d : dh_scratch.data(), dnorm, c, d,
                          head.eps);
  }
  return res;
}

}  // namespace engine::train
