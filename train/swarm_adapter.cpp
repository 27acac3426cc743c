#include "train/swarm_adapter.h"

#include <algorithm>

#include "core/error.h"
#include "cpu/ops.h"

namespace engine::train {

CrossEntropyResult swarm_adapter_loss_and_grad(net::TrainingChain& chain, const LlamaModel& m, const LmHead& head,
                                               const Adapter& ad, const std::vector<Window>& windows,
                                               float grad_scale, float* grad, ThreadPool& pool) {
  if (ad.mode == AdapterMode::LoRA)
    throw Error("LoRA adapts weights inside the blocks: it trains only locally (use --mode ptune or deep-ptune "
                "with --swarm)");
  const int64_t B = (int64_t)windows.size();
  if (B == 0) return {};
  const int64_t P = ad.n_prefix, d = m.hparams().n_embd;
  const int64_t L = (int64_t)windows[0].inputs.size(), n = P + L;
  for (const Window& w : windows)
    if ((int64_t)w.inputs.size() != L || (int64_t)w.targets.size() != L)
      throw Error("swarm training needs windows of equal length");

  // x [B][P + L][d]: each window is [prefix rows][token embeddings]; the prefix scores nothing.
  const std::vector<float> prefix = ad.input_rows();
  std::vector<float> x((size_t)(B * n * d));
  std::vector<int32_t> targets((size_t)(B * n), -1);
  for (int64_t i = 0; i < B; i++) {
    float* xi = x.data() + i * n * d;
    std::copy(prefix.begin(), prefix.end(), xi);
    m.embed(windows[i].inputs.data(), L, xi + P * d);
    std::copy(windows[i].targets.begin(), windows[i].targets.end(), targets.begin() + i * n + P);
  }
  const float* prompts = ad.deep(0);  // [n_layer][P][d] or null
  chain.forward(x.data(), B, n, prompts, P, grad != nullptr);

  // The head and the loss per window, as the local trainer does (windows in
  // parallel on small models, each into its own gradient rows).
  std::vector<float> dx(grad ? x.size() : 0, 0.0f);
  std::vector<CrossEntropyResult> res((size_t)B);
  auto one = [&](int64_t i) {
    res[i] = head_cross_entropy(head, x.data() + i * n * d, targets.data() + i * n, n, grad_scale,
                                grad ? dx.data() + i * n * d : nullptr, pool);
  };
  if (pool.size() > 1 && B > 1 && d <= 512) {
    pool.parallel_for(B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t i = b0; i < b1; i++) one(i);
    });
  } else {
    for (int64_t i = 0; i < B; i++) one(i);
  }
  CrossEntropyResult total;
  for (auto& r : res) total.loss_sum += r.loss_sum, total.n_scored += r.n_scored;
  if (!grad) return total;

  chain.backward(dx.data(), ad.mode == AdapterMode::DeepPTune ? grad : nullptr);
  if (ad.mode == AdapterMode::PTune)  // the prefix rows are the input: they get its gradient
    for (int64_t i = 0; i < B; i++) cpu::add_inplace(grad, dx.data() + i * n * d, P * d);
  return total;
}

}  // namespace engine::train
