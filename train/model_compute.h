// Internal to train/: the pieces of a training forward/backward over a ModelParams
// (whole model or part) that model_loss_and_grad (train/model_params.cpp) and the
// pipeline stages (train/stage_compute.cpp) share.
//
// Why shared rather than copied: a pipeline run (embed on the trainer → blocks on the
// stages → head → blocks backward → embedding backward) must give the gradient of
// the single-process model_loss_and_grad BIT FOR BIT (same windows, same thread
// count), so that a SWARM run can be checked against a local one and peers holding
// the same stage agree on checksums. That holds only while both run the same ops in
// the same order with the same per-window gradient buffers, so they run the same
// code: the block views with their once-per-call transposed linears, the per-window
// forward that keeps or recomputes activations, the per-window backward, and the
// window-parallel schedule that adds the windows' gradient buffers in window order.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "train/model_params.h"

namespace engine::train::detail {

// The blocks a part holds, viewed once per call. blocks[i] is global block
// p.part.first_block + i.
struct BlockViews {
  const ModelParams& p;
  std::vector<LlamaBlockWeights> blocks;
  std::vector<float> transposed;  // every block linear's Wᵀ, made once per call
  // with_backward: the transposed linears the backward's input gradient reads.
  BlockViews(const ModelParams& params, ThreadPool& pool, bool with_backward);
};

// output_norm.weight and output.weight of a part with the head (Error otherwise).
LmHead head_view(const ModelParams& p);

// The [offset, end) range of p.data (and of a gradient laid out like it) that the
// named tensors occupy; they must be adjacent in p's layout.
struct Range {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
};
Range blocks_range(const ModelParams& p);  // every block tensor of the part
Range head_range(const ModelParams& p);    // output_norm.weight, output.weight
Range embd_range(const ModelParams& p);    // token_embd.weight

// Block b's gradient pointers in g, where g[0] is the gradient of p.data[g_begin]
// (g_begin = 0: a gradient laid out like p.data, as block_grads).
LlamaBlockGrads block_grads_at(const ModelParams& p, int64_t b, float* g, int64_t g_begin);

// Embedding rows of tokens [n] into x [n][n_embd]; Error for a token outside the vocabulary.
void embed_tokens(const ModelParams& p, const int32_t* tokens, int64_t n, float* x);

// What the backward of the blocks of one window needs from its forward: every block's
// activations when they take at most keep_acts_bytes, else only each block's input
// (checkpoints [L][n][d]) and the backward recomputes one block at a time — the same
// numbers either way, the forward being deterministic, for one more forward's work.
struct BlocksTape {
  bool keep_all = false;
  std::vector<LlamaBlockActs> acts;  // keep_all: one per block; else one, reused
  std::vector<float> ck;             // !keep_all: [L][n][d]
};
// Bytes of what one block's backward needs (LlamaBlockActs with the linears' inputs).
size_t block_acts_bytes(const LlamaHParams& hp, int64_t n);

// Training forward of the part's blocks on one window x [n][d] in place. tape null:
// nothing kept. weight_grads: the backward will want weight gradients (the linears'
// inputs are then kept too).
void blocks_forward(const BlockViews& m, float* x, int64_t n, ThreadPool& pool, BlocksTape* tape,
                    size_t keep_acts_bytes, bool weight_grads);
// Backward of the part's blocks, last first: dx [n][d] in: gradient of the output,
// out: of the input. x [n][d] is scratch (recomputation). g (may be null) as for
// block_grads_at: the blocks' gradients are accumulated there.
void blocks_backward(const BlockViews& m, BlocksTape& tape, float* x, float* dx, int64_t n, ThreadPool& pool,
                     float* g, int64_t g_begin);

// Whether the windows of a call run in parallel, one per thread, each into its own
// gradient buffer (small models: one window's ops are too small to split across
// threads; ops called from a pool task run on that thread), or one after another with
// parallel ops straight into the gradient (large models, one thread, one window).
bool windows_in_parallel(const LlamaHParams& hp, const ThreadPool& pool, int64_t n_windows);

// Runs fn(i, g) for every window i in [0, nw). g is where window i accumulates the
// gradient of range r of a vector laid out like the part (g[0] ↔ offset r.begin), or
// null when grad is null. Sequential (!by_window): g = grad + r.begin for every
// window, in window order. by_window: waves of pool.size() windows run in parallel,
// each into its own zeroed buffer of r.size() floats, and the buffers are added to
// grad in window order: grad[j] += buf_0[j] + ... element by element, so the sum
// depends neither on timing nor on how the addition is split, and memory is
// pool.size() buffers whatever nw is. fn must write only its own window's outputs.
void for_each_window(ThreadPool& pool, int64_t nw, bool by_window, float* grad, Range r,
                     const std::function<void(int64_t i, float* g)>& fn);

}  // namespace engine::train::detail
