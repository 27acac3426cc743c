#include "train/stage_compute.h"

#include <algorithm>

#include "core/error.h"
#include "cpu/ops.h"
#include "train/model_compute.h"

namespace engine::train {

using namespace detail;

namespace {

void check_blocks_call(const ModelParams& part, const void* x, const void* dx, int64_t B, int64_t n, const char* what) {
  if (part.part.n_blocks < 1) throw Error(std::string(what) + ": the part (" + part.part.describe() + ") has no blocks");
  if (B < 0 || n < 0) throw Error(std::string(what) + ": negative batch or window length");
  if (B * n > 0 && (!x || !dx)) throw Error(std::string(what) + ": null hidden states");
}

// The windows' common length n; Error when they differ (inputs or targets).
int64_t window_length(const ModelParams& part, const std::vector<Window>& windows, const char* what) {
  if (!part.part.embd_head)
    throw Error(std::string(what) + ": the part (" + part.part.describe() + ") has no embedding and head");
  const int64_t n = windows.empty() ? 0 : (int64_t)windows[0].inputs.size();
  for (const Window& w : windows)
    if ((int64_t)w.inputs.size() != n || (int64_t)w.targets.size() != n)
      throw Error(std::string(what) + ": windows must all have " + std::to_string(n) + " inputs and targets");
  return n;
}

void check_inputs(const ModelParams& part, const std::vector<Window>& windows) {
  for (const Window& w : windows)
    for (int32_t tok : w.inputs)
      if (tok < 0 || tok >= part.hp.n_vocab)
        throw Error("input token " + std::to_string(tok) + " is outside the vocabulary");
}

}  // namespace

void part_forward(const ModelParams& part, float* x, int64_t B, int64_t n, ThreadPool& pool) {
  check_blocks_call(part, x, x, B, n, "part_forward");
  if (B * n == 0) return;
  const BlockViews m(part, pool, false);
  const int64_t d = part.hp.n_embd;
  // Windows in parallel or one after another as model_loss_and_grad runs them, so each
  // window's ops run the same way (on one thread, or split across the pool) there and here.
  for_each_window(pool, B, windows_in_parallel(part.hp, pool, B), nullptr, Range{},
                  [&](int64_t i, float*) { blocks_forward(m, x + i * n * d, n, pool, nullptr, 0, false); });
}

void part_backward(const ModelParams& part, const float* x_in, float* dx, int64_t B, int64_t n, float* grad,
                   ThreadPool& pool) {
  check_blocks_call(part, x_in, dx, B, n, "part_backward");
  if (B * n == 0) return;
  // Transposed linears whether or not grad is wanted: the input gradient then takes the
  // same kernel (cpu::linear_backward_input) as in model_loss_and_grad, hence the same bits.
  const BlockViews m(part, pool, true);
  const int64_t d = part.hp.n_embd;
  // Only the block tensors get gradients: the per-window buffers cover just those.
  const Range r = blocks_range(part);
  for_each_window(pool, B, windows_in_parallel(part.hp, pool, B), grad, r, [&](int64_t i, float* g) {
    std::vector<float> x(x_in + i * n * d, x_in + (i + 1) * n * d);
    BlocksTape tape;
    blocks_forward(m, x.data(), n, pool, &tape, kKeepActsBytes, g != nullptr);
    blocks_backward(m, tape, x.data(), dx + i * n * d, n, pool, g, r.begin);
  });
}

void embed_windows(const ModelParams& part, const std::vector<Window>& windows, float* x) {
  const int64_t n = window_length(part, windows, "embed_windows"), d = part.hp.n_embd;
  for (size_t i = 0; i < windows.size(); i++) embed_tokens(part, windows[i].inputs.data(), n, x + (int64_t)i * n * d);
}

CrossEntropyResult head_loss_and_grad(const ModelParams& part, const float* x, const std::vector<Window>& windows,
                                      float grad_scale, float* dx, float* grad, ThreadPool& pool) {
  const int64_t n = window_length(part, windows, "head_loss_and_grad"), d = part.hp.n_embd;
  const int64_t B = (int64_t)windows.size();
  const LmHead head = head_view(part);
  // model_loss_and_grad hands the head a zeroed dx it accumulates into.
  if (dx) std::fill(dx, dx + B * n * d, 0.0f);
  const Range r = head_range(part);
  const int64_t out_at = part.tensor("output.weight").offset - r.begin;
  const int64_t norm_at = part.tensor("output_norm.weight").offset - r.begin;
  std::vector<CrossEntropyResult> res((size_t)B);
  for_each_window(pool, B, windows_in_parallel(part.hp, pool, B), grad, r, [&](int64_t i, float* g) {
    if (n == 0) return;
    const LmHeadGrads hg{g ? g + out_at : nullptr, g ? g + norm_at : nullptr};
    res[i] = head_cross_entropy(head, x + i * n * d, windows[i].targets.data(), n, grad_scale,
                                dx ? dx + i * n * d : nullptr, pool, 64, g ? &hg : nullptr);
  });
  CrossEntropyResult total;
  for (const CrossEntropyResult& c : res) total.loss_sum += c.loss_sum, total.n_scored += c.n_scored;
  return total;
}

void embed_backward(const ModelParams& part, const std::vector<Window>& windows, const float* dx, float* grad) {
  const int64_t n = window_length(part, windows, "embed_backward"), d = part.hp.n_embd;
  check_inputs(part, windows);
  float* g = grad + embd_range(part).begin;
  for (size_t i = 0; i < windows.size(); i++)
    cpu::embedding_backward(windows[i].inputs.data(), dx + (int64_t)i * n * d, g, n, d);
}

void embed_backward(const ModelParams& part, const std::vector<Window>& windows, const float* dx, float* grad,
                    ThreadPool& pool) {
  const int64_t B = (int64_t)windows.size();
  if (!windows_in_parallel(part.hp, pool, B)) return embed_backward(part, windows, dx, grad);
  const int64_t n = window_length(part, windows, "embed_backward"), d = part.hp.n_embd;
  check_inputs(part, windows);
  float* g = grad + embd_range(part).begin;
  // model_loss_and_grad sums each window's rows into its zeroed buffer, then adds the
  // buffers in window order. The same sums, kept sparse: only the rows a window uses
  // (adding a zero row would leave grad as it is).
  std::vector<int32_t> slot((size_t)part.hp.n_vocab, -1);
  std::vector<int32_t> rows;
  std::vector<float> sums;
  for (int64_t i = 0; i < B; i++) {
    rows.clear(), sums.clear();
    const int32_t* toks = windows[(size_t)i].inputs.data();
    for (int64_t t = 0; t < n; t++) {
      int32_t& s = slot[(size_t)toks[t]];
      if (s < 0) s = (int32_t)rows.size(), rows.push_back(toks[t]), sums.resize(sums.size() + (size_t)d, 0.0f);
      cpu::add_inplace(sums.data() + (int64_t)s * d, dx + (i * n + t) * d, d);
    }
    for (size_t k = 0; k < rows.size(); k++) {
      cpu::add_inplace(g + (int64_t)rows[k] * d, sums.data() + (int64_t)k * d, d);
      slot[(size_t)rows[k]] = -1;
    }
  }
}

}  // namespace engine::train
